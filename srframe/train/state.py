"""What a checkpoint remembers besides the weights: progress, and every random generator's state.

Everything in it is a tensor, a number, a string, or a list/dict of those, so
``torch.load(weights_only=True)`` reads it without running code. Global numpy and Python
generators are not part of it: nothing in a training step draws from them (the sampler and the
datasets draw from their own seeded generators, the degradation from the training feed's
``torch.Generator``, which the feed's own state holds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

FORMAT = "srframe.train/1"


@dataclass
class Progress:
    """Where a run is: global steps done, the stage and the steps done in it, the best validations."""

    step: int = 0
    stage: int = 0
    stage_step: int = 0
    elapsed: float = 0.0  # seconds of training before this process started
    best: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage name -> {"step", "metric", "value"}

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Progress:
        return cls(**state)


def rng_state() -> dict[str, Any]:
    """torch's global generators, CPU and CUDA (the degradation's is the training feed's to keep)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
