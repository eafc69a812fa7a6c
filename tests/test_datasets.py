"""Datasets and loaders: bad files, patches and pairs, seeding, caching, validation, recipe sections."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srframe
from srframe.data import ImageFolder, PairedFolder, Samples, loader_from_spec, make_loader, to_float
from srframe.errors import DataError, RecipeError
from srframe.recipe import load_recipe

ROOT = Path(__file__).parents[1]


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def noise(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Two good RGB images, a corrupt file, a 3x3 image, a grey and an RGBA image."""
    folder = tmp_path / "mixed"
    save(folder / "a_good.png", noise(40, 48, 1))
    save(folder / "b_good.bmp", noise(36, 32, 2))
    (folder / "c_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing useful")
    save(folder / "d_tiny.png", noise(3, 3, 3))
    save(folder / "e_grey.png", noise(32, 32, 4, channels=1))
    rgba = noise(32, 40, 5, channels=4)
    rgba[..., 3] = 0  # fully transparent: composited over white
    save(folder / "f_rgba.png", rgba)
    (folder / "notes.txt").write_text("not an image, ignored by suffix")
    return folder


def test_folder_with_bad_files_skip(mixed_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="srframe.data"):
        dataset = ImageFolder(mixed_folder, scale=4, patch_size=16, on_bad_file="skip")
    assert [e.name for e in dataset.entries] == ["a_good", "b_good", "e_grey", "f_rgba"]
    warnings = [r.getMessage() for r in caplog.records]
    assert any("c_corrupt.png: not an image file" in w and "left out" in w for w in warnings)
    assert any("d_tiny.png: 3x3 pixels is too small for the 16x16 HR patch" in w for w in warnings)
    val = ImageFolder(mixed_folder, scale=4, mode="val", on_bad_file="skip")
    items = {item["name"]: item["hr"] for item in (val[i] for i in range(len(val)))}
    assert items["e_grey"].shape == (3, 32, 32) and torch.equal(items["e_grey"][0], items["e_grey"][2])
    assert items["f_rgba"].shape == (3, 32, 40) and bool((items["f_rgba"] == 255).all())


def test_folder_with_bad_files_error(mixed_folder):
    with pytest.raises(DataError, match=r'c_corrupt\.png: not an image file.*set on_bad_file = "skip"'):
        ImageFolder(mixed_folder, scale=4, patch_size=16)
    (mixed_folder / "c_corrupt.png").unlink()
    with pytest.raises(DataError, match=r"d_tiny\.png: 3x3 pixels is too small for the 16x16 HR patch"):
        ImageFolder(mixed_folder, scale=4, patch_size=16)
    with pytest.raises(DataError, match=r"d_tiny\.png: 3x3 pixels is too small for the scale 4"):
        ImageFolder(mixed_folder, scale=4, mode="val")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_file_found_while_loading_is_skipped_with_a_warning(tmp_path, caplog):
    for i in range(3):
        save(tmp_path / f"{i}.png", noise(32, 32, i))
    truncate(tmp_path / "1.png")
    dataset = ImageFolder(tmp_path, scale=2, patch_size=8, cache_mb=0, on_bad_file="skip")  # headers are fine
    assert len(dataset) == 3
    with caplog.at_level(logging.WARNING, logger="srframe.data"):
        item = dataset[1]
    assert item["hr"].shape == (3, 8, 8)
    assert any("1.png: cannot decode the image" in r.getMessage() for r in caplog.records)
    cached = ImageFolder(tmp_path, scale=2, patch_size=8, on_bad_file="skip")  # found while filling the cache
    assert [e.name for e in cached.entries] == ["0", "2"]


def test_bad_file_in_a_worker_is_a_data_error_without_a_worker_traceback(tmp_path):
    for i in range(4):
        save(tmp_path / f"{i}.png", noise(32, 32, i))
    truncate(tmp_path / "2.png")
    dataset = ImageFolder(tmp_path, scale=2, patch_size=8, cache_mb=0)
    loader = make_loader(dataset, batch_size=4, num_workers=1, seed=0)
    with pytest.raises(DataError) as excinfo:
        next(iter(loader))
    message = str(excinfo.value)
    assert "2.png: cannot decode the image" in message and "Traceback" not in message


