"""The MATLAB-compatible bicubic resize and the ``bicubic`` degradation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srframe
from srframe.degrade import Bicubic, imresize
from srframe.errors import DataError

CANONICAL = Path(__file__).parents[1] / ".." / "shared" / "data" / "benchmark" / "x4_canonical"
HR_FILES = sorted(CANONICAL.glob("Set*/*_HR.png"))
needs_canonical = pytest.mark.skipif(not HR_FILES, reason=f"canonical x4 pairs not found in {CANONICAL}")


def load_chw(path: Path) -> torch.Tensor:
    """A PNG as stored (grey stays 1 channel), (C, H, W) uint8."""
    array = np.array(Image.open(path))
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())


@pytest.fixture(scope="module")
def canonical() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    return [(hr.name, load_chw(hr), load_chw(hr.with_name(hr.name.replace("_HR", "_LRx4")))) for hr in HR_FILES]


@needs_canonical
def test_reproduces_every_canonical_lr_image_bit_for_bit(canonical):
    assert len(canonical) == 19  # Set5 + Set14, bridge among them single-channel
    assert any(hr.shape[0] == 1 for _, hr, _ in canonical)
    for name, hr, lr in canonical:
        ours = imresize(hr, 1 / 4)
        assert ours.dtype == torch.uint8 and ours.shape == lr.shape, name
        assert torch.equal(ours, lr), f"{name}: {int((ours != lr).sum())} pixels differ"


@needs_canonical
def test_float_path_is_within_one_grey_level_of_the_uint8_path(canonical):
    degrade = srframe.build("degradation", "bicubic", scale=4)
    for name, hr, lr in canonical:
        batch = hr[None].to(torch.float32) / 255
        out = degrade(batch, torch.Generator().manual_seed(0))
        assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
        difference = (out[0] * 255 - lr.to(torch.float32)).abs().max().item()
        assert difference < 1, f"{name}: {difference:.3f} grey levels"


def matlab_reference(image: np.ndarray, out_h: int, out_w: int, scale_h: float, scale_w: float) -> np.ndarray:
    """MATLAB's imresize written out per output pixel in numpy (float64, no rounding)."""

    def resize_rows(a: np.ndarray, out_len: int, scale: float) -> np.ndarray:
        in_len = a.shape[0]
        width = 4 / scale if scale < 1 else 4
        result = np.zeros((out_len,) + a.shape[1:])
        for x in range(1, out_len + 1):
            u = x / scale + 0.5 * (1 - 1 / scale)
            left = math.floor(u - width / 2)
            taps = [left + k for k in range(math.ceil(width) + 2)]
            h = [(scale * cubic(scale * (u - j)) if scale < 1 else cubic(u - j)) for j in taps]
            total = sum(h)
            for j, w in zip(taps, h):
                result[x - 1] += w / total * a[min(max(j, 1), in_len) - 1]
        return result

    def cubic(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return 1.5 * t**3 - 2.5 * t**2 + 1
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2 if t <= 2 else 0.0

    if scale_h <= scale_w:
        return resize_rows(resize_rows(image, out_h, scale_h).T, out_w, scale_w).T
    return resize_rows(resize_rows(image.T, out_w, scale_w).T, out_h, scale_h)


@pytest.mark.parametrize("scale, size", [(3, None), (2.5, None), (1 / 3, None), (None, (11, 7)), (None, (3, 20))])
def test_any_scale_or_size_matches_matlabs_formula(scale, size):
    image = torch.rand(1, 1, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = imresize(image, scale=scale, size=size)[0, 0].numpy()
    out_h, out_w = size or (math.ceil(scale * 9), math.ceil(scale * 13))
    assert ours.shape == (out_h, out_w)
    scales = (out_h / 9, out_w / 13) if size else (scale, scale)
    expected = matlab_reference(image[0, 0].numpy(), out_h, out_w, *scales)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_two_scales_resize_the_smaller_scale_first():
    # MATLAB shrinks first: the uint8 rounding after the first pass then differs by order.
    image = torch.randint(0, 256, (2, 3, 24, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    shrink_rows = imresize(image, scale=(0.5, 2))
    rows = imresize(imresize(image, scale=(0.5, 1)), scale=(1, 2))
    assert torch.equal(shrink_rows, rows)
    shrink_cols = imresize(image, scale=(2, 0.5))
    cols = imresize(imresize(image, scale=(1, 0.5)), scale=(2, 1))
    assert torch.equal(shrink_cols, cols)


def test_batches_channels_and_constants():
    generator = torch.Generator().manual_seed(2)
    batch = torch.rand(4, 3, 32, 24, generator=generator)
    whole = imresize(batch, 1 / 4)
    assert whole.shape == (4, 3, 8, 6)
    torch.testing.assert_close(whole[2, 1], imresize(batch[2, 1], 1 / 4))  # each image on its own
    constant = torch.full((1, 1, 10, 10), 0.7, dtype=torch.float64)
    torch.testing.assert_close(imresize(constant, 1 / 3), torch.full((1, 1, 4, 4), 0.7, dtype=torch.float64))
    assert torch.equal(imresize(batch, 1), batch)


def test_float_output_is_unclamped_unless_asked():
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1
    up = imresize(edge, 2)
    assert up.min() < 0 and up.max() > 1  # the cubic overshoots at edges, as MATLAB's does
    clamped = imresize(edge, 2, clamp=True)
    assert clamped.min() == 0 and clamped.max() == 1


def test_argument_errors():
    image = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="exactly one of scale and size"):
        imresize(image)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        imresize(image, scale=-1)
    with pytest.raises(TypeError, match="uint8 or floating-point"):
        imresize(image.to(torch.int32), 2)


def test_bicubic_degradation():
    degrade = srframe.build("degradation", "bicubic", scale=2)
    assert isinstance(degrade, srframe.Degradation) and isinstance(degrade, Bicubic) and degrade.scale == 2
    hr = torch.rand(2, 3, 16, 12, generator=torch.Generator().manual_seed(3))
    lr = degrade(hr, torch.Generator().manual_seed(0))
    assert lr.shape == (2, 3, 8, 6)
    assert torch.equal(lr, degrade(hr, torch.Generator().manual_seed(99)))  # deterministic
    with pytest.raises(DataError, match="15x12 pixels is not a multiple of the scale 2"):
        degrade(hr[..., :15, :], torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_result():
    generator = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (3, 3, 64, 48), dtype=torch.uint8, generator=generator)
    assert torch.equal(imresize(images.cuda(), 1 / 4).cpu(), imresize(images, 1 / 4))
    floats = images.float() / 255
    torch.testing.assert_close(imresize(floats.cuda(), 3).cpu(), imresize(floats, 3), atol=1e-5, rtol=0)
