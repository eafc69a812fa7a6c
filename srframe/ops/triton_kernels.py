"""Triton kernels for sub-pixel shuffle + PReLU (forward, backward) and the bias + PReLU epilogue.

Loaded on first use, never at ``import srframe.ops``. With ``TRITON_INTERPRET=1`` in the
environment when this module loads, the kernels run on CPU tensors through Triton's interpreter.

The general kernels walk a 2-D tile of the *output* in its memory order, so stores are coalesced:
contiguous NCHW output as rows (n, c, oh) x columns ow, channels_last output as rows
(n, oh, ow) x columns c; loads gather. Row and column index terms are computed once per row or
column and added, so each element costs one address add. Upscale 2 into NCHW output (SRResNet's
case) takes the paired kernels instead: both sub-pixel planes of an output line are loaded with
wide contiguous loads and interleaved in registers. All arithmetic is in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

_TILE = 2048  # elements per program; with 8 warps the fastest in the H200 sweep (docs/performance.md)
_NUM_WARPS = 8


@triton.jit
def _tile_offsets(pid_m, pid_n, N, C, H, W,
                  sin_n, sin_c, sin_h, sin_w, sout_n, sout_c, sout_h, sout_w,
                  R: tl.constexpr, CL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Offsets into the (N, C*R*R, H, W) input and the (N, C, H*R, W*R) output, the channels of the
    columns (CL) or rows, the mask."""
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
        chan = k
        mask = (n < N)[:, None] & (k < C)[None, :]
    else:  # rows are output lines (n, c, oh), columns are output columns ow
        oh = m % OH
        t = m // OH
        c = t % C
        n = t // C
        in_row = n * sin_n + (c * (R * R) + (oh % R) * R) * sin_c + (oh // R) * sin_h
        if R == 1:  # spelt out, so the compiler sees contiguous columns
            in_col = k * sin_w
        else:
            in_col = (k % R) * sin_c + (k // R) * sin_w
        out_row = n * sout_n + c * sout_c + oh * sout_h
        out_col = k * sout_w
        chan = c
        mask = (n < N)[:, None] & (k < OW)[None, :]
    return in_row[:, None] + in_col[None, :], out_row[:, None] + out_col[None, :], chan, mask


@triton.jit
def _per_channel(ptr, chan, stride, C, CL: tl.constexpr):
    """Per-channel values as float32, shaped to broadcast over the tile's columns (CL) or rows."""
    values = tl.load(ptr + chan * stride, mask=chan < C, other=0.0).to(tl.float32)
    if CL:
        shaped = values[None, :]
    else:
        shaped = values[:, None]
    return shaped


@triton.jit
def _shuffle_prelu_fwd(x_ptr, w_ptr, b_ptr, out_ptr, N, C, H, W,
                       sx_n, sx_c, sx_h, sx_w, so_n, so_c, so_h, so_w, w_stride,
                       R: tl.constexpr, CL: tl.constexpr, HAS_BIAS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    x_off, o_off, chan, mask = _tile_offsets(tl.program_id(0), tl.program_id(1), N, C, H, W,
                                             sx_n, sx_c, sx_h, sx_w, so_n, so_c, so_h, so_w,
                                             R, CL, BLOCK_M, BLOCK_N)
    v = tl.load(x_ptr + x_off, mask=mask, other=0.0)
    if HAS_BIAS:  # round the sum to the input dtype, as conv-with-bias followed by PReLU would
        v = (v.to(tl.float32) + _per_channel(b_ptr, chan, 1, C, CL)).to(v.dtype)
    v = v.to(tl.float32)
    w = _per_channel(w_ptr, chan, w_stride, C, CL)
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
    w = _per_channel(w_ptr, chan, w_stride, C, CL)
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


@triton.jit
def _pairs_rows(pid_m, pid_n, N, C, H, W, sin_n, sin_c, sin_h, sout_n, sout_c, sout_h,
                BLOCK_M: tl.constexpr, BLOCK_W: tl.constexpr):
    """Upscale 2, NCHW order: row offsets of the even-column input plane and the output, input and
    output columns, masks. Row (n, c, oh) reads planes 4c + 2 (oh % 2) + {0, 1} at row oh // 2."""
    m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    oh = m % (2 * H)
    t = m // (2 * H)
    c = t % C
    n = t // C
    in_row = n * sin_n + (c * 4 + (oh % 2) * 2) * sin_c + (oh // 2) * sin_h
    out_row = n * sout_n + c * sout_c + oh * sout_h
    iw = pid_n * BLOCK_W + tl.arange(0, BLOCK_W)
    ow = pid_n * 2 * BLOCK_W + tl.arange(0, 2 * BLOCK_W)
    row_ok = (n < N)[:, None]
    return m, c, in_row, out_row, iw, ow, row_ok & (iw < W)[None, :], row_ok & (ow < 2 * W)[None, :]


@triton.jit
def _pairs_fwd(x_ptr, w_ptr, out_ptr, N, C, H, W, sx_n, sx_c, sx_h, sx_w, so_n, so_c, so_h, so_w, w_stride,
               BLOCK_M: tl.constexpr, BLOCK_W: tl.constexpr):
    """Upscale 2 on NCHW output: contiguous loads of both sub-pixel planes, interleaved in registers."""
    _, c, in_row, out_row, iw, ow, in_mask, out_mask = _pairs_rows(
        tl.program_id(0), tl.program_id(1), N, C, H, W, sx_n, sx_c, sx_h, so_n, so_c, so_h, BLOCK_M, BLOCK_W)
    w = tl.load(w_ptr + c * w_stride).to(tl.float32)[:, None]
    even_ptr = x_ptr + in_row[:, None] + iw[None, :] * sx_w
    even = tl.load(even_ptr, mask=in_mask, other=0.0).to(tl.float32)
    odd = tl.load(even_ptr + sx_c, mask=in_mask, other=0.0).to(tl.float32)
    y = tl.interleave(tl.where(even > 0, even, even * w), tl.where(odd > 0, odd, odd * w))
    tl.store(out_ptr + out_row[:, None] + ow[None, :] * so_w, y.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _pairs_bwd(g_ptr, x_ptr, w_ptr, gx_ptr, part_ptr, N, C, H, W,
               sx_n, sx_c, sx_h, sx_w, sg_n, sg_c, sg_h, sg_w, sgx_n, sgx_c, sgx_h, sgx_w, w_stride,
               BLOCK_M: tl.constexpr, BLOCK_W: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    m, c, x_row, g_row, iw, ow, in_mask, out_mask = _pairs_rows(
        pid_m, pid_n, N, C, H, W, sx_n, sx_c, sx_h, sg_n, sg_c, sg_h, BLOCK_M, BLOCK_W)
    _, _, gx_row, _, _, _, _, _ = _pairs_rows(
        pid_m, pid_n, N, C, H, W, sgx_n, sgx_c, sgx_h, sg_n, sg_c, sg_h, BLOCK_M, BLOCK_W)
    w = tl.load(w_ptr + c * w_stride).to(tl.float32)[:, None]
    g = tl.load(g_ptr + g_row[:, None] + ow[None, :] * sg_w, mask=out_mask, other=0.0).to(tl.float32)
    g_even, g_odd = tl.split(tl.reshape(g, [BLOCK_M, BLOCK_W, 2]))
    x_even_ptr = x_ptr + x_row[:, None] + iw[None, :] * sx_w
    x_even = tl.load(x_even_ptr, mask=in_mask, other=0.0).to(tl.float32)
    x_odd = tl.load(x_even_ptr + sx_c, mask=in_mask, other=0.0).to(tl.float32)
    gx_even_ptr = gx_ptr + gx_row[:, None] + iw[None, :] * sgx_w
    dtype = gx_ptr.dtype.element_ty
    tl.store(gx_even_ptr, tl.where(x_even > 0, g_even, g_even * w).to(dtype), mask=in_mask)
    tl.store(gx_even_ptr + sgx_c, tl.where(x_odd > 0, g_odd, g_odd * w).to(dtype), mask=in_mask)
    slope_grad = tl.where(x_even > 0, 0.0, g_even * x_even) + tl.where(x_odd > 0, 0.0, g_odd * x_odd)
    rows = N * C * H * 2
    tl.store(part_ptr + pid_n.to(tl.int64) * rows + m, tl.sum(slope_grad, axis=1), mask=m < rows)


INTERPRETED: bool = isinstance(_shuffle_prelu_fwd, InterpretedFunction)
"""Whether the kernels run through Triton's interpreter (``TRITON_INTERPRET=1`` when this module loaded)."""


_PAIRS = True  # upscale 2 on NCHW output takes the paired kernels


def _column_block(columns: int) -> int:
    """The power-of-two column block (8 to 128) that wastes the fewest masked lanes, largest on ties."""
    return min((128, 64, 32, 16, 8), key=lambda b: (triton.cdiv(columns, b) * b - columns, -b))


@dataclass(frozen=True)
class _Plan:
    """How to walk an output-shaped tensor: which kernels, its rows, the grid and the blocks."""

    pairs: bool
    channels_last: bool
    rows: int
    grid: tuple[int, int]
    block_m: int
    block_n: int


def _plan(out: torch.Tensor, upscale: int, pairs_allowed: bool = True) -> _Plan:
    n, channels, oh, ow = out.shape
    channels_last = out.stride(1) == 1 and not out.is_contiguous()
    pairs = _PAIRS and pairs_allowed and upscale == 2 and not channels_last
    if channels_last:
        rows, columns = n * oh * ow, channels
    else:
        rows, columns = n * channels * oh, ow // 2 if pairs else ow
    block_n = _column_block(columns)
    block_m = max(1, _TILE // (block_n * (2 if pairs else 1)))
    grid = (triton.cdiv(rows, block_m), triton.cdiv(columns, block_n))
    return _Plan(pairs, channels_last, rows, grid, block_m, block_n)


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
    plan = _plan(out, upscale, pairs_allowed=bias is None)
    if plan.pairs:
        _pairs_fwd[plan.grid](x, slopes, out, n, channels, h, w, *x.stride(), *out.stride(), w_stride,
                              BLOCK_M=plan.block_m, BLOCK_W=plan.block_n, num_warps=_NUM_WARPS)
        return out
    has_bias = bias is not None
    bias = bias.to(x.dtype).contiguous() if has_bias else slopes  # the kernel never reads it then
    _shuffle_prelu_fwd[plan.grid](x, slopes, bias, out, n, channels, h, w, *x.stride(), *out.stride(), w_stride,
                                  R=upscale, CL=plan.channels_last, HAS_BIAS=has_bias,
                                  BLOCK_M=plan.block_m, BLOCK_N=plan.block_n, num_warps=_NUM_WARPS)
    return out


def shuffle_prelu_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, upscale: int,
                           grad_x: torch.Tensor) -> torch.Tensor:
    """Write the input gradient into ``grad_x`` (any strides); return the slope gradient in ``weight``'s dtype."""
    n, _, h, w = x.shape
    channels = grad.shape[1]
    if grad.numel() == 0:
        return torch.zeros_like(weight)
    slopes, w_stride = _weight(weight, x)
    plan = _plan(grad, upscale)  # grad is read in output order
    grid = plan.grid
    partials = torch.empty((grid[0] * channels,) if plan.channels_last else (grid[1] * plan.rows,),
                           dtype=torch.float32, device=x.device)
    strides = (*x.stride(), *grad.stride(), *grad_x.stride(), w_stride)
    if plan.pairs:
        _pairs_bwd[grid](grad, x, slopes, grad_x, partials, n, channels, h, w, *strides,
                         BLOCK_M=plan.block_m, BLOCK_W=plan.block_n, num_warps=_NUM_WARPS)
    else:
        _shuffle_prelu_bwd[grid](grad, x, slopes, grad_x, partials, n, channels, h, w, *strides,
                                 R=upscale, CL=plan.channels_last, BLOCK_M=plan.block_m, BLOCK_N=plan.block_n,
                                 num_warps=_NUM_WARPS)
    if weight.numel() == 1:
        total = partials.sum()
    elif plan.channels_last:
        total = partials.view(grid[0], channels).sum(0)
    else:
        total = partials.view(grid[1], n, channels, plan.rows // (n * channels)).sum((0, 1, 3))
    return total.to(weight.dtype).reshape(weight.shape)
