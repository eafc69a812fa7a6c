"""A generator written as an ONNX file: ``torch.onnx`` (the dynamo exporter) over :func:`srframe.export.trace.trace`.

The file has one input ``lr`` (N, C, H, W) and one output ``sr`` (N, C_out, s*H, s*W), with the dynamic
axes named ``batch``, ``height`` and ``width`` (the output's ``4*height``...), in fp32 or fp16. Its
metadata (``onnxruntime``'s ``get_modelmeta().custom_metadata_map``) records the scale, the channels,
the model and the input's range.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from ..errors import ArgumentError
from .common import (CHECK_SIZES, INPUT, OUTPUT, ExportError, ExportReport, Precision, checked_sizes,
                     checked_tolerance, describe, exporter_output, precision_dtype, reason, require,
                     write_checked)

logger = logging.getLogger(__name__)

# torch.onnx's operator library is written for opset 18 and newer (23 is the newest torch 2.14 writes).
# Older opsets go through onnx's version converter, which reaches 16 and 17 (SRResNet, RRDBNet) but not 15
# (no adapter for Identity) and, failing, silently keeps opset 18: the opset written is checked.
MIN_OPSET, MAX_OPSET = 16, 23
NATIVE_OPSET = 18
DEFAULT_OPSET = 20  # torch.onnx's default (torch 2.5 to 2.14); onnxruntime runs it since 1.17


def check_opset(opset: int) -> int:
    """Raises ArgumentError when ``opset`` is outside MIN_OPSET..MAX_OPSET."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ArgumentError(f"--opset {opset} is not one torch.onnx writes: give {MIN_OPSET} to {MAX_OPSET} "
                            f"(default {DEFAULT_OPSET}; {MIN_OPSET} and 17 through onnx's version converter, for "
                            "older runtimes)")
    return opset


def export_onnx(generator: nn.Module, path: str | Path, *, opset: int = DEFAULT_OPSET, precision: Precision = "fp32",
                check: bool = True, sizes: Sequence[tuple[int, int]] = CHECK_SIZES, tolerance: float | None = None,
                name: str | None = None) -> ExportReport:
    """Write ``generator`` to ``path`` as ONNX (opset ``opset``, dynamic batch, height and width), and check it.

    ``precision="fp16"`` writes the weights and the input and output in float16. With ``check`` the file
    is run with onnxruntime's CPU provider on random inputs of each of ``sizes`` (LR height, width) and
    compared with ``generator`` run in fp32 by torch (:func:`srframe.export.check.check_onnx`): the max
    abs difference must be at most ``tolerance`` (default 1e-4 in fp32, 2e-2 in fp16). The file is written
    under a temporary name and renamed only once checked: a failed export or check leaves ``path`` as it was.
    ``name`` is how errors name the model (default: its registered name and class). ``generator`` itself
    is left as it is (a copy is exported).

    Returns:
        An :class:`ExportReport`: shapes with named dynamic axes, the max abs difference per size, the time.

    Raises:
        ArgumentError: an opset outside 16..23, an unknown precision, a bad check size or tolerance.
        ExportError: onnx/onnxscript (or, to check, onnxruntime) missing; torch.export cannot trace the model
            or torch.onnx cannot translate one of its ops (the exporter's reason, in one line), or convert the
            graph to an opset below 18; the check fails.
    """
    from .check import check_onnx
    from .trace import trace

    check_opset(opset)
    dtype = precision_dtype(precision, generator)
    tolerance = checked_tolerance(tolerance, precision)
    sizes = checked_sizes(sizes) if check else ()
    require("onnx", "onnxscript", purpose="writing ONNX files")
    if check:
        require("onnxruntime", purpose="checking the ONNX file (skip it with --no-check)")
    what = name or describe(generator)
    started = time.perf_counter()
    traced = trace(generator, dtype, name=what)
    onnx_program = _translate(traced.program, opset, what)
    written = onnx_program.model.opset_imports.get("", opset)
    if written != opset:
        raise ExportError(f"torch.onnx could not convert {what} to opset {opset} (onnx's version converter failed, "
                          f"the graph stayed at opset {written}): give --opset {NATIVE_OPSET} or newer, or "
                          "-v to see the converter's reason")
    _name_axes(onnx_program.model, traced.program)
    _record(onnx_program.model, generator, what, precision)
    path = Path(path)
    seconds, checks = write_checked(
        path, ".onnx", lambda partial: onnx_program.save(partial, external_data=False),
        f"cannot save {what} as one ONNX file {path}",
        (lambda partial: check_onnx(partial, generator, sizes=sizes, tolerance=tolerance, precision=precision,
                                    name=what, label=path)) if check else None, started)
    checked_with = None
    if check:
        import onnxruntime

        checked_with = f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"
    return ExportReport(path=path, format="onnx", precision=precision, input_shape=traced.input_shape,
                        output_shape=traced.output_shape, seconds=seconds, opset=opset, checks=checks,
                        tolerance=tolerance if check else None, checked_with=checked_with)