def test_training_patches_are_seeded_and_independent_of_workers(tmp_path):
    for i in range(6):
        save(tmp_path / f"{i}.png", noise(40, 44, i))
    dataset = ImageFolder(tmp_path, scale=4, patch_size=16, repeat=3)
    assert len(dataset) == 18

    def batches(seed: int, workers: int) -> list[torch.Tensor]:
        return [batch["hr"] for batch in make_loader(dataset, batch_size=4, num_workers=workers, seed=seed)]

    first = batches(7, 0)
    assert len(first) == 4 and first[0].shape == (4, 3, 16, 16) and first[0].dtype == torch.uint8
    assert all(torch.equal(a, b) for a, b in zip(first, batches(7, 0)))
    assert all(torch.equal(a, b) for a, b in zip(first, batches(7, 1)))
    assert not torch.equal(first[0], batches(8, 0)[0])
    loader = make_loader(dataset, batch_size=4, seed=7)
    epoch1, epoch2 = [batch["hr"] for batch in loader], [batch["hr"] for batch in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, epoch1))
    assert not torch.equal(epoch1[0], epoch2[0])  # a new order and new patches each epoch


def test_augmentation_covers_flips_and_rotations(tmp_path):
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    save(tmp_path / "x.png", image)
    dataset = ImageFolder(tmp_path, scale=1, patch_size=16)
    patches = {dataset[(0, seed)]["hr"].numpy().tobytes() for seed in range(200)}
    assert len(patches) == 8  # the whole image, in all 8 orientations
    plain = ImageFolder(tmp_path, scale=1, patch_size=16, augment=False)
    assert np.array_equal(plain[(0, 5)]["hr"].permute(1, 2, 0).numpy(), image)


def paired_folders(tmp_path: Path, scale: int = 2) -> tuple[Path, Path]:
    """HR = LR enlarged by pixel repetition, so a matching crop is easy to check."""
    for i, name in enumerate(["baby", "bird", "0001"]):
        lr = noise(12 + i, 10, i)
        hr = np.kron(lr, np.ones((scale, scale, 1), dtype=np.uint8))
        hr = np.pad(hr, ((0, 1), (0, scale - 1), (0, 0)))  # HR not a multiple of the scale: modcropped
        lr_name = f"{name}x{scale}.png" if name == "0001" else f"{name}_LRx{scale}.png"
        save(tmp_path / "hr" / f"{name}_HR.png" if name != "0001" else tmp_path / "hr" / f"{name}.png", hr)
        save(tmp_path / "lr" / lr_name, lr)
    return tmp_path / "hr", tmp_path / "lr"


def test_paired_patches_match(tmp_path):
    hr_dir, lr_dir = paired_folders(tmp_path)
    dataset = PairedFolder(hr_dir, lr_dir, scale=2, patch_size=8)
    assert [e.name for e in dataset.entries] == ["0001", "baby", "bird"]
    for seed in range(20):
        item = dataset[(seed % 3, seed)]
        assert item["hr"].shape == (3, 8, 8) and item["lr"].shape == (3, 4, 4)
        enlarged = item["lr"].repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
        assert torch.equal(item["hr"], enlarged)
    val = PairedFolder(hr_dir, lr_dir, scale=2, mode="val")
    item = val[1]
    assert item["name"] == "baby" and item["hr"].shape == (3, 24, 20) and item["lr"].shape == (3, 12, 10)


def test_paired_errors_list_unmatched_files(tmp_path):
    hr_dir, lr_dir = paired_folders(tmp_path)
    save(hr_dir / "extra_HR.png", noise(24, 20))
    save(lr_dir / "stray_LRx2.png", noise(12, 10))
    with pytest.raises(DataError) as excinfo:
        PairedFolder(hr_dir, lr_dir, scale=2)
    message = str(excinfo.value)
    assert "1 HR file(s) without a partner: " in message and "extra_HR.png" in message
    assert "1 LR file(s) without a partner: " in message and "stray_LRx2.png" in message


def test_paired_size_mismatch_names_both_files(tmp_path):
    hr_dir, lr_dir = paired_folders(tmp_path)
    with pytest.raises(DataError, match=r"0001x2\.png: 10x14 pixels does not match its HR image .*0001\.png "
                                        r"\(21x29\) at scale 3: expected 7x9"):
        PairedFolder(hr_dir, lr_dir, scale=3, patch_size=6)


def test_validation_images_are_cropped_to_a_multiple_of_the_scale(tmp_path):
    save(tmp_path / "img.png", noise(30, 27))
    item = ImageFolder(tmp_path, scale=4, mode="val")[0]
    assert item["hr"].shape == (3, 28, 24) and item["name"] == "img"
    assert len(ImageFolder(tmp_path, scale=4, mode="val", repeat=5)) == 1


