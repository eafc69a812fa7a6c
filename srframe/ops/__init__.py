"""Fused operations for super-resolution models.

Each op has a plain-torch reference and Triton kernels that compute the same thing faster on
CUDA, registered with ``torch.library`` so autograd, ``torch.compile`` and ``torch.export`` see
one op. ``SRFRAME_OPS=auto|fused|reference`` or :func:`set_mode` / :func:`use_mode` choose.
Triton is imported only when a kernel first runs.
"""

from __future__ import annotations

from .epilogue import bias_prelu
from .inference import ConvPReLU, NNPACKConv2d, PixelShufflePReLU, fold_batchnorm, optimize_for_inference
from .modes import Mode, OpsError, get_mode, set_mode, use_mode
from .subpixel import pixel_shuffle_prelu

__all__ = ["ConvPReLU", "Mode", "NNPACKConv2d", "OpsError", "PixelShufflePReLU", "bias_prelu", "fold_batchnorm", "get_mode",
           "optimize_for_inference", "pixel_shuffle_prelu", "set_mode", "use_mode"]
