"""MATLAB ``imresize(..., 'bicubic')``, exactly, batched in torch.

Each 1-D pass is a matrix product with a precomputed (out, in) weight matrix that already
folds in MATLAB's antialiasing (the kernel widened by 1/scale when shrinking), its coordinate
mapping and its borders: MATLAB clamps out-of-range indices, which replicates the edge pixels
(this, not mirroring, is what reproduces MATLAB's output bit for bit). As in MATLAB, the dimension with the smaller scale is
resized first (rows first on a tie), and uint8 input is rounded and clamped after each pass.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

KERNEL_WIDTH = 4.0  # the support of the Keys cubic, in input pixels


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=64)
def weight_matrix(in_length: int, out_length: int, scale: float, antialias: bool = True) -> torch.Tensor:
    """The (out_length, in_length) float64 matrix of one 1-D pass (MATLAB's ``contributions``)."""
    width = KERNEL_WIDTH
    if scale < 1 and antialias:
        width /= scale
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel x in input coordinates (1-based)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)  # (out, taps), 1-based
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if scale < 1 and antialias else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    columns = (indices.long() - 1).clamp(0, in_length - 1)  # MATLAB: "has the effect of replicating end-points"
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    matrix.scatter_add_(1, columns, weights)
    return matrix


def _plan(height: int, width: int, scale: float | Sequence[float] | None,
          size: Sequence[int] | None) -> list[tuple[int, int, int, float]]:
    """The passes as (dim, in_length, out_length, scale), in MATLAB's order."""
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale and size")
    if size is not None:
        if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"size must be (height, width) in positive integers, got {size!r}")
        scales = (size[0] / height, size[1] / width)
        out = tuple(size)
    else:
        scales = tuple(scale) if isinstance(scale, Sequence) else (scale, scale)
        if len(scales) != 2 or any(s <= 0 for s in scales):
            raise ValueError(f"scale must be a positive number or a (height, width) pair, got {scale!r}")
        out = (math.ceil(scales[0] * height), math.ceil(scales[1] * width))
    passes = [(-2, height, out[0], float(scales[0])), (-1, width, out[1], float(scales[1]))]
    return sorted(passes, key=lambda p: p[3])  # stable: rows first on a tie, as MATLAB


def imresize(x: torch.Tensor, scale: float | Sequence[float] | None = None,
             size: Sequence[int] | None = None, *, antialias: bool = True, clamp: bool = False) -> torch.Tensor:
    """Resize the last two dimensions (H, W) of ``x`` exactly as MATLAB's bicubic ``imresize``.

    ``x`` is (..., H, W), e.g. (N, C, H, W), on any device. Give ``scale`` (``1/4`` shrinks,
    ``4`` enlarges; a (height, width) pair for two factors; output size ``ceil(scale * in)``)
    or ``size = (height, width)``. uint8 input gives uint8 output, rounded and clamped to
    0..255 after each 1-D pass as MATLAB does. Floating-point input gives output of the same
    dtype, unclamped as MATLAB's, or with ``clamp=True`` clamped to [0, 1] after each pass: the
    float counterpart of the uint8 path, which it then matches to within one grey level.
    """
    if x.dim() < 2:
        raise ValueError(f"imresize needs a tensor of at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    quantize = x.dtype == torch.uint8
    if not quantize and not x.is_floating_point():
        raise TypeError(f"imresize takes uint8 or floating-point tensors, got {x.dtype}")
    work_dtype = torch.float64 if quantize else x.dtype
    if quantize and x.device.type == "mps":  # no float64 there
        work_dtype = torch.float32
    out = x.to(work_dtype)
    for dim, in_length, out_length, s in _plan(x.shape[-2], x.shape[-1], scale, size):
        matrix = weight_matrix(in_length, out_length, s, antialias).to(x.device, work_dtype)
        out = torch.matmul(matrix, out) if dim == -2 else torch.matmul(out, matrix.T)
        if quantize:
            out = torch.floor(out + 0.5).clamp_(0, 255)  # MATLAB rounds half away from zero
        elif clamp:
            out = out.clamp(0, 1)
    return out.to(torch.uint8) if quantize else out
