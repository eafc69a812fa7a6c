"""Numbers right, or refused: metric inputs, infinite scores in JSON, images too small to score,
the one HR/LR pairing rule, and EXIF orientation agreed on by the size probe and the decoder."""

from __future__ import annotations

import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srframe
from srframe.cli import main
from srframe.data import PairedFolder
from srframe.data.images import decode_image, probe_image
from srframe.degrade import imresize
from srframe.errors import ArgumentError, DataError
from srframe.eval.benchmark import load_benchmark
from srframe.eval.metrics import psnr, ssim


def _noise(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# --- metric inputs ---------------------------------------------------------------------------

@pytest.fixture
def pair():
    hr = torch.from_numpy(_noise(32, 32).transpose(2, 0, 1).copy())
    sr = (hr.int() + torch.randint(-3, 4, hr.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 255)
    return sr.to(torch.uint8), hr


def test_uint8_images_are_scored_as_the_same_images_in_floats(pair):
    sr, hr = pair
    as_floats = psnr(sr.float() / 255, hr.float() / 255, crop=4)
    assert float(psnr(sr, hr, crop=4)) == pytest.approx(float(as_floats), rel=1e-7)
    assert 40 < float(as_floats) < 55  # noise of a few grey levels, not -9.96 dB
    assert float(ssim(sr, hr, crop=4)) == pytest.approx(float(ssim(sr.float() / 255, hr.float() / 255, crop=4)))


def test_uint16_images_are_divided_by_their_own_maximum(pair):
    sr, hr = pair
    deep = [x.to(torch.int32).mul(257).to(torch.uint16) for x in (sr, hr)]  # the same images at 16 bits
    assert float(psnr(*deep, crop=4)) == pytest.approx(float(psnr(sr, hr, crop=4)), abs=1e-9)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_floats_outside_0_to_1_are_refused_with_the_fix(pair, metric):
    sr, hr = pair
    with pytest.raises(ArgumentError, match=r"floats from 0 to 25\d: metrics take floats in \[0, 1\] \(0..255\? "
                                            "divide by 255"):
        metric(sr.float(), hr.float(), crop=4)
    with pytest.raises(ArgumentError, match="int64: metrics take float images"):
        metric(sr.long(), hr.long())


# --- infinite scores ------------------------------------------------------------------------

def test_an_image_bicubic_reproduces_exactly_gives_null_in_strict_json_and_a_warning(tmp_path, caplog, capsys):
    data = tmp_path / "flat"
    data.mkdir()
    Image.fromarray(np.full((24, 24, 3), 128, dtype=np.uint8)).save(data / "flat.png")
    Image.fromarray(_noise(24, 24)).save(data / "noise.png")
    table = tmp_path / "table.json"
    with caplog.at_level(logging.WARNING, logger="srframe.eval"):
        assert main(["eval", "--data", str(data), "--scale", "2", "--no-lpips", "--json", str(table),
                     "-o", str(tmp_path / "report")]) == 0
    assert "| flat | bicubic | inf |" in capsys.readouterr().out
    assert _strict_json(table.read_text())["flat"]["bicubic"]["psnr_y"] is None
    rows = _strict_json((tmp_path / "report" / "results.json").read_text())["sets"]["flat"]["bicubic"]["images"]
    assert [row["psnr_y"] is None for row in rows] == [True, False]  # flat.png, noise.png
    assert any("flat/flat: psnr_y of bicubic is inf (the output equals the HR image)" in r.getMessage()
               for r in caplog.records)


# --- images too small to score --------------------------------------------------------------

def test_an_image_too_small_for_a_custom_crop_is_named_with_the_minimum(tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(_noise(40, 40)).save(data / "big.png")
    Image.fromarray(_noise(24, 26)).save(data / "small.png")
    with pytest.raises(DataError, match="set/small: 26x24 pixels is too small to score with a 8-pixel border crop: "
                                        "at least 27x27"):
        srframe.evaluate("bicubic", data, scale=2, crop=8)
    assert srframe.evaluate("bicubic", data, scale=2, crop=2).summary()["n"] == 2


# --- one pairing rule -----------------------------------------------------------------------

@pytest.mark.parametrize("width, height, scale", [(481, 321, 4), (100, 98, 3)])
def test_an_uncropped_hr_image_pairs_with_the_lr_made_from_its_crop_everywhere(tmp_path, width, height, scale):
    hr = _noise(height, width)
    crop = hr[: height - height % scale, : width - width % scale]
    lr = imresize(torch.from_numpy(crop.transpose(2, 0, 1).copy()), scale=1 / scale).permute(1, 2, 0).numpy()
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    Image.fromarray(hr).save(pairs / "img_HR.png")
    Image.fromarray(lr).save(pairs / f"img_LRx{scale}.png")
    (image,) = load_benchmark(pairs, scale)
    assert tuple(image.hr.shape) == (3, crop.shape[0], crop.shape[1])
    assert torch.equal(image.hr, torch.from_numpy(crop.transpose(2, 0, 1).copy()))
    cropped = tmp_path / "cropped"  # the same image, HR only: the LR is made from the same crop
    cropped.mkdir()
    Image.fromarray(crop).save(cropped / "img.png")
    paired_score = srframe.evaluate("bicubic", pairs, scale=scale).summary()
    assert paired_score == srframe.evaluate("bicubic", cropped, scale=scale).summary()

    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    Image.fromarray(hr).save(tmp_path / "hr" / "img.png")
    Image.fromarray(lr).save(tmp_path / "lr" / "img.png")
    val = PairedFolder(tmp_path / "hr", tmp_path / "lr", scale=scale, mode="val", on_bad_file="error")
    assert torch.equal(val[0]["hr"], image.hr) and torch.equal(val[0]["lr"], image.lr)


def test_an_lr_image_one_pixel_off_is_refused_by_both(tmp_path):
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    Image.fromarray(_noise(321, 481)).save(tmp_path / "hr" / "img_HR.png")
    Image.fromarray(_noise(81, 120)).save(tmp_path / "lr" / "img_LRx4.png")
    with pytest.raises(DataError, match=r"img_LRx4.png does not pair with .*img_HR.png at x4: it has 120x81 pixels, "
                                        r"not 120x80 \(.*481x321 divided by 4, rounded down\)"):
        srframe.evaluate("bicubic", tmp_path / "hr", scale=4) if False else load_benchmark(_side_by_side(tmp_path), 4)
    with pytest.raises(DataError, match="img_LRx4.png: 120x81 pixels does not match its HR image"):
        PairedFolder(tmp_path / "hr", tmp_path / "lr", scale=4, mode="val", on_bad_file="error")


def _side_by_side(tmp_path: Path) -> Path:
    both = tmp_path / "both"
    both.mkdir()
    for side in ("hr", "lr"):
        for file in (tmp_path / side).iterdir():
            (both / file.name).write_bytes(file.read_bytes())
    return both


# --- EXIF orientation -----------------------------------------------------------------------

def _png_with_exif(path: Path, array: np.ndarray, orientation: int, exif_after_pixels: bool = False) -> Path:
    """A PNG whose eXIf chunk (orientation only) comes before the pixels, as Pillow writes it, or after them."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path)
    data = path.read_bytes()
    chunk_data = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif\x00\x00") else exif.tobytes()
    chunk = struct.pack(">I", len(chunk_data)) + b"eXIf" + chunk_data
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + chunk_data) & 0xFFFFFFFF)
    at = data.index(b"IEND") - 4 if exif_after_pixels else data.index(b"IDAT") - 4
    path.write_bytes(data[:at] + chunk + data[at:])
    return path


@pytest.mark.parametrize("after", [False, True], ids=["eXIf before the pixels", "eXIf after the pixels"])
def test_the_size_probe_agrees_with_the_decoder_on_a_turned_png(tmp_path, after):
    stored = _noise(20, 36)  # stored 36 wide, 20 high; orientation 6 shows it 20 wide, 36 high
    path = _png_with_exif(tmp_path / "turned.png", stored, 6, exif_after_pixels=after)
    with Image.open(path) as reference:  # what Pillow's own EXIF transpose shows
        reference.load()
        from PIL import ImageOps

        shown = np.asarray(ImageOps.exif_transpose(reference))
    decoded = decode_image(path)
    info = probe_image(path)
    assert decoded.shape == (36, 20, 3) == shown.shape and np.array_equal(decoded, shown)
    assert (info.height, info.width) == decoded.shape[:2]


def test_a_turned_16bit_png_is_turned_too(tmp_path):
    import png

    deep = np.random.default_rng(0).integers(0, 65536, (20, 36, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    png.from_array(deep.reshape(20, -1), mode="RGB;16").save(str(path))
    exif = Image.Exif()
    exif[0x0112] = 8
    data = path.read_bytes()
    payload = exif.tobytes()
    payload = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    at = data.index(b"IDAT") - 4
    path.write_bytes(data[:at] + chunk + data[at:])
    decoded = decode_image(path)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, np.rot90(deep, 1))
    assert (probe_image(path).height, probe_image(path).width) == (36, 20)


def test_a_pair_with_a_turned_hr_png_is_paired_as_it_is_shown(tmp_path):
    shown_hr = _noise(36, 20)  # as displayed: 20 wide, 36 high
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    _png_with_exif(tmp_path / "hr" / "a.png", np.rot90(shown_hr, 1).copy(), 6)  # stored turned back
    Image.fromarray(_noise(9, 5)).save(tmp_path / "lr" / "a.png")  # 5 wide, 9 high: right as displayed
    train = PairedFolder(tmp_path / "hr", tmp_path / "lr", scale=4, patch_size=20, on_bad_file="error")
    assert tuple(train[0]["hr"].shape) == (3, 20, 20) and tuple(train[0]["lr"].shape) == (3, 5, 5)
    Image.fromarray(_noise(5, 9)).save(tmp_path / "lr" / "a.png")  # the stored (unturned) size: wrong
    with pytest.raises(DataError, match="9x5 pixels does not match its HR image"):
        PairedFolder(tmp_path / "hr", tmp_path / "lr", scale=4, patch_size=20, on_bad_file="error")


def test_validation_images_of_the_same_name_are_refused_naming_both(tmp_path):
    from srframe.data import ImageFolder
    from srframe.train.validate import validation_images

    Image.fromarray(_noise(24, 24)).save(tmp_path / "x.png")
    Image.fromarray(_noise(24, 24, seed=1)).save(tmp_path / "x.bmp")
    dataset = ImageFolder(tmp_path, scale=2, mode="val", on_bad_file="error")
    with pytest.raises(DataError, match=r"\[data.val\]: images must have distinct names without their suffix: "
                                        r".*x.bmp, .*x.png"):
        validation_images(dataset, 2)


@pytest.mark.parametrize("call, says", [
    (lambda sr, hr: psnr(sr.float().div(255).index_fill(-1, torch.tensor([3]), float("nan")), hr), "holds inf or NaN values"),
    (lambda sr, hr: psnr(sr, hr, crop=-1), "crop must be >= 0"),
    (lambda sr, hr: ssim(sr, hr, channel="lab"), "channel must be 'y' or 'rgb'"),
    (lambda sr, hr: psnr(sr[:2], hr[:2]), r"takes grey \(1 channel\) or RGB \(3\) images, not 2 channels"),
])
def test_metric_arguments_it_cannot_score_are_refused(pair, call, says):
    with pytest.raises(ArgumentError, match=says):
        call(*pair)


def test_the_grey_image_convention_is_a_switch_recorded_in_the_json(tmp_path, capsys):
    """BasicSR's convention scores a grey image 20 log10(255/219) = 1.32 dB higher (Y in 16-235 of three
    equal channels); an RGB image scores the same either way; the JSON says which convention was used."""
    import json
    import math

    import numpy as np
    from PIL import Image

    from srframe.cli import main
    from srframe.eval.benchmark import evaluate

    rng = np.random.default_rng(0)
    grey_set, rgb_set = tmp_path / "Grey", tmp_path / "Colour"
    grey_set.mkdir()
    rgb_set.mkdir()
    Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8), mode="L").save(grey_set / "bridge.png")
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(rgb_set / "baboon.png")
    ours, theirs = (evaluate("bicubic", grey_set, scale=4, grey=grey) for grey in ("intensity", "basicsr"))
    assert theirs.images[0].psnr_y - ours.images[0].psnr_y == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)
    colour = [evaluate("bicubic", rgb_set, scale=4, grey=grey).images[0].psnr_y for grey in ("intensity", "basicsr")]
    assert colour[0] == colour[1]
    with pytest.raises(ArgumentError, match="grey must be one of intensity, basicsr"):
        evaluate("bicubic", grey_set, scale=4, grey="opencv")

    table = tmp_path / "table.json"
    assert main(["eval", "--data", str(grey_set), "--scale", "4", "--no-lpips", "--grey", "basicsr",
                 "--json", str(table)]) == 0
    row = json.loads(table.read_text())["Grey"]["bicubic"]
    assert row["grey"] == "basicsr" and row["psnr_y"] == pytest.approx(theirs.images[0].psnr_y)
