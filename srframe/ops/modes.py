"""Which implementation the ops run: ``auto``, ``fused`` or ``reference``.

``SRFRAME_OPS`` sets the mode for the process (default ``auto``); :func:`set_mode` and
:func:`use_mode` override it from Python, process-wide, so autograd's worker threads see
the same choice as the caller.

- ``reference``: plain torch everywhere.
- ``fused``: the Triton kernels, or an :class:`OpsError` saying why they cannot run
  (no Triton, or a CPU tensor without ``TRITON_INTERPRET=1`` set before the kernels loaded).
- ``auto``: the Triton kernels for CUDA tensors when Triton is installed, the reference otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Literal, cast, get_args

import torch

from srframe.errors import SrframeError

Mode = Literal["auto", "fused", "reference"]
MODES: tuple[str, ...] = get_args(Mode)
ENV_VAR = "SRFRAME_OPS"
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_override: Mode | None = None


class OpsError(SrframeError):
    """An op mode is unknown, or the fused kernels were asked for where they cannot run."""


def _checked(mode: str, source: str) -> Mode:
    if mode not in MODES:
        raise OpsError(f"{source} = {mode!r} is not an ops mode; use one of {', '.join(MODES)}")
    return cast(Mode, mode)


def get_mode() -> Mode:
    """The mode in force: the Python override if one is set, else ``$SRFRAME_OPS``, else ``auto``."""
    if _override is not None:
        return _override
    return _checked(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", ENV_VAR)


def set_mode(mode: Mode | None) -> None:
    """Choose the mode for the whole process; ``None`` goes back to ``$SRFRAME_OPS``."""
    global _override
    _override = None if mode is None else _checked(mode, "srframe.ops.set_mode(mode)")


@contextmanager
def use_mode(mode: Mode) -> Iterator[None]:
    """Run a block in ``mode``, then restore the mode that was in force before."""
    global _override
    previous = _override
    set_mode(mode)
    try:
        yield
    finally:
        _override = previous


def _load_kernels() -> ModuleType | str:
    """The Triton kernel module, or the reason it cannot be loaded."""
    try:
        from . import triton_kernels
    except ImportError as error:
        return f"Triton cannot be imported ({error}); install it with `pip install triton`"
    return triton_kernels


def use_fused(x: torch.Tensor) -> bool:
    """Whether an op on ``x`` runs the Triton kernels; raises :class:`OpsError` if ``fused`` cannot."""
    mode = get_mode()
    if mode == "reference":
        return False
    if mode == "auto":
        return x.is_cuda and x.dtype in FUSED_DTYPES and not isinstance(_load_kernels(), str)
    kernels = _load_kernels()
    if isinstance(kernels, str):
        raise OpsError(f"{ENV_VAR}=fused asks for the Triton kernels, but {kernels}; "
                       "or use mode 'auto' or 'reference'")
    if x.dtype not in FUSED_DTYPES:
        raise OpsError(f"the fused kernels take float32, float16 or bfloat16 tensors, not {x.dtype}; "
                       "use mode 'auto' or 'reference' for other dtypes")
    if x.is_cuda or (x.device.type == "cpu" and kernels.INTERPRETED):
        return True
    if x.device.type == "cpu":
        raise OpsError(f"{ENV_VAR}=fused runs Triton kernels on CUDA tensors, and this tensor is on the CPU; "
                       "set TRITON_INTERPRET=1 before starting Python to run them through Triton's interpreter, "
                       "or use mode 'auto' (reference on the CPU) or 'reference'")
    raise OpsError(f"{ENV_VAR}=fused runs Triton kernels on CUDA tensors, not on {x.device.type}; "
                   "use mode 'auto' or 'reference'")
