"""What the export modules share: the error, the input and output names, precisions, reports, file writing.

Imports torch only; onnx, onnxscript and onnxruntime are imported by the function that needs them,
after :func:`require` has said, in one line, how to install what is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import ArgumentError, ExportError, SrframeError
from ..interfaces import describe

INPUT = "lr"  # (N, C, H, W) float in [0, 1]
OUTPUT = "sr"  # (N, C_out, H * scale, W * scale), not clamped
AXES = ("batch", "channels", "height", "width")  # the names of the input's axes; channels is never dynamic

Precision = Literal["fp32", "fp16"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16}
# The largest max abs difference from the torch model (run in fp32) an exported file may show.
# fp16: 2e-2 is about 20 fp16 steps at 1.0 (9.8e-4 each), five 8-bit levels: every layer's rounding
# accumulates, and the reference is the fp32 model, so the check catches a broken export, not fp16 rounding.
TOLERANCES: dict[str, float] = {"fp32": 1e-4, "fp16": 2e-2}
# Two LR sizes, H != W, unlike each other and the sizes traced: they prove the dynamic axes. One odd, one
# a multiple of 16, so that a model that branches on its input size (padding to a multiple of a window
# only when needed) is caught here, rather than by a deployment, if its export kept one branch only.
CHECK_SIZES: tuple[tuple[int, int], ...] = ((29, 43), (48, 32))
EXPORT_EXTRA = "pip install 'srframe[export]'"


@dataclass(frozen=True)
class SizeCheck:
    """The exported file against the torch model (fp32) on one random input ``shape`` (N, C, H, W)."""

    shape: tuple[int, ...]
    max_abs_diff: float

    def __str__(self) -> str:
        return f"{self.max_abs_diff:.1e} at {'x'.join(map(str, self.shape))}"


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how it was checked.

    ``input_shape`` and ``output_shape`` name the dynamic axes (``"height"``, ``"4*height"``) and
    give the static ones as numbers. ``checks`` is empty when the file was not checked.
    """

    path: Path
    format: Literal["onnx", "pt2"]
    precision: Precision
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    seconds: float
    opset: int | None = None
    checks: tuple[SizeCheck, ...] = ()
    tolerance: float | None = None
    checked_with: str | None = None  # "onnxruntime 1.20.0 (CPUExecutionProvider)", "torch.export.load"

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6

    @property
    def dynamic_axes(self) -> tuple[str, ...]:
        """The input's dynamic axes by name, e.g. ``("batch", "height", "width")``."""
        return tuple(axis for axis in self.input_shape if isinstance(axis, str))


def precision_dtype(precision: str, generator: torch.nn.Module | None = None) -> torch.dtype:
    """Raises ArgumentError for a precision other than fp32 or fp16, or one ``generator`` does not run in
    (its ``precisions``: spandrel marks SwinIR, HAT, DAT unsafe in fp16)."""
    if precision not in DTYPES:
        raise ArgumentError(f"precision must be one of {', '.join(DTYPES)}, not {precision!r} (bf16 has no "
                            "kernels in onnxruntime's CPU provider)")
    supported = getattr(generator, "precisions", DTYPES)
    if precision not in supported:
        raise ArgumentError(f"{describe(generator)} does not run in {precision} (it runs in {', '.join(supported)}): "
                            "export it in fp32 (leave out --fp16)")
    return DTYPES[precision]


def checked_sizes(sizes: Any) -> tuple[tuple[int, int], ...]:
    """The check sizes as (H, W) pairs of positive ints; raises ArgumentError naming a bad one."""
    pairs = tuple(tuple(size) for size in sizes)
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in pair):
            raise ArgumentError(f"a check size is (height, width) in LR pixels, both >= 1, not {pair!r}")
    if not pairs:
        raise ArgumentError("give at least one check size (height, width), or check=False (--no-check)")
    return pairs  # type: ignore[return-value]


def checked_tolerance(tolerance: float | None, precision: str) -> float:
    if tolerance is None:
        return TOLERANCES[precision]
    if not tolerance > 0:
        raise ArgumentError(f"the tolerance must be > 0 (the largest max abs difference accepted), got {tolerance}")
    return float(tolerance)


def require(*modules: str, purpose: str) -> None:
    """Raises ExportError naming the missing modules and the install command when any is not installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"{purpose} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                          f"installed: {EXPORT_EXTRA}")


def reason(exc: BaseException, limit: int = 400) -> str:
    """The first line of an exporter's error, with its type: exporters' messages run to pages."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else "(no message)"
    if len(first) > limit:
        first = first[:limit - 3] + "..."
    return f"{type(exc).__name__}: {first}"


@contextlib.contextmanager
def exporter_output(what: str, logger: logging.Logger) -> Iterator[None]:
    """Keep what an exporter writes to stderr (torch.export prints the partial graph of every failed trace,
    torch its warnings) out of the terminal: it goes to ``logger``, at INFO when the block fails (so
    ``srframe -v`` shows it), else at DEBUG. The error raised says what went wrong in one line."""
    stream = io.StringIO()
    try:
        with contextlib.redirect_stderr(stream):
            yield
    except BaseException:
        if stream.getvalue().strip():
            logger.info("%s printed:\n%s", what, stream.getvalue().rstrip())
        raise
    if stream.getvalue().strip():
        logger.debug("%s printed:\n%s", what, stream.getvalue().rstrip())


def write_checked(path: Path, suffix: str, save: Callable[[Path], None], failure: str,
                  check: Callable[[Path], tuple[SizeCheck, ...]] | None,
                  started: float) -> tuple[float, tuple[SizeCheck, ...]]:
    """``save(partial)`` a file under a temporary name next to ``path`` ending in ``suffix`` (torch.export
    warns about a file not ending in .pt2), ``check(partial)`` it when given, and only then rename it to
    ``path``: ``path`` is never a half-written or unchecked file, and a failure removes the temporary one.

    Returns the seconds since ``started`` once saved, and the check's results (empty without a check).
    Raises ExportError: the file cannot be written (``failure`` says what was being saved, for errors other
    than the operating system's), or the check fails (saying ``path`` was not written).
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial{suffix}")
    try:
        try:
            save(partial)
        except OSError as exc:
            raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
        except Exception as exc:  # a model over protobuf's 2 GB limit, a constant that cannot be serialised, ...
            raise ExportError(f"{failure}: {reason(exc)}") from exc
        seconds = time.perf_counter() - started
        checks: tuple[SizeCheck, ...] = ()
        if check is not None:
            try:
                checks = check(partial)
            except ExportError as exc:
                raise ExportError(f"{exc}; {path} not written (--no-check writes it unchecked)") from exc
        os.replace(partial, path)
        return seconds, checks
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
