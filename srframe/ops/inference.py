"""Inference rewrites for any generator: fold batch norm, fuse epilogues, channels_last.

The rules walk every ``nn.Sequential`` of a model and rewrite neighbouring children
(``nn.Identity`` children, left where a module was folded away, are skipped over):

- ConvNd, then BatchNormNd with running statistics: the BN is folded into the conv's weight and bias;
- Conv2d with a bias, then PReLU: :class:`ConvPReLU` (on CUDA: conv without bias + one bias/PReLU pass;
  on the CPU one slope is applied in place);
- PixelShuffle, then PReLU: :class:`PixelShufflePReLU`, the fused ``srframe.ops.pixel_shuffle_prelu``.

Modules outside an ``nn.Sequential`` keep working unchanged; they are just not rewritten. Wherever
they sit, wide (out >= 2 x in channels) or large-kernel (>= 5) Conv2d with 16 or more input channels
become :class:`NNPACKConv2d` when this torch has NNPACK: on the CPU, in float32, they run there.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .epilogue import bias_prelu
from .subpixel import pixel_shuffle_prelu

_OPTIMIZED = "_srframe_optimized_for_inference"
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class ConvPReLU(nn.Module):
    """A Conv2d followed by PReLU; on CUDA the bias and PReLU run as one fused epilogue, on the CPU
    a single slope is applied in place."""

    def __init__(self, conv: nn.Conv2d, prelu: nn.PReLU):
        super().__init__()
        self.conv, self.prelu = conv, prelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            return bias_prelu(self.conv._conv_forward(x, self.conv.weight, None), self.conv.bias, self.prelu.weight)
        if x.device.type == "cpu" and self.prelu.weight.numel() == 1 and not torch.compiler.is_compiling():
            # in place on the fresh conv output (float() of the slope would break a compiled graph)
            return F.leaky_relu_(self.conv(x), float(self.prelu.weight.to(x.dtype)))
        return self.prelu(self.conv(x))


class NNPACKConv2d(nn.Module):
    """A Conv2d that runs through NNPACK on the CPU (FFT for large kernels, Winograd for 3x3), where
    that pays: wide or large-kernel convolutions. Output in NCHW; elsewhere it is the plain conv.

    A large input runs in strips of output rows (each with the rows its kernel reaches), so that
    NNPACK's transform workspace, which torch keeps per thread for the life of the process, stays
    the size of a strip rather than of the image (SRResNet x4's 9x9 tail on a 1280x1280 tile:
    about 1.1 GiB whole). The result equals the whole-image convolution to float rounding.
    """

    STRIP_ELEMENTS = 1 << 22  # input values per strip (16 MiB of float32)

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    # Code that reads a convolution's tensors keeps working on the rewritten model (SPAN, as spandrel
    # runs it, rebuilds its re-parameterised convolutions from its branches' weights at every call).
    @property
    def weight(self) -> nn.Parameter:
        return self.conv.weight

    @property
    def bias(self) -> nn.Parameter | None:
        return self.conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if (x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled() and x.requires_grad
                or torch.compiler.is_compiling()):  # NNPACK has no fake-tensor kernel: compiled code takes the conv
            return conv(x)
        x, weight = x.contiguous(), conv.weight.contiguous()
        (pad_h, pad_w), kernel_h = conv.padding, conv.kernel_size[0]
        out_h = x.shape[2] + 2 * pad_h - kernel_h + 1
        rows = max(8, self.STRIP_ELEMENTS // max(1, x.shape[0] * x.shape[1] * x.shape[3]))
        if rows >= out_h:
            return torch._nnpack_spatial_convolution(x, weight, conv.bias, [pad_h, pad_w], [1, 1])
        strips = []
        for first in range(0, out_h, rows):
            last = min(out_h, first + rows)  # output rows [first, last) read padded rows [first, last + k - 1)
            top, bottom = first - pad_h, last - pad_h + kernel_h - 1
            part = x[:, :, max(0, top):min(x.shape[2], bottom)]
            part = F.pad(part, (0, 0, max(0, -top), max(0, bottom - x.shape[2])))
            strips.append(torch._nnpack_spatial_convolution(part.contiguous(), weight, conv.bias, [0, pad_w], [1, 1]))
        return torch.cat(strips, dim=2)


class PixelShufflePReLU(nn.Module):
    """A PixelShuffle followed by PReLU, as the one fused op."""

    def __init__(self, upscale: int, prelu: nn.PReLU):
        super().__init__()
        self.upscale, self.prelu = upscale, prelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_prelu(x, self.prelu.weight, self.upscale)


def _neighbours(model: nn.Module) -> Iterator[tuple[nn.Sequential, str, nn.Module, str, nn.Module]]:
    """(sequential, name_a, a, name_b, b) for each pair of neighbouring non-Identity children."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        children = [(name, child) for name, child in seq.named_children() if not isinstance(child, nn.Identity)]
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            yield seq, name_a, a, name_b, b


