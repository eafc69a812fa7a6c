"""A network of any architecture spandrel knows, as a srframe :class:`~srframe.interfaces.Generator`."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from srframe.interfaces import Generator


@dataclass(frozen=True)
class Capabilities:
    """What spandrel's model descriptor says of a network: its scale, channels, the input sizes it takes
    and the precisions it runs in (``spandrel.ModelDescriptor``'s fields of the same names)."""

    architecture: str  # spandrel's architecture id, e.g. "ESRGAN"
    scale: int
    in_channels: int
    out_channels: int
    minimum: int = 0  # input height and width at least this many pixels
    multiple_of: int = 1  # input height and width a multiple of this
    square: bool = False  # input must be square
    supports_half: bool = True
    supports_bfloat16: bool = True
    tiling: str = "SUPPORTED"  # spandrel.ModelTiling: SUPPORTED, DISCOURAGED or INTERNAL

    @classmethod
    def of(cls, descriptor) -> Capabilities:
        """From a ``spandrel.ImageModelDescriptor``."""
        size = descriptor.size_requirements
        return cls(str(descriptor.architecture.id), descriptor.scale, descriptor.input_channels,
                   descriptor.output_channels, size.minimum, size.multiple_of, size.square,
                   descriptor.supports_half, descriptor.supports_bfloat16, descriptor.tiling.name)

    def padding(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) to add below and to the right so that the input meets the size rules.

        Written with ``torch.sym_max`` and modulo rather than branches, so that an exported program
        (``torch.export``, ONNX) pads every input size right, not only the size it was traced at.
        """
        rows = torch.sym_max(self.minimum - height, 0)
        columns = torch.sym_max(self.minimum - width, 0)
        rows = rows + (-(height + rows)) % self.multiple_of
        columns = columns + (-(width + columns)) % self.multiple_of
        if self.square:
            side = torch.sym_max(height + rows, width + columns)
            rows, columns = side - height, side - width
        return rows, columns


class SpandrelGenerator(Generator):
    """Runs a spandrel architecture's network as a srframe generator.

    ``forward(lr)``: (N, in_channels, h, w) float in [0, 1] -> (N, out_channels, h * scale,
    w * scale), not clamped (losses see the raw output; inference clamps). An input that breaks the
    network's size rules (a minimum, a multiple of its window or unshuffle factor) is padded at the
    bottom and right, reflecting as spandrel does (replicating what reflection cannot reach), and
    the padding is cut from the output, so any input size and any tile works. Unlike spandrel's
    descriptor call, it runs under autograd, so it trains.

    ``net`` is the architecture's module (its parameters are this generator's, under ``net.``);
    ``call`` runs it when the architecture needs more than ``net(lr)`` (spandrel's ``call_fn``).
    ``precisions`` follows spandrel's ``supports_half`` and ``supports_bfloat16``. Convolutions that
    an architecture re-parameterises (SPAN's ``Conv3XC``: trained as 1x1 + 3x3 + 1x1 branches, run
    as one ``eval_conv`` recomputed from them) keep their ``eval_conv`` out of training.
    """

    def __init__(self, net: nn.Module, capabilities: Capabilities,
                 call: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.net = net
        _freeze_reparameterised(net)
        self.capabilities = capabilities
        self.call = call
        self.scale = capabilities.scale
        self.in_channels, self.out_channels = capabilities.in_channels, capabilities.out_channels
        self.precisions = ("fp32", *(("bf16",) if capabilities.supports_bfloat16 else ()),
                           *(("fp16",) if capabilities.supports_half else ()))
        self._any_size = (capabilities.minimum <= 1 and capabilities.multiple_of == 1 and not capabilities.square)

    @property
    def architecture(self) -> str:
        return self.capabilities.architecture

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if self._any_size:
            return self._run(lr)
        height, width = lr.shape[-2:]
        rows, columns = self.capabilities.padding(height, width)
        # reflect as far as reflection reaches (size - 1), replicate the rest, as spandrel pads
        reflect_rows, reflect_columns = torch.sym_min(rows, height - 1), torch.sym_min(columns, width - 1)
        padded = F.pad(lr, (0, reflect_columns, 0, reflect_rows), mode="reflect")
        padded = F.pad(padded, (0, columns - reflect_columns, 0, rows - reflect_rows), mode="replicate")
        return self._run(padded)[..., :height * self.scale, :width * self.scale]

    def prepare_for_export(self) -> None:
        """Fold the re-parameterised convolutions (SPAN's ``Conv3XC``), which rebuild ``eval_conv`` from
        their branches at every eval call by assigning ``.data`` (untraceable), into their ``eval_conv``
        once: the eval forward spandrel runs, without the rebuild. Only for a copy that stops training."""
        for module in self.net.modules():
            if _reparameterised(module) and hasattr(module, "has_relu"):
                with torch.no_grad():
                    module.update_params()
                module.forward = types.MethodType(_folded_forward, module)

    def _run(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr) if self.call is None else self.call(self.net, lr)

    def extra_repr(self) -> str:
        return f"architecture={self.architecture}, scale={self.scale}"


def _reparameterised(module: nn.Module) -> bool:
    """A block trained as branches and run as one ``eval_conv`` rebuilt by ``update_params`` (SPAN's ``Conv3XC``)."""
    return callable(getattr(module, "update_params", None)) and isinstance(getattr(module, "eval_conv", None),
                                                                          nn.Module)


def _freeze_reparameterised(net: nn.Module) -> None:
    """``eval_conv`` of a re-parameterised block is computed from the trained branches, never trained
    itself: no gradient reaches it, so it is not a parameter to fit."""
    for module in net.modules():
        if _reparameterised(module):
            module.eval_conv.requires_grad_(False)


def _folded_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """spandrel's ``Conv3XC.forward`` in eval mode after ``update_params()``: the merged convolution, then
    LeakyReLU(0.05) where the block has one."""
    out = self.eval_conv(x)
    return F.leaky_relu(out, negative_slope=0.05) if self.has_relu else out
