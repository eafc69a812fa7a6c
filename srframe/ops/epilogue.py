"""The bias + PReLU conv epilogue as one op, ``srframe::bias_prelu``, for inference.

On CUDA, PyTorch adds a convolution's bias in a pass of its own after cuDNN's kernel, and a
PReLU that follows is one more: running the conv without bias and this op instead saves one
read and one write of the feature map. The op has no autograd formula: it is for inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .modes import use_fused
from .subpixel import memory_format_of


def reference(y: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Plain torch: ``prelu(y + bias[c], weight)``, laid out like ``y``."""
    out = F.prelu(y + bias.to(y.dtype).view(1, -1, 1, 1), weight.to(y.dtype))
    return out.contiguous(memory_format=memory_format_of(y))


@torch.library.custom_op("srframe::bias_prelu", mutates_args=())
def _bias_prelu(y: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if use_fused(y):
        from . import triton_kernels

        out = torch.empty_like(y, memory_format=memory_format_of(y))
        return triton_kernels.shuffle_prelu(y, weight, 1, out, bias=bias)
    return reference(y, bias, weight)


@_bias_prelu.register_fake
def _(y: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(y, memory_format=memory_format_of(y))


def bias_prelu(y: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``prelu(y + bias, weight)`` for a (N, C, H, W) ``y``, ``bias`` of C values, one or C slopes."""
    if y.dim() != 4 or bias.numel() != y.shape[1] or weight.numel() not in (1, y.shape[1]):
        raise ValueError(f"bias_prelu takes y (N, C, H, W), C biases and 1 or C slopes; got y {tuple(y.shape)}, "
                         f"{bias.numel()} biases, {weight.numel()} slopes")
    return torch.ops.srframe.bias_prelu.default(y, bias, weight)
