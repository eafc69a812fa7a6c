"""Fused operations for super-resolution models.

Each op has a plain-torch reference implementation; GPU kernels that compute the same
thing faster replace it where they exist, so a model calls the op and never changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_shuffle_prelu(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
    """Sub-pixel shuffle by ``upscale`` followed by PReLU with ``weight`` (one or per-channel slopes).

    (N, C * r^2, H, W) -> (N, C, H * r, W * r).
    """
    return F.prelu(F.pixel_shuffle(x, upscale), weight)