def _rewrite(model: nn.Module, rule) -> int:
    """Apply ``rule(a, b) -> module | None`` to neighbours; a match replaces a and turns b into Identity."""
    count = 0
    changed = True
    while changed:  # a rewrite changes the children list, so walk again until nothing matches
        changed = False
        for seq, name_a, a, name_b, b in _neighbours(model):
            fused = rule(a, b)
            if fused is not None:
                setattr(seq, name_a, fused)
                setattr(seq, name_b, nn.Identity())
                count += 1
                changed = True
                break
    return count


def _fold_rule(a: nn.Module, b: nn.Module) -> nn.Module | None:
    if not (isinstance(a, _CONVS) and isinstance(b, nn.modules.batchnorm._BatchNorm)):
        return None
    if b.running_mean is None or a.out_channels != b.num_features:
        return None  # no running statistics to fold, or not this conv's channels
    return fuse_conv_bn_eval(a.eval(), b.eval(), transpose=isinstance(a, _TRANSPOSED))


def _epilogue_rule(a: nn.Module, b: nn.Module) -> nn.Module | None:
    if not isinstance(b, nn.PReLU):
        return None
    if type(a) is nn.Conv2d and a.bias is not None and b.num_parameters in (1, a.out_channels):
        return ConvPReLU(a, b)
    if isinstance(a, nn.PixelShuffle):
        return PixelShufflePReLU(a.upscale_factor, b)
    return None


def _nnpack_pays(conv: nn.Module) -> bool:
    """NNPACK beats oneDNN on the CPU for wide or large-kernel convolutions with enough input channels
    (SRResNet x4 on a 2-core AVX-512 CPU: 9x9 64->3 4.5x, 3x3 64->256 1.9x; 3x3 64->64 on a par)."""
    return (type(conv) is nn.Conv2d and conv.groups == 1 and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple) and conv.in_channels >= 16
            and (min(conv.kernel_size) >= 5 or conv.out_channels >= 2 * conv.in_channels))


def _use_nnpack(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _nnpack_pays(child):
                setattr(parent, name, NNPACKConv2d(child))


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that follows a conv into that conv, for inference.

    Returns a copy in eval mode (the model itself, rewritten, with ``inplace=True``); each folded
    BN becomes ``nn.Identity``. Its outputs match the model's in eval mode to float rounding.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    _rewrite(model, _fold_rule)
    return model


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4
                 else a for a in args)


def _to_contiguous(module: nn.Module, args: tuple, output):
    return output.contiguous() if isinstance(output, torch.Tensor) else output


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True, nnpack: bool = True) -> nn.Module:
    """An inference copy of ``model``: eval mode, no gradients, BN folded, fused epilogues, channels_last.

    The caller's model is left untouched. The copy takes and returns the same tensors (inputs
    are moved to channels_last inside, outputs come back contiguous) and gives the same outputs
    to float rounding. Calling this on an optimised model returns it as it is.
    ``channels_last=False`` keeps NCHW (on CUDA in float32, channels_last did not pay; docs/performance.md).
    """
    if getattr(model, _OPTIMIZED, False):
        return model
    model = fold_batchnorm(model)
    model.requires_grad_(False)
    _rewrite(model, _epilogue_rule)
    if nnpack and torch._nnpack_available():
        _use_nnpack(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        model.register_forward_pre_hook(_to_channels_last)
    model.register_forward_hook(_to_contiguous)
    setattr(model, _OPTIMIZED, True)
    return model
