"""Triton kernels for sub-pixel shuffle + PReLU (forward, backward) and the bias + PReLU epilogue.

Loaded on first use, never at ``import srframe.ops``. With ``TRITON_INTERPRET=1`` in the
environment when this module loads, the kernels run on CPU tensors through Triton's interpreter.

Every kernel walks a 2-D tile of the *output* in its memory order, so stores are coalesced:
contiguous NCHW output as rows (n, c, oh) x columns ow, channels_last output as rows
(n, oh, ow) x columns c. Row and column index terms are computed once per row or column
and added, so each element costs one address add; all arithmetic is in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

_TILE = 4096  # elements per program
_NUM_WARPS = 4


@triton.jit
def _tile_offsets(pid_m, pid_n, N, C, H, W,
                  sin_n, sin_c, sin_h, sin_w, sout_n, sout_c, sout_h, sout_w,
                  R: tl.constexpr, CL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Offsets into the (N, C*R*R, H, W) input and the (N, C, H*R, W*R) output, the channel, the mask."""
    OH = H * R
    OW = W * R
    m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    k = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    if CL:  # rows are output pixels (n, oh, ow), columns are channels
        ow = m % OW
        t = m // OW
        oh = t % OH
        n = t // OH
        sub = (oh % R) * R + ow % R
        in_row = n * sin_n + (oh // R) * sin_h + (ow // R) * sin_w + sub * sin_c
        in_col = k * (R * R) * sin_c
        out_row = n * sout_n + oh * sout_h + ow * sout_w
        out_col = k * sout_c
        chan = k[None, :]
        mask = (n < N)[:, None] & (k < C)[None, :]
    else:  # rows are output lines (n, c, oh), columns are output columns ow
        oh = m % OH
        t = m // OH
        c = t % C
        n = t // C
        in_row = n * sin_n + (c * (R * R) + (oh % R) * R) * sin_c + (oh // R) * sin_h
        in_col = (k % R) * sin_c + (k // R) * sin_w
        out_row = n * sout_n + c * sout_c + oh * sout_h
        out_col = k * sout_w
        chan = c[:, None]
        mask = (n < N)[:, None] & (k < OW)[None, :]
    return in_row[:, None] + in_col[None, :], out_row[:, None] + out_col[None, :], chan, mask


@triton.jit
def _shuffle_prelu_fwd(x_ptr, w_ptr, b_ptr, out_ptr, N, C, H, W,
                       sx_n, sx_c, sx_h, sx_w, so_n, so_c, so_h, so_w, w_stride,
                       R: tl.constexpr, CL: tl.constexpr, HAS_BIAS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    x_off, o_off, chan, mask = _tile_offsets(tl.program_id(0), tl.program_id(1), N, C, H, W,
                                             sx_n, sx_c, sx_h, sx_w, so_n, so_c, so_h, so_w,
                                             R, CL, BLOCK_M, BLOCK_N)
    v = tl.load(x_ptr + x_off, mask=mask, other=0.0)
    has_chan = chan < C
    if HAS_BIAS:  # round the sum to the input dtype, as conv-with-bias followed by PReLU would
        v = (v.to(tl.float32) + tl.load(b_ptr + chan, mask=has_chan, other=0.0).to(tl.float32)).to(v.dtype)
    v = v.to(tl.float32)
    w = tl.load(w_ptr + chan * w_stride, mask=has_chan, other=0.0).to(tl.float32)
    tl.store(out_ptr + o_off, tl.where(v > 0, v, v * w).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _shuffle_prelu_bwd(g_ptr, x_ptr, w_ptr, gx_ptr, part_ptr, N, C, H, W,
                       sx_n, sx_c, sx_h, sx_w, sg_n, sg_c, sg_h, sg_w, sgx_n, sgx_c, sgx_h, sgx_w, w_stride,
                       R: tl.constexpr, CL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    x_off, g_off, chan, mask = _tile_offsets(pid_m, pid_n, N, C, H, W, sx_n, sx_c, sx_h, sx_w,
                                             sg_n, sg_c, sg_h, sg_w, R, CL, BLOCK_M, BLOCK_N)
    gx_off, _, _, _ = _tile_offsets(pid_m, pid_n, N, C, H, W, sgx_n, sgx_c, sgx_h, sgx_w,
                                    sg_n, sg_c, sg_h, sg_w, R, CL, BLOCK_M, BLOCK_N)
    x = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + g_off, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + chan * w_stride, mask=chan < C, other=0.0).to(tl.float32)
    positive = x > 0
    tl.store(gx_ptr + gx_off, tl.where(positive, g, g * w).to(gx_ptr.dtype.element_ty), mask=mask)
    slope_grad = tl.where(positive, 0.0, g * x)  # masked lanes hold x = g = 0
    if CL:  # columns are channels: one partial sum per channel and row block
        k = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        tl.store(part_ptr + pid_m.to(tl.int64) * C + k, tl.sum(slope_grad, axis=0), mask=k < C)
    else:  # each row holds one channel: one partial sum per row and column block
        m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rows = N * C * H * R
        tl.store(part_ptr + pid_n.to(tl.int64) * rows + m, tl.sum(slope_grad, axis=1), mask=m < rows)


INTERPRETED: bool = isinstance(_shuffle_prelu_fwd, InterpretedFunction)
"""Whether the kernels run through Triton's interpreter (``TRITON_INTERPRET=1`` when this module loaded)."""


def _column_block(columns: int) -> int:
    """The power-of-two column block (8 to 128) that wastes the fewest masked lanes, largest on ties."""
    return min((128, 64, 32, 16, 8), key=lambda b: (triton.cdiv(columns, b) * b - columns, -b))


def _layout(out: torch.Tensor, channels: int, out_width: int) -> tuple[bool, int, int, int, int]:
    """Iteration order and blocks for ``out``: (channels_last, rows, columns, BLOCK_M, BLOCK_N)."""
    n, _, oh, ow = out.shape
    channels_last = out.dim() == 4 and out.stride(1) == 1 and not out.is_contiguous()
    if channels_last:
        rows, columns = n * oh * ow, channels
    else:
        rows, columns = n * channels * oh, out_width
    block_n = _column_block(columns)
    return channels_last, rows, columns, max(1, _TILE // block_n), block_n


def _weight(weight: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The PReLU slopes in ``like``'s dtype, and their stride (0 broadcasts a single slope)."""
    weight = weight.to(like.dtype).contiguous().reshape(-1)
    return weight, int(weight.numel() > 1)


def shuffle_prelu(x: torch.Tensor, weight: torch.Tensor, upscale: int, out: torch.Tensor,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """Write ``prelu(pixel_shuffle(x + bias, upscale), weight)`` into ``out`` (any strides) and return it."""
    n, _, h, w = x.shape
    channels = out.shape[1]
    if out.numel() == 0:
        return out
    slopes, w_stride = _weight(weight, x)
    has_bias = bias is not None
    bias = bias.to(x.dtype).contiguous() if has_bias else slopes  # the kernel never reads it then
    channels_last, rows, columns, block_m, block_n = _layout(out, channels, out.shape[3])
    grid = (triton.cdiv(rows, block_m), triton.cdiv(columns, block_n))
    _shuffle_prelu_fwd[grid](x, slopes, bias, out, n, channels, h, w, *x.stride(), *out.stride(), w_stride,
                             R=upscale, CL=channels_last, HAS_BIAS=has_bias,
                             BLOCK_M=block_m, BLOCK_N=block_n, num_warps=_NUM_WARPS)
    return out


def shuffle_prelu_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, upscale: int,
                           grad_x: torch.Tensor) -> torch.Tensor:
    """Write the input gradient into ``grad_x`` (any strides); return the slope gradient in ``weight``'s dtype."""
    n, _, h, w = x.shape
    channels = grad.shape[1]
    if grad.numel() == 0:
        return torch.zeros_like(weight)
    slopes, w_stride = _weight(weight, x)
    # Blocks follow grad's order, the tensor read in output order.
    channels_last, rows, columns, block_m, block_n = _layout(grad, channels, grad.shape[3])
    grid = (triton.cdiv(rows, block_m), triton.cdiv(columns, block_n))
    partials = torch.empty((grid[0] * channels,) if channels_last else (grid[1] * rows,),
                           dtype=torch.float32, device=x.device)
    _shuffle_prelu_bwd[grid](grad, x, slopes, grad_x, partials, n, channels, h, w,
                             *x.stride(), *grad.stride(), *grad_x.stride(), w_stride,
                             R=upscale, CL=channels_last, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=_NUM_WARPS)
    if weight.numel() == 1:
        total = partials.sum()
    elif channels_last:
        total = partials.view(grid[0], channels).sum(0)
    else:
        total = partials.view(grid[1], n, channels, rows // (n * channels)).sum((0, 1, 3))
    return total.to(weight.dtype).reshape(weight.shape)
