"""Sub-pixel shuffle + PReLU as one op, ``srframe::pixel_shuffle_prelu``, registered with torch.library.

The op and its backward are custom ops with fake (meta) implementations and an autograd
formula, so they work under autograd, ``torch.compile(fullgraph=True)`` and ``torch.export``.
Each call picks the Triton kernels or the plain-torch reference by :mod:`srframe.ops.modes`.

Eager calls skip the dispatcher: a Python custom op costs about 100 us of CPU per call, and its
autograd wrapper several hundred more in the backward (measured on an H200 host), more than the
kernels' GPU time. They go through :class:`_Eager`, an autograd.Function over the same two
implementations; traced code (torch.compile, torch.export) sees the registered op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .modes import use_fused


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for a channels-last 4-D tensor that is not also contiguous, else ``contiguous_format``."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _slopes(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PReLU slopes in ``x``'s dtype, shaped to broadcast over (N, C, H, W)."""
    weight = weight.to(x.dtype).reshape(-1)
    return weight.view(1, -1, 1, 1) if weight.numel() > 1 else weight


def reference(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
    """Plain torch: ``prelu(pixel_shuffle(x, upscale), weight)``, laid out like ``x``.

    On the CPU one slope is applied in place on the fresh shuffled tensor (``leaky_relu_``, the same
    arithmetic), which saves allocating, and page-faulting in, a second output-sized tensor.
    """
    shuffled = F.pixel_shuffle(x, upscale).contiguous(memory_format=memory_format_of(x))
    if x.device.type == "cpu" and weight.numel() == 1 and upscale > 1:  # upscale > 1: never a view of x
        return F.leaky_relu_(shuffled, float(weight.to(x.dtype)))
    return F.prelu(shuffled, weight.to(x.dtype))


def reference_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                       upscale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch gradients: unshuffle(grad * prelu'(y)) for ``x``, the sum of grad * y where y <= 0
    for ``weight`` (y = pixel_shuffle(x)); computed on the unshuffled side, where y's values are x's."""
    slopes = _slopes(weight, x)
    if slopes.numel() > 1:  # the slope of output channel c applies to input channels c r^2 ... (c + 1) r^2 - 1
        slopes = slopes.repeat_interleave(upscale**2, dim=1)
    grad_x, slope_grads = torch.ops.aten._prelu_kernel_backward(F.pixel_unshuffle(grad, upscale), x, slopes)
    if weight.numel() > 1:
        grad_w = slope_grads.sum((0, 2, 3)).view(-1, upscale**2).sum(1)
    else:
        grad_w = slope_grads.sum()
    return grad_x.contiguous(memory_format=memory_format_of(x)), grad_w.to(weight.dtype).reshape(weight.shape)


def _kernels():
    from . import triton_kernels

    return triton_kernels


def _output_like(x: torch.Tensor, upscale: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return torch.empty((n, c // upscale**2, h * upscale, w * upscale), dtype=x.dtype, device=x.device,
                       memory_format=memory_format_of(x))


def _forward(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
    if use_fused(x):
        return _kernels().shuffle_prelu(x, weight, upscale, _output_like(x, upscale))
    return reference(x, weight, upscale)


def _backward_of(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                 upscale: int) -> tuple[torch.Tensor, torch.Tensor]:
    if use_fused(x):
        grad_x = torch.empty_like(x, memory_format=memory_format_of(x))
        return grad_x, _kernels().shuffle_prelu_backward(grad, x, weight, upscale, grad_x)
    return reference_backward(grad, x, weight, upscale)


@torch.library.custom_op("srframe::pixel_shuffle_prelu", mutates_args=())
def _pixel_shuffle_prelu(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
    return _forward(x, weight, upscale)


@_pixel_shuffle_prelu.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
    return _output_like(x, upscale)


@torch.library.custom_op("srframe::pixel_shuffle_prelu_backward", mutates_args=())
def _pixel_shuffle_prelu_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                                  upscale: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _backward_of(grad, x, weight, upscale)


@_pixel_shuffle_prelu_backward.register_fake
def _(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, upscale: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(x, memory_format=memory_format_of(x)), torch.empty_like(weight)


def _setup_context(ctx, inputs, output) -> None:
    x, weight, upscale = inputs
    ctx.save_for_backward(x, weight)
    ctx.upscale = upscale


def _backward(ctx, grad: torch.Tensor):
    x, weight = ctx.saved_tensors
    grad_x, grad_w = torch.ops.srframe.pixel_shuffle_prelu_backward.default(grad, x, weight, ctx.upscale)
    return grad_x, grad_w, None


_pixel_shuffle_prelu.register_autograd(_backward, setup_context=_setup_context)


class _Eager(torch.autograd.Function):
    """The op for eager calls: the same implementations, without the dispatcher's per-call cost."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.upscale = upscale
        return _forward(x, weight, upscale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x, grad_w = _backward_of(grad, x, weight, ctx.upscale)
        return grad_x, grad_w, None


def pixel_shuffle_prelu(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
    """Sub-pixel shuffle by ``upscale``, then PReLU with ``weight`` (one slope, or one per output channel).

    (N, C * r^2, H, W) -> (N, C, H * r, W * r), laid out like ``x`` (contiguous or channels_last).
    ``weight`` is applied in ``x``'s dtype; its gradient comes back in its own dtype. Differentiable
    once (no double backward).
    """
    if x.dim() != 4:
        raise ValueError(f"pixel_shuffle_prelu takes a 4-D (N, C, H, W) tensor, not shape {tuple(x.shape)}")
    if upscale < 1 or x.shape[1] % upscale**2:
        raise ValueError(f"pixel_shuffle_prelu: {x.shape[1]} input channels do not split into "
                         f"upscale^2 = {upscale**2} sub-pixels (upscale = {upscale})")
    channels = x.shape[1] // upscale**2
    if weight.numel() not in (1, channels):
        raise ValueError(f"pixel_shuffle_prelu: weight has {weight.numel()} slopes; "
                         f"give 1 or one per output channel ({channels})")
    if torch.compiler.is_compiling():
        return torch.ops.srframe.pixel_shuffle_prelu.default(x, weight, upscale)
    return _Eager.apply(x, weight, upscale)
