"""Mixed precision: autocast for the forward passes and losses, and a gradient scaler for fp16.

``fp32`` runs as written; ``bf16`` autocasts to bfloat16 (same exponent range as fp32, no
scaler needed); ``fp16`` autocasts to float16 and scales the loss so small gradients do not
underflow (``torch.amp.GradScaler``; steps whose gradients overflow are skipped, as torch does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """A stage's precision: ``autocast()`` around forwards; ``backward``/``step`` through one scaler for all of
    the stage's optimisers (torch's recipe for several models and losses)."""

    def __init__(self, precision: Precision, device: torch.device):
        self.precision, self.device = precision, device
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.precision == "fp32":
            yield
            return
        with torch.autocast(self.device.type, dtype=DTYPES[self.precision]):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true size (before clipping them)."""
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def update(self) -> None:
        """After all of a step's optimisers have stepped: adjust the fp16 scale."""
        if self.scaler:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)
