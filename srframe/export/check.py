"""An exported file run against the torch model it came from, on random inputs of several sizes.

The reference is always the generator in fp32 on the CPU, so a file exported in fp16 is measured by
what it loses against the model, not against another fp16 implementation. Each size gets its own
random input (uniform in [0, 1), seeded by its position, so a check is repeatable); the second size
runs a batch of 2 when the file's batch axis is dynamic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..ops import use_mode
from .common import (CHECK_SIZES, INPUT, OUTPUT, ExportError, SizeCheck, checked_sizes, describe, precision_dtype,
                     reason, require)

Run = Callable[[torch.Tensor], np.ndarray]  # the exported file on an input in its dtype -> its output


def check_onnx(path: str | Path, generator: nn.Module, *, sizes: Sequence[tuple[int, int]] = CHECK_SIZES,
               tolerance: float = 1e-4, precision: str = "fp32", name: str | None = None,
               label: str | Path | None = None) -> tuple[SizeCheck, ...]:
    """Run the ONNX file at ``path`` with onnxruntime (CPUExecutionProvider) against ``generator``.

    ``sizes``: LR (height, width) pairs. The file takes ``lr`` in fp32 or, for ``precision="fp16"``, fp16.
    ``name`` is how messages name the model (default: its registered name and class), ``label`` the file
    (default: ``path``).

    Returns:
        One :class:`SizeCheck` per size, in order.

    Raises:
        ExportError: onnxruntime is not installed or cannot load or run the file, an output shape differs,
            the output holds inf or NaN, or its max abs difference from the torch model exceeds ``tolerance``.
    """
    require("onnxruntime", purpose="checking the ONNX file (skip it with --no-check)")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failing run is reported below, in one line
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise ExportError(f"onnxruntime {onnxruntime.__version__} cannot load {label or path}: {reason(exc)}") from exc
    batch_dynamic = not isinstance(session.get_inputs()[0].shape[0], int)

    def run(lr: torch.Tensor) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: lr.numpy()})[0]

    return _compare(run, generator, sizes, tolerance, precision, batch_dynamic,
                    f"the ONNX file {label or path} run by onnxruntime {onnxruntime.__version__}", name)


def check_program(path: str | Path, generator: nn.Module, *, sizes: Sequence[tuple[int, int]] = CHECK_SIZES,
                  tolerance: float = 1e-4, precision: str = "fp32", name: str | None = None,
                  label: str | Path | None = None) -> tuple[SizeCheck, ...]:
    """Load the ``.pt2`` program at ``path`` with ``torch.export.load`` and run it against ``generator``.

    Returns and raises as :func:`check_onnx` does (ExportError also when the file does not load).
    """
    from .trace import shapes

    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ExportError(f"torch.export.load cannot load {label or path}: {reason(exc)}") from exc
    module = program.module()
    batch_dynamic = shapes(program)[0][0] == "batch"

    def run(lr: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(lr).float().numpy()

    return _compare(run, generator, sizes, tolerance, precision, batch_dynamic,
                    f"the program {label or path} loaded with torch.export.load", name)


def _compare(run: Run, generator: nn.Module, sizes: Sequence[tuple[int, int]], tolerance: float, precision: str,
             batch_dynamic: bool, what: str, name: str | None) -> tuple[SizeCheck, ...]:
    dtype = precision_dtype(precision)
    model = _reference(generator)
    channels = int(getattr(generator, "in_channels", 3))
    checks: list[SizeCheck] = []
    for i, (height, width) in enumerate(checked_sizes(sizes)):
        batch = 2 if batch_dynamic and i % 2 else 1
        lr = torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(i))
        try:
            with torch.no_grad(), use_mode("reference"):  # on the CPU, whatever $SRFRAME_OPS says
                expected = model(lr)
        except Exception as exc:  # the model's own errors, whatever they are
            raise ExportError(f"{name or describe(generator)} itself fails on a {_shape(lr.shape)} input: "
                              f"{reason(exc)}; check at sizes it takes (--check-size H W)") from exc
        if not torch.isfinite(expected).all():
            raise ExportError(f"{name or describe(generator)} itself gives inf or NaN on a {_shape(lr.shape)} input "
                              "in fp32: its weights are broken, there is nothing to compare the file with")
        try:
            got = run(lr.to(dtype))
        except Exception as exc:  # the runtime's own exception types
            raise ExportError(f"{what} fails on a {_shape(lr.shape)} input: {reason(exc)} (a model whose forward "
                              "branches on the input size exports the branch of the size traced: does it run at "
                              "other --check-size values?)") from exc
        if tuple(got.shape) != tuple(expected.shape):
            raise ExportError(f"{what} gives a {_shape(got.shape)} output for a {_shape(lr.shape)} input, where "
                              f"{name or describe(generator)} gives {_shape(expected.shape)}")
        got = torch.from_numpy(np.asarray(got, dtype=np.float32))
        if not torch.isfinite(got).all():
            hint = " (fp16 overflows above 65504: export in fp32)" if precision == "fp16" else ""
            raise ExportError(f"{what} gives inf or NaN on a {_shape(lr.shape)} input{hint}")
        checks.append(SizeCheck(tuple(lr.shape), float((got - expected).abs().max())))
    if any(not check.max_abs_diff <= tolerance for check in checks):
        raise ExportError(f"{what} differs from {name or describe(generator)} (run in fp32 by torch) by "
                          f"{', '.join(map(str, checks))}, above the tolerance {tolerance:.0e} (a larger --atol "
                          "accepts it)")
    return tuple(checks)


def _reference(generator: nn.Module) -> nn.Module:
    """The generator in fp32 on the CPU, in eval mode: itself when it is already so, else a copy."""
    tensors = [*generator.parameters(), *generator.buffers()]
    ready = not generator.training and all(t.device.type == "cpu" and (not t.is_floating_point() or
                                                                        t.dtype == torch.float32) for t in tensors)
    return generator if ready else copy.deepcopy(generator).to("cpu", torch.float32).eval()


def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))
