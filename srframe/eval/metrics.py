"""PSNR and SSIM as the super-resolution literature computes them.

The protocol: 8-bit images, the Y channel of MATLAB's ``rgb2ycbcr`` (16-235 range, not
rounded), ``crop`` pixels removed at every border (the scale, by convention), PSNR with a
peak of 255, SSIM as Wang et al. (2004): Gaussian window 11x11 with sigma 1.5, K1 = 0.01,
K2 = 0.03, computed where the window fits inside the image (MATLAB's ``filter2(..., 'valid')``).

Inputs are (N, C, H, W) or (C, H, W) tensors: floats in [0, 1], or uint8 (0..255) / uint16
(0..65535) images, which are divided by their maximum. Floats outside [0, 1] (e.g. 0..255) are
refused rather than silently misread. Results are one float64 value per image; PSNR is
``inf`` for identical images (reports write it as ``null``, see docs/evaluation.md).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..errors import ArgumentError

Channel = Literal["y", "rgb"]

SSIM_WINDOW = 11  # Wang et al. (2004): an 11x11 Gaussian window, computed only where it fits
_FLOAT_SLACK = 1e-3  # floats a little outside [0, 1] (resampling overshoot) are accepted

# MATLAB rgb2ycbcr, Y row, for RGB in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B (in 0..255)
Y_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """The Y channel of MATLAB's ``rgb2ycbcr`` on 0..255 scale: (N, 3, H, W) in [0, 1] -> (N, 1, H, W) in [16, 235]."""
    if img.shape[-3] != 3:
        raise ArgumentError(f"rgb_to_y expects 3 channels, got {img.shape[-3]}")
    weights = img.new_tensor(Y_WEIGHTS).view(3, 1, 1)
    return 16.0 + (img * weights).sum(dim=-3, keepdim=True)


def min_side(crop: int) -> int:
    """The smallest height and width that SSIM can score after cropping ``crop`` pixels per border."""
    return 2 * crop + SSIM_WINDOW


def as_unit_float(img: torch.Tensor, name: str = "image") -> torch.Tensor:
    """``img`` as float64 in [0, 1]: uint8 divided by 255, uint16 by 65535, floats checked.

    Raises ArgumentError for floats outside [0, 1] (naming their range and the fix) and other dtypes.
    """
    if img.dtype == torch.uint8 or img.dtype == torch.uint16:
        return img.double() / (255.0 if img.dtype == torch.uint8 else 65535.0)
    if not img.is_floating_point():
        raise ArgumentError(f"{name} is {img.dtype}: metrics take float images in [0, 1], or uint8/uint16 images")
    check_unit_range(img, name, "metrics take floats in [0, 1]")
    return img.double()


def check_unit_range(img: torch.Tensor, name: str = "the image", rule: str = "float images must be in [0, 1]") -> None:
    """ArgumentError (naming ``name`` and the ``rule`` broken) when a float image holds NaN, inf or values
    outside [0, 1] beyond a resampling slack of 1e-3: 0..255 floats, most often, which would otherwise give
    wrong numbers or be clamped."""
    low, high = (float(v) for v in torch.aminmax(img.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ArgumentError(f"{name} holds inf or NaN values; {rule}")
    if low < -_FLOAT_SLACK or high > 1 + _FLOAT_SLACK:
        hint = " (0..255? divide by 255, or pass uint8)" if high > 1 + _FLOAT_SLACK else ""
        raise ArgumentError(f"{name} holds floats from {low:g} to {high:g}: {rule}{hint}")


def _prepare(sr: torch.Tensor, hr: torch.Tensor, crop: int, channel: Channel) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as float64 on the 0..255 scale, in the chosen channel(s), borders cropped."""
    if sr.shape != hr.shape:
        raise ArgumentError(f"SR and HR sizes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if sr.dim() == 3:
        sr, hr = sr.unsqueeze(0), hr.unsqueeze(0)
    if sr.dim() != 4:
        raise ArgumentError(f"metrics take (N, C, H, W) or (C, H, W) images, got shape {tuple(sr.shape)}")
    if channel not in ("y", "rgb"):
        raise ArgumentError(f"channel must be 'y' or 'rgb', not {channel!r}")
    if channel == "y" and sr.shape[1] not in (1, 3):
        raise ArgumentError(f"channel='y' takes grey (1 channel) or RGB (3) images, not {sr.shape[1]} channels")
    if crop < 0:
        raise ArgumentError(f"crop must be >= 0 pixels per border, got {crop}")
    sr, hr = as_unit_float(sr, "the SR image"), as_unit_float(hr, "the HR image")
    if channel == "y" and sr.shape[1] == 3:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    else:  # grey images are their own luminance; "rgb" measures every channel
        sr, hr = sr * 255, hr * 255
    if crop:
        if min(sr.shape[-2:]) <= 2 * crop:
            raise ArgumentError(f"a {sr.shape[-1]}x{sr.shape[-2]} image is too small to crop {crop} pixels per "
                                "border")
        sr, hr = sr[..., crop:-crop, crop:-crop], hr[..., crop:-crop, crop:-crop]
    return sr, hr


def psnr(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, channel: Channel = "y") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (peak 255); ``inf`` for identical images.

    ``sr`` and ``hr``: (N, C, H, W) or (C, H, W), float in [0, 1] or uint8/uint16. Raises ArgumentError
    for other sizes, dtypes or ranges (see :func:`as_unit_float`).
    """
    sr, hr = _prepare(sr, hr, crop, channel)
    mse = ((sr - hr) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse)


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, channel: Channel = "y") -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), averaged over channels when several.

    Takes what :func:`psnr` takes; the images must be at least :func:`min_side` (``2 * crop + 11``)
    pixels on each side, else ArgumentError.
    """
    from kornia.metrics import ssim as ssim_map

    sr, hr = _prepare(sr, hr, crop, channel)
    if min(sr.shape[-2:]) < SSIM_WINDOW:
        raise ArgumentError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping {crop} per "
                            f"border, got {sr.shape[-1]}x{sr.shape[-2]}: images of at least "
                            f"{min_side(crop)}x{min_side(crop)}")
    return ssim_map(sr, hr, window_size=SSIM_WINDOW, max_val=255.0, padding="valid").flatten(1).mean(1)
