"""A generator as a ``torch.export`` program of plain ATen ops, with dynamic batch, height and width.

Both file formats start here: the ``.pt2`` file is this program saved, the ONNX file is this
program translated by ``torch.onnx``.

srframe's fused ops (``srframe::pixel_shuffle_prelu`` in SRResNet's upsampler, ``srframe::bias_prelu``)
are custom ops registered with ``torch.library``. Under ``torch.export`` they are traced as the
registered op whatever :func:`srframe.ops.use_mode` says (the mode only chooses the kernel that runs
inside the op), so the traced graph holds an op that ``torch.onnx`` has no translation for and that
a ``.pt2`` loader could run only with srframe imported. :data:`DECOMPOSITIONS` rewrites each into the
ATen ops of its reference (``pixel_shuffle`` then ``prelu``; ``add`` then ``prelu``), which both
exporters know, so neither file needs srframe to run.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import AXES, INPUT, ExportError, describe, exporter_output, reason

logger = logging.getLogger(__name__)

# (H, W) of the example input, tried in turn: H != W, or export would tie the two axes together. Odd first:
# a model that pads its input to a multiple (of a window, an unshuffle factor) only when needed exports
# its padding branch, which is right for every size (a padding of 0 included); a model that takes
# only multiples cannot trace odd sizes, and gets the second.
TRACE_SIZES = ((61, 79), (64, 80))


def _pixel_shuffle_prelu(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
    return F.prelu(F.pixel_shuffle(x, upscale), weight.to(x.dtype))


def _bias_prelu(y: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.prelu(y + bias.to(y.dtype).view(1, -1, 1, 1), weight.to(y.dtype))


def decompositions() -> dict[torch._ops.OpOverload, Callable[..., torch.Tensor]]:
    """srframe's custom ops -> plain torch functions computing the same (their references, traceable)."""
    from .. import ops  # noqa: F401  registers the ops

    return {torch.ops.srframe.pixel_shuffle_prelu.default: _pixel_shuffle_prelu,
            torch.ops.srframe.bias_prelu.default: _bias_prelu}


class Entry(nn.Module):
    """The generator behind a ``forward(lr)``, so every exported file names its input ``lr``
    (spandrel's architectures call it ``x``). Its parameters are the generator's, under ``generator.``."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.generator(lr)


@dataclass(frozen=True)
class Traced:
    program: torch.export.ExportedProgram
    input_shape: tuple[int | str, ...]  # dynamic axes by name: ("batch", 3, "height", "width")
    output_shape: tuple[int | str, ...]  # in the input's names: ("batch", 3, "4*height", "4*width")


def trace(generator: nn.Module, dtype: torch.dtype = torch.float32, *, name: str | None = None) -> Traced:
    """``generator`` (a copy, on the CPU, in ``dtype``, in eval mode, its ``prepare_for_export()`` called
    when it has one) exported with ``torch.export``.

    The input (N, C, H, W) has dynamic H and W, and a dynamic N unless the model fixes it (then N is 1).
    srframe's custom ops are decomposed into ATen ops (see the module's docstring). ``name`` is how
    errors name the model (default: its registered name and class).

    Raises:
        ExportError: torch.export cannot trace the model (an op or data-dependent control flow it cannot
            capture), or the model fixes its height or width; the exporter's reason in one line.
    """
    what = name or describe(generator)
    channels = int(getattr(generator, "in_channels", 3))
    prepared = copy.deepcopy(generator).to("cpu", dtype).eval()
    if callable(getattr(prepared, "prepare_for_export", None)):  # srframe.Generator's hook (no-op by default)
        prepared.prepare_for_export()
    model = Entry(prepared)
    dynamic = torch.export.Dim.DYNAMIC
    attempts = [(size, batch, axes) for size in TRACE_SIZES  # a dynamic batch if the model allows it, else 1
                for batch, axes in ((2, {0: dynamic, 2: dynamic, 3: dynamic}), (1, {2: dynamic, 3: dynamic}))]
    failure: BaseException | None = None
    for (height, width), batch, axes in attempts:
        example = torch.zeros(batch, channels, height, width, dtype=dtype)
        try:
            with exporter_output(f"torch.export at {height}x{width}", logger):
                program = torch.export.export(model, (example,), dynamic_shapes={INPUT: axes})
                program = program.run_decompositions(decompositions())
        except Exception as exc:  # torch.export raises many kinds (UserError, GuardOnDataDependentSymNode, ...)
            logger.debug("torch.export of %s at %dx%d with dynamic axes %s failed", what, height, width, sorted(axes),
                          exc_info=True)
            failure = failure or exc  # the first reason: neither the dynamic batch nor the size is the usual one
            continue
        return Traced(program, *shapes(program))
    assert failure is not None
    raise ExportError(f"{what} cannot be exported with torch.export (dynamic height and width): "
                      f"{reason(failure)}") from failure


def shapes(program: torch.export.ExportedProgram) -> tuple[tuple[int | str, ...], tuple[int | str, ...]]:
    """The shapes of the program's input ``lr`` and its output: dynamic axes named as in :data:`AXES`
    (``"batch"``, ``"height"``), the output's as expressions of them (``"4*height"``), static ones as ints."""
    node = next(node for node in program.graph.nodes if node.op == "placeholder" and node.name == INPUT)
    names: dict[str, str] = {}
    lr: list[int | str] = []
    for i, size in enumerate(node.meta["val"].shape):
        if isinstance(size, torch.SymInt):
            names[str(size.node.expr)] = AXES[i]
            lr.append(AXES[i])
        else:
            lr.append(int(size))
    pattern = re.compile("|".join(rf"\b{re.escape(symbol)}\b" for symbol in names) or "(?!)")
    out = program.graph.output_node().args[0][0].meta["val"]
    sr = [pattern.sub(lambda m: names[m.group(0)], str(size.node.expr)).replace(" ", "")
          if isinstance(size, torch.SymInt) else int(size) for size in out.shape]
    return tuple(lr), tuple(sr)
