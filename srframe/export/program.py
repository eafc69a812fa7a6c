"""A generator written as a ``torch.export`` program (``.pt2``): :func:`srframe.export.trace.trace`, saved.

The program holds ATen ops only (srframe's custom ops decomposed), so ``torch.export.load`` runs it
without srframe installed: ``torch.export.load("model.pt2").module()(lr)``. Its input ``lr`` has
dynamic batch, height and width.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .common import (CHECK_SIZES, ExportReport, Precision, checked_sizes, checked_tolerance, describe, precision_dtype,
                     write_checked)


def export_program(generator: nn.Module, path: str | Path, *, precision: Precision = "fp32", check: bool = True,
                   sizes: Sequence[tuple[int, int]] = CHECK_SIZES, tolerance: float | None = None,
                   name: str | None = None) -> ExportReport:
    """Write ``generator`` to ``path`` as a ``torch.export`` program (``torch.export.save``), and check it.

    ``precision="fp16"`` exports the model in float16 (its input and output too). With ``check`` the
    file is loaded back with ``torch.export.load`` and run on random inputs of each of ``sizes`` (LR
    height, width) against ``generator`` run in fp32 (:func:`srframe.export.check.check_program`); the
    max abs difference must be at most ``tolerance`` (default 1e-4 in fp32, 2e-2 in fp16). Written
    under a temporary name, renamed once checked. ``name`` is how errors name the model.

    Returns:
        An :class:`ExportReport` (no opset).

    Raises:
        ArgumentError: an unknown precision, a bad check size or tolerance.
        ExportError: torch.export cannot trace the model (its reason in one line); the check fails.
    """
    from .check import check_program
    from .trace import trace

    dtype = precision_dtype(precision, generator)
    tolerance = checked_tolerance(tolerance, precision)
    sizes = checked_sizes(sizes) if check else ()
    started = time.perf_counter()
    what = name or describe(generator)
    traced = trace(generator, dtype, name=what)
    path = Path(path)
    seconds, checks = write_checked(
        path, ".pt2", lambda partial: torch.export.save(traced.program, str(partial)),
        f"torch.export.save cannot save {what} to {path}",
        (lambda partial: check_program(partial, generator, sizes=sizes, tolerance=tolerance, precision=precision,
                                       name=what, label=path)) if check else None, started)
    return ExportReport(path=path, format="pt2", precision=precision, input_shape=traced.input_shape,
                        output_shape=traced.output_shape, seconds=seconds, checks=checks,
                        tolerance=tolerance if check else None,
                        checked_with="torch.export.load" if check else None)
