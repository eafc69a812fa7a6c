"""Blur kernels, one per sample, built on the device from per-sample parameters drawn on the CPU.

Every function returns ``(B, k, k)`` kernels that sum to 1, for :func:`kornia.filters.filter2d`.
A sample's kernel is ``support`` taps wide (odd), centred and zero-padded to ``k`` so that
kernels of different sizes share one batch. Angles are in degrees, counter-clockwise as
displayed (row 0 at the top), as in :func:`kornia.filters.get_motion_kernel2d`.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F


def gaussian(sigma_x: torch.Tensor, sigma_y: torch.Tensor, angle: torch.Tensor, support: torch.Tensor, k: int,
             device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Anisotropic Gaussians: ``sigma_x`` along the axis turned ``angle`` from horizontal, ``sigma_y`` across it."""
    x, y = _grid(k, device)
    theta = torch.deg2rad(_column(angle, device))
    along = x * torch.cos(theta) - y * torch.sin(theta)  # y grows downwards, so -y points up
    across = x * torch.sin(theta) + y * torch.cos(theta)
    kernel = torch.exp(-0.5 * ((along / _column(sigma_x, device)) ** 2 + (across / _column(sigma_y, device)) ** 2))
    return _normalised(kernel, support, k, device).to(dtype)


def sinc(cutoff: torch.Tensor, support: torch.Tensor, k: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Circular low-pass (2-D sinc) kernels; ``cutoff`` is the pass band as a fraction of Nyquist."""
    x, y = _grid(k, device)
    radius = torch.sqrt(x**2 + y**2)
    omega = _column(cutoff, device) * math.pi
    safe = torch.where(radius > 0, radius, torch.ones_like(radius))
    kernel = torch.where(radius > 0, omega * torch.special.bessel_j1(omega * safe) / (2 * math.pi * safe),
                         omega**2 / (4 * math.pi))
    return _normalised(kernel, support, k, device).to(dtype)


def motion(length: torch.Tensor, angle: torch.Tensor, direction: torch.Tensor, k: int, device: torch.device,
           dtype: torch.dtype) -> torch.Tensor:
    """Motion-blur lines ``length`` taps long (kornia's kernels), one kornia call per distinct length."""
    out = torch.zeros(len(length), k, k, device=device, dtype=torch.float32)
    for size in length.unique().tolist():
        members = (length == size).nonzero().squeeze(1)
        lines = kornia.filters.get_motion_kernel2d(size, angle[members].to(device, torch.float32),
                                                   direction[members].to(device, torch.float32), mode="bilinear")
        pad = (k - size) // 2
        out[members.to(device)] = F.pad(lines, (pad, pad, pad, pad))
    return (out / out.sum((-2, -1), keepdim=True)).to(dtype)


def _grid(k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Tap offsets from the centre, x across and y down, shape (1, k, k)."""
    r = torch.arange(k, device=device, dtype=torch.float32) - k // 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    return x[None], y[None]


def _column(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    return values.to(device, torch.float32)[:, None, None]


def _normalised(kernel: torch.Tensor, support: torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
    """``kernel`` cut to each sample's ``support`` x ``support`` square and scaled to sum to 1."""
    x, y = _grid(k, device)
    half = _column(support // 2, device)
    kernel = kernel * ((x.abs() <= half) & (y.abs() <= half))
    return kernel / kernel.sum((-2, -1), keepdim=True)