def test_cache_gives_the_same_items_as_reading_from_disk(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", noise(32, 32, i))
    cached = ImageFolder(tmp_path, scale=2, patch_size=8)
    partly = ImageFolder(tmp_path, scale=2, patch_size=8, cache_mb=32 * 32 * 3 * 2 / 2**20)  # room for two
    uncached = ImageFolder(tmp_path, scale=2, patch_size=8, cache_mb=0)
    assert (len(cached.cache), len(partly.cache), len(uncached.cache)) == (3, 2, 0)
    for key in [(0, 1), (1, 2), (2, 3)]:
        assert torch.equal(cached[key]["hr"], uncached[key]["hr"]) and torch.equal(partly[key]["hr"], cached[key]["hr"])


def test_a_batch_mixing_8_and_16_bit_images_is_16_bit(tmp_path):
    from test_image_io import write_png16

    save(tmp_path / "a.png", np.full((8, 8, 3), 255, dtype=np.uint8))
    write_png16(tmp_path / "b.png", np.full((8, 8, 3), 1000, dtype=np.uint16))
    dataset = ImageFolder(tmp_path, scale=1, patch_size=8)
    batch = next(iter(make_loader(dataset, batch_size=2, shuffle=False)))["hr"]
    assert batch.dtype == torch.uint16 and sorted(batch.flatten().unique().tolist()) == [1000, 65535]
    assert to_float(batch).max() == 1


def test_too_few_items_for_a_batch(tmp_path):
    save(tmp_path / "a.png", noise(16, 16))
    with pytest.raises(DataError, match="fewer than one batch of 16: lower batch_size or raise the dataset's repeat"):
        make_loader(ImageFolder(tmp_path, scale=2, patch_size=8), batch_size=16)


def test_missing_or_empty_folders(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: no such folder"):
        ImageFolder(tmp_path / "nowhere", scale=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no image files .* set recursive = true"):
        ImageFolder(tmp_path / "empty", scale=4)


def test_samples_ship_with_scikit_image():
    dataset = srframe.build("dataset", "samples", scale=4, names=["astronaut", "camera"], repeat=2, patch_size=32)
    assert isinstance(dataset, Samples) and len(dataset) == 4
    assert dataset[0]["hr"].shape == (3, 32, 32)
    val = srframe.build("dataset", "samples", scale=3, names=["chelsea"], mode="val")
    assert val[0]["hr"].shape == (3, 300, 450) and val[0]["name"] == "chelsea"  # 300x451 cropped to x3


RECIPE = """
    scale = 4
    [generator]
    kind = "srresnet"
    num_blocks = 1
    [data.train]
    kind = "samples"
    names = ["astronaut", "coffee"]
    patch_size = 32
    batch_size = 4
    num_workers = 0
    [data.val]
    kind = "image_folder"
    root = "val_images"
    [[stages]]
    name = "mse"
    steps = 1
    losses = [{ kind = "mse" }]
"""


def test_recipe_data_sections_build_loaders(write, tmp_path):
    save(tmp_path / "val_images" / "x.png", noise(20, 22))
    recipe = load_recipe(write("r.toml", RECIPE))
    spec = recipe.spec
    assert spec.degradation.name == "bicubic" and spec.degradation.params == {"scale": 4}
    assert spec.data.train.params["mode"] == "train" and spec.data.val.params["mode"] == "val"
    assert spec.data.val.params["root"] == tmp_path / "val_images"  # relative to the recipe file
    train = loader_from_spec(spec.data.train, seed=spec.seed)
    batch = next(iter(train))
    assert batch["hr"].shape == (4, 3, 32, 32)
    lr = spec.degradation.build(srframe.registry)(to_float(batch["hr"]), torch.Generator())
    assert lr.shape == (4, 3, 8, 8)
    (image,) = list(loader_from_spec(spec.data.val, seed=0))
    assert image["hr"].shape == (1, 3, 20, 20) and image["name"] == ["x"]


def test_recipe_data_errors(write):
    bad = RECIPE.replace('names = ["astronaut", "coffee"]', 'names = ["astronaut", "cofee"]')
    bad = bad.replace('root = "val_images"', 'root = "val_images"\nmode = "train"')
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(write("r.toml", bad))
    problems = {p.path: p.message for p in excinfo.value.problems}
    assert 'did you mean "coffee"' in problems["data.train.names[1]"]
    assert 'disagrees with the recipe\'s mode = "val"' in problems["data.val.mode"]


def test_the_quickstart_trains_on_samples_and_the_paper_recipe_on_a_folder(tmp_path):
    spec = load_recipe(ROOT / "recipes" / "quickstart_x4.toml").spec
    assert spec.data.train.name == "samples" and spec.degradation.name == "bicubic"
    held_out = set(spec.data.val.params["names"])
    assert held_out == {"chelsea", "coffee", "rocket"} and not held_out & set(spec.data.train.params["names"])
    with pytest.raises(RecipeError) as caught:
        load_recipe(ROOT / "recipes" / "srresnet_x4.toml")
    problems = {p.path: p.message for p in caught.value.problems}
    assert set(problems) == {"data.train.root", "data.val.root"}
    assert "DIV2K" in problems["data.train.root"] and "`make demo`" in problems["data.train.root"]
