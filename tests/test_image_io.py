"""Reading images: formats, bit depths, grey and alpha rules, and errors that name the file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srframe.data import from_array, probe_image, read_image, to_float
from srframe.errors import DataError


def write_png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit PNG (grey, grey + alpha, RGB or RGBA), written by hand: Pillow cannot write 16-bit RGB."""
    height, width, channels = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix, options", [(".png", {}), (".bmp", {}), (".webp", {"lossless": True})])
def test_lossless_formats_round_trip(tmp_path, rgb, suffix, options):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(rgb).save(path, **options)
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 12, 10)
    assert np.array_equal(image.permute(1, 2, 0).numpy(), rgb)
    info = probe_image(path)
    assert (info.width, info.height, info.bit_depth, info.decoded_bytes) == (10, 12, 8, 360)


def test_jpeg_reads_close_to_what_was_written(tmp_path):
    smooth = np.stack([*np.meshgrid(np.arange(32) * 8, np.arange(32) * 8, indexing="ij"), np.full((32, 32), 128)], -1)
    Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "image.jpg", quality=95)
    image = read_image(tmp_path / "image.jpg")
    assert image.shape == (3, 32, 32)
    assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - smooth).mean() < 2


def test_jpeg_exif_orientation_is_applied(tmp_path):
    array = np.zeros((4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown 90 degrees clockwise
    Image.fromarray(array).save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (3, 6, 4)
    info = probe_image(tmp_path / "rotated.jpg")
    assert (info.width, info.height) == (4, 6)


def test_16bit_rgb_png_keeps_its_precision(tmp_path):
    array = (np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000 + 7)  # not multiples of 257
    image = read_image(write_png16(tmp_path / "deep.png", array))
    assert image.dtype == torch.uint16
    assert np.array_equal(image.permute(1, 2, 0).numpy(), array)
    floats = to_float(image)
    torch.testing.assert_close(floats, torch.from_numpy(array.astype(np.float32) / 65535).permute(2, 0, 1))
    assert probe_image(tmp_path / "deep.png").bit_depth == 16


def test_16bit_grey_png_is_replicated(tmp_path):
    grey = np.array([[0, 1], [65534, 65535]], dtype=np.uint16)[..., None]
    image = read_image(write_png16(tmp_path / "grey16.png", grey))
    assert image.dtype == torch.uint16 and image.shape == (3, 2, 2)
    assert torch.equal(image[0], image[2]) and image[1, 0, 1] == 1 and image[1, 1, 0] == 65534


def test_grey_is_replicated_to_three_channels_unless_asked_not_to(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (3, 4, 5) and all(torch.equal(image[c], torch.from_numpy(grey)) for c in range(3))
    assert read_image(tmp_path / "grey.png", rgb=False).shape == (1, 4, 5)


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 51]]], dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png").permute(1, 2, 0).numpy()
    assert image.shape == (1, 3, 3)
    assert image[0, 0].tolist() == [200, 100, 0]  # opaque: unchanged
    assert image[0, 1].tolist() == [255, 255, 255]  # transparent: white
    assert image[0, 2].tolist() == [244, 224, 204]  # 20 % opaque: 0.2 * colour + 0.8 * 255


def test_palette_with_transparency(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255])
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "palette.png", transparency=1)
    image = read_image(tmp_path / "palette.png").permute(1, 2, 0).numpy()
    assert image[0].tolist() == [[255, 0, 0], [255, 255, 255]]


def test_from_array_rejects_what_is_not_an_image():
    assert from_array(np.zeros((2, 3, 4), dtype=np.uint8)).shape == (3, 2, 3)  # RGBA -> RGB
    with pytest.raises(DataError, match="uint8 or uint16 image, got shape"):
        from_array(np.zeros((2, 3), dtype=np.float32))


def test_to_float_scales_by_the_bit_depth():
    assert to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [0.0, 1.0]
    assert to_float(torch.tensor([0, 65535], dtype=torch.uint16), "cpu", torch.float64).dtype == torch.float64
    with pytest.raises(TypeError, match="uint8 or uint16"):
        to_float(torch.zeros(2))


def test_unreadable_files_are_data_errors_naming_the_path(tmp_path, rgb):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a PNG at all")
    with pytest.raises(DataError, match=r"garbage\.png: not an image file"):
        read_image(garbage)
    with pytest.raises(DataError, match=r"garbage\.png: not an image file"):
        probe_image(garbage)
    with pytest.raises(DataError, match=r"missing\.png: no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_truncated_files_are_data_errors(tmp_path, suffix):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(noise).save(whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert probe_image(cut).width == 64  # the header alone is fine
    with pytest.raises(DataError, match=rf"cut\{suffix}: cannot decode the image, it may be truncated"):
        read_image(cut)


def test_truncated_16bit_png(tmp_path):
    whole = write_png16(tmp_path / "whole.png", np.full((40, 40, 3), 300, dtype=np.uint16))
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:60])
    with pytest.raises(DataError, match=r"cut\.png: cannot decode"):
        read_image(cut)
