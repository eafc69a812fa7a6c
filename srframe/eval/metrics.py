"""PSNR and SSIM as the super-resolution literature computes them.

The protocol: 8-bit images, the Y channel of MATLAB's ``rgb2ycbcr`` (16-235 range, not
rounded), ``crop`` pixels removed at every border (the scale, by convention), PSNR with a
peak of 255, SSIM as Wang et al. (2004): Gaussian window 11x11 with sigma 1.5, K1 = 0.01,
K2 = 0.03, computed where the window fits inside the image (MATLAB's ``filter2(..., 'valid')``).

Inputs are float tensors in [0, 1], (N, C, H, W) or (C, H, W); results are one value per image.
"""

from __future__ import annotations

from typing import Literal

import torch

Channel = Literal["y", "rgb"]

# MATLAB rgb2ycbcr, Y row, for RGB in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B (in 0..255)
_Y_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """The Y channel of MATLAB's ``rgb2ycbcr`` on 0..255 scale: (N, 3, H, W) in [0, 1] -> (N, 1, H, W) in [16, 235]."""
    if img.shape[-3] != 3:
        raise ValueError(f"rgb_to_y expects 3 channels, got {img.shape[-3]}")
    weights = img.new_tensor(_Y_WEIGHTS).view(3, 1, 1)
    return 16.0 + (img * weights).sum(dim=-3, keepdim=True)


def _prepare(sr: torch.Tensor, hr: torch.Tensor, crop: int, channel: Channel) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as float64 on the 0..255 scale, in the chosen channel(s), borders cropped."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR sizes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if sr.dim() == 3:
        sr, hr = sr.unsqueeze(0), hr.unsqueeze(0)
    sr, hr = sr.double(), hr.double()
    if channel == "y" and sr.shape[1] == 3:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    else:  # grey images are their own luminance; "rgb" measures every channel
        sr, hr = sr * 255, hr * 255
    if crop:
        if min(sr.shape[-2:]) <= 2 * crop:
            raise ValueError(f"a {sr.shape[-2]}x{sr.shape[-1]} image is too small to crop {crop} pixels per border")
        sr, hr = sr[..., crop:-crop, crop:-crop], hr[..., crop:-crop, crop:-crop]
    return sr, hr


def psnr(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, channel: Channel = "y") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (peak 255); infinite for identical images."""
    sr, hr = _prepare(sr, hr, crop, channel)
    mse = ((sr - hr) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse)


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop: int = 0, channel: Channel = "y") -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), averaged over channels when several."""
    from kornia.metrics import ssim as ssim_map

    sr, hr = _prepare(sr, hr, crop, channel)
    if min(sr.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {sr.shape[-2]}x{sr.shape[-1]}")
    return ssim_map(sr, hr, window_size=11, max_val=255.0, padding="valid").flatten(1).mean(1)