def _translate(program, opset: int, what: str):
    """The exported program translated to an ``torch.onnx.ONNXProgram``; raises ExportError with the reason."""
    import torch

    try:
        with exporter_output("torch.onnx", logger):
            return torch.onnx.export(program, (), dynamo=True, opset_version=opset, output_names=[OUTPUT],
                                     custom_translation_table=_translations(), optimize=True, verbose=False,
                                     report=False)
    except Exception as exc:  # torch.onnx wraps its failures in several types
        logger.debug("torch.onnx failed on %s", what, exc_info=True)
        raise ExportError(f"{what} cannot be translated to ONNX opset {opset} by torch.onnx: {reason(exc)}") from exc


def _translations() -> dict:
    """Translations that replace torch.onnx's own.

    ``//`` on sizes: onnxscript's translation of ``operator.floordiv`` (0.7) is ONNX ``Div``, which truncates,
    "for positive inputs" only; but ``-(-h // m) * m``, the usual round-up to a multiple that models pad
    their input to (spandrel's generators, SwinIR's windows), divides a negative size, and truncation makes
    it round down: a 29-pixel input came out 28 pixels tall. ``a - a mod b`` is a multiple of ``b`` (ONNX
    ``Mod`` on integers takes the divisor's sign, as Python's does), so ``Div`` is exact on it: floor division.
    """
    import operator

    from onnxscript import opset18 as op

    def floordiv(a, b):
        return op.Div(op.Sub(a, op.Mod(a, b)), b)

    return {operator.floordiv: floordiv}


def _name_axes(model, program) -> None:
    """Rename the dynamic axes torch.export calls ``s12`` to ``batch``, ``height``, ``width`` everywhere
    in the ONNX graph (the output's ``2*s12`` becomes ``2*height``)."""
    import onnx_ir as ir

    from .trace import shapes

    lr_shape = shapes(program)[0]
    graph_input = next(value for value in model.graph.inputs if value.name == INPUT)
    names = {str(dim.value): axis for dim, axis in zip(graph_input.shape, lr_shape)
             if isinstance(dim, ir.SymbolicDim) and isinstance(axis, str) and dim.value is not None}
    if not names:
        return
    pattern = re.compile("|".join(rf"\b{re.escape(symbol)}\b" for symbol in sorted(names, key=len, reverse=True)))
    values = [*model.graph.inputs, *model.graph.outputs,
              *(output for node in model.graph.all_nodes() for output in node.outputs)]
    for value in values:
        if value.shape is None:
            continue
        dims = [ir.SymbolicDim(pattern.sub(lambda m: names[m.group(0)], dim.value))
                if isinstance(dim, ir.SymbolicDim) and dim.value is not None else dim for dim in value.shape]
        value.shape = ir.Shape(dims)


def _record(model, generator: nn.Module, what: str, precision: str) -> None:
    """What a deployment needs to know, in the file's metadata."""
    import srframe

    model.producer_name, model.producer_version = "srframe", srframe.__version__
    model.doc_string = (f"{what}: input {INPUT!r} (N, C, H, W) {precision} in [0, 1] -> output {OUTPUT!r} "
                        f"(N, C, H * scale, W * scale), not clamped")
    model.metadata_props.update({
        "srframe.model": what,
        "srframe.scale": str(int(getattr(generator, "scale", 0)) or "unknown"),
        "srframe.in_channels": str(int(getattr(generator, "in_channels", 3))),
        "srframe.out_channels": str(int(getattr(generator, "out_channels", 3))),
        "srframe.input_range": "0..1",
        "srframe.precision": precision,
    })
