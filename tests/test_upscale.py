"""Tiled inference and srframe.upscale: equal to the untiled model, any size, any image layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import srframe
from srframe.degrade import imresize
from srframe.infer.tiles import plan_tiles, upscale_tiled


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    model = srframe.build("generator", "srresnet", scale=2, num_blocks=2, channels=16)
    model.train()
    model(torch.rand(2, 3, 12, 12))  # batch-norm statistics away from their initial values
    return model.eval()


def _untiled(model, lr):
    with torch.no_grad():
        return model(lr).clamp(0, 1)


def test_tiles_cover_the_image_once():
    tiles = plan_tiles(37, 53, tile=16, overlap=5)
    covered = torch.zeros(37, 53, dtype=torch.int64)
    for t in tiles:
        top, left, h, w = t.core
        covered[top:top + h, left:left + w] += 1
        wt, wl, wh, ww = t.window
        assert wt <= top and wl <= left and wt + wh >= top + h and wl + ww >= left + w
        assert wt >= 0 and wl >= 0 and wt + wh <= 37 and wl + ww <= 53
    assert torch.equal(covered, torch.ones_like(covered))


@pytest.mark.parametrize("tile, batch_size", [(8, 1), (11, 3), (64, 2)])
def test_tiled_equals_untiled_when_the_overlap_covers_the_receptive_field(generator, tile, batch_size):
    lr = torch.rand(1, 3, 29, 35)  # not a multiple of the tile; receptive radius of this model is 12 LR pixels
    tiled = upscale_tiled(lambda x: generator(x).clamp(0, 1), lr, 2, tile=tile, overlap=16, batch_size=batch_size)
    assert tiled.shape == (1, 3, 58, 70)
    assert (tiled - _untiled(generator, lr)).abs().max() < 1e-4


def test_too_little_overlap_shows_at_the_seams(generator):
    lr = torch.rand(1, 3, 29, 35)
    with torch.no_grad():
        tiled = upscale_tiled(generator, lr, 2, tile=8, overlap=0)
    assert (tiled - generator(lr)).abs().max() > 1e-3


def test_upscale_with_inference_optimisations_matches_the_plain_model(generator):
    lr = torch.rand(3, 21, 17)
    sr = srframe.upscale(generator, lr, tile=8, overlap=16)
    assert sr.shape == (3, 42, 34)
    assert (sr - _untiled(generator, lr[None])[0]).abs().max() < 1e-4
    assert generator.training is False and any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules())


def test_an_image_smaller_than_a_tile_and_a_batch_of_images(generator):
    lr = torch.rand(2, 3, 5, 7)
    sr = srframe.upscale(generator, lr, tile=256)
    assert sr.shape == (2, 3, 10, 14)
    assert (sr - _untiled(generator, lr)).abs().max() < 1e-4


def test_grey_arrays_stay_grey_and_keep_their_dtype(generator):
    grey = np.random.default_rng(0).integers(0, 256, (9, 13), dtype=np.uint8)
    sr = srframe.upscale(generator, grey, tile=8)
    assert sr.shape == (18, 26) and sr.dtype == np.uint8
    rgb = _untiled(generator, torch.from_numpy(grey).float().div(255).expand(1, 3, -1, -1))
    assert np.abs(sr.astype(int) - np.rint(rgb.mean(1)[0].numpy() * 255).astype(int)).max() <= 1


def test_alpha_is_upscaled_with_the_bicubic_and_kept_and_colour_premultiplied(generator):
    rgba = np.random.default_rng(1).integers(0, 65536, (10, 12, 4), dtype=np.uint16)
    sr = srframe.upscale(generator, rgba)
    assert sr.shape == (20, 24, 4) and sr.dtype == np.uint16
    alpha = imresize(torch.from_numpy(rgba[..., 3].astype(np.float32) / 65535), scale=2)  # overshoot kept
    assert np.abs(sr[..., 3].astype(int) - np.rint(alpha.clamp(0, 1).numpy() * 65535).astype(int)).max() <= 1
    lr = torch.from_numpy(rgba.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    with torch.no_grad():
        premultiplied = generator(lr[:, :3] * lr[:, 3:])[0].permute(1, 2, 0).numpy()  # model on colour x alpha
    colour = np.clip(premultiplied / alpha.clamp(min=1e-6).numpy()[..., None], 0, 1)  # then / alpha, both unclamped
    visible = alpha.numpy() > 0.05
    assert np.abs(sr[..., :3] / 65535 - colour)[visible].max() < 1e-4


@pytest.mark.parametrize("mode, channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
def test_pil_images_keep_their_mode(generator, mode, channels):
    array = np.random.default_rng(2).integers(0, 256, (6, 7, channels), dtype=np.uint8)
    image = Image.fromarray(array[..., 0] if channels == 1 else array)
    sr = srframe.upscale(generator, image)
    assert sr.mode == mode and sr.size == (14, 12)


def test_reduced_precision_stays_close(generator):
    lr = torch.rand(1, 3, 16, 16)
    expected = _untiled(generator, lr)
    assert (srframe.upscale(generator, lr, precision="bf16") - expected).abs().max() < 0.05
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16"):
        srframe.upscale(generator, lr, precision="fp8")


def _save_16bit_rgb(path, array):
    import png

    png.from_array(array.reshape(array.shape[0], -1), mode="RGB;16").save(str(path))


def test_upscale_command_keeps_grey_alpha_and_16_bit(tmp_path, generator, capsys):
    from srframe.cli import main
    from srframe.data.images import decode_image

    model = srframe.save_component(generator, tmp_path / "model.safetensors")
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (9, 11), dtype=np.uint8)).save(inputs / "grey.png")
    Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)).save(inputs / "sub" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(inputs / "photo.jpg")
    _save_16bit_rgb(inputs / "deep.png", rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16))
    out = tmp_path / "out"
    assert main(["upscale", str(inputs), "-o", str(out), "--model", str(model), "--tile", "4"]) == 0
    assert "4 image(s) written" in capsys.readouterr().out
    shapes = {p.relative_to(out).as_posix(): (decode_image(p).shape, decode_image(p).dtype)
              for p in out.rglob("*.png")}
    assert shapes == {"grey.png": ((18, 22, 1), np.uint8), "sub/rgba.png": ((18, 22, 4), np.uint8),
                      "photo.png": ((18, 22, 3), np.uint8), "deep.png": ((18, 22, 3), np.uint16)}


def test_upscale_command_names_a_missing_input(tmp_path, generator, capsys):
    from srframe.cli import main

    model = srframe.save_component(generator, tmp_path / "model.safetensors")
    assert main(["upscale", str(tmp_path / "nope.png"), "-o", str(tmp_path), "--model", str(model)]) == 2
    assert "nope.png: no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [("--tile", "0", "tile must be >= 1 and overlap >= 0, got tile=0"),
                                                     ("--overlap", "-3", "got tile=256, overlap=-3"),
                                                     ("--batch", "0", "batch_size must be >= 1 (tiles per forward pass)")])
def test_upscale_command_refuses_tile_overlap_and_batch_it_cannot_use(tmp_path, generator, capsys, option, value,
                                                                      message):
    from srframe.cli import main

    model = srframe.save_component(generator, tmp_path / "model.safetensors")
    Image.new("RGB", (9, 11)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", str(model),
                 option, value]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("out/**/*.png"))


def test_upscale_command_refuses_an_output_that_is_a_file(tmp_path, generator, capsys):
    from srframe.cli import main

    model = srframe.save_component(generator, tmp_path / "model.safetensors")
    Image.new("RGB", (9, 11)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "in.png"), "--model", str(model)]) == 2
    assert "is a file: -o names the folder" in capsys.readouterr().err


def test_upscale_prepares_a_model_once_and_again_after_it_changes(generator):
    from srframe.infer.upscale import _prepared

    model = srframe.build("generator", "srresnet", scale=2, num_blocks=1, channels=8).eval()
    lr = torch.rand(1, 3, 6, 6)
    first = srframe.upscale(model, lr)
    prepared = _prepared[model][("fp32", None, None)][1]
    srframe.upscale(model, lr)
    assert _prepared[model][("fp32", None, None)][1] is prepared  # reused
    with torch.no_grad():
        model.tail.bias.add_(0.1)  # what an optimiser step does
    second = srframe.upscale(model, lr)
    assert _prepared[model][("fp32", None, None)][1] is not prepared
    assert torch.allclose(second, _untiled(model, lr), atol=1e-5) and not torch.allclose(first, second)
