"""Learning-rate schedules by name, built from torch's schedulers, with an optional linear warm-up.

A stage's ``scheduler = { kind = "multistep", milestones = [100_000], gamma = 0.1 }`` drives the
learning rate of every optimiser of the stage (generator and discriminator, as BasicSR does),
stepped once per training step. Milestones and step counts are steps of the stage, warm-up
included. Names:

- ``constant``: the optimiser's lr throughout (after the warm-up, if any).
- ``multistep``: multiplied by ``gamma`` at each of ``milestones`` (``torch.optim.lr_scheduler.MultiStepLR``);
  SRGAN's 1e-4 -> 1e-5 halfway is ``milestones = [100_000], gamma = 0.1``.
- ``step``: multiplied by ``gamma`` every ``step_size`` steps (``StepLR``).
- ``cosine``: cosine decay to ``eta_min`` over the stage (``CosineAnnealingLR``, Loshchilov & Hutter 2017).
- ``linear``: linear decay to ``end_factor`` times the lr over the stage (``LinearLR``).

``warmup_steps`` (default 0) ramps the lr linearly from ``warmup_start`` times its value to its
value first (``LinearLR`` then ``SequentialLR``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any

import torch
from torch.optim import lr_scheduler

from ..schema import Field, Range, Schema, schema_of

Steps = Annotated[int, Range(min=1)]
Positive = Annotated[float, Range(above=0)]


def constant(optimizer: torch.optim.Optimizer, steps: int) -> lr_scheduler.LRScheduler:
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def multistep(optimizer: torch.optim.Optimizer, steps: int, milestones: list[Steps],
              gamma: Positive = 0.1) -> lr_scheduler.LRScheduler:
    return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


def step(optimizer: torch.optim.Optimizer, steps: int, step_size: Steps, gamma: Positive = 0.1) -> lr_scheduler.LRScheduler:
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


def cosine(optimizer: torch.optim.Optimizer, steps: int,
           eta_min: Annotated[float, Range(min=0)] = 0.0) -> lr_scheduler.LRScheduler:
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps - 1, 1), eta_min=eta_min)  # last step: eta_min


def linear(optimizer: torch.optim.Optimizer, steps: int,
           end_factor: Annotated[float, Range(min=0, max=1)] = 0.0) -> lr_scheduler.LRScheduler:
    return lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=end_factor, total_iters=max(steps, 1))


SCHEDULES: dict[str, Callable[..., lr_scheduler.LRScheduler]] = {
    "constant": constant, "multistep": multistep, "step": step, "cosine": cosine, "linear": linear,
}
LENGTH_FREE = {"constant", "multistep", "step"}  # schedules whose rates do not depend on the stage's length
WARMUP = {
    "warmup_steps": Field("warmup_steps", Annotated[int, Range(min=0)], 0),
    "warmup_start": Field("warmup_start", Annotated[float, Range(above=0, max=1)], 1e-3),
}


def schema(name: str) -> Schema:
    """The recipe keys of schedule ``name``: its own parameters and the warm-up keys."""
    fields = {k: f for k, f in schema_of(SCHEDULES[name]).fields.items() if k not in ("optimizer", "steps")}
    return Schema({**fields, **WARMUP})


def refusals(name: str, params: Mapping[str, Any], stage_steps: int | None) -> Iterator[tuple[str, str]]:
    """``(key, message)`` for settings that do not fit a stage of ``stage_steps`` steps."""
    warmup = params.get("warmup_steps", 0)
    if stage_steps is not None and warmup >= stage_steps:
        yield "warmup_steps", f"{warmup} is not below the stage's steps = {stage_steps}"
    milestones = params.get("milestones")
    if milestones is not None:
        if list(milestones) != sorted(set(milestones)):
            yield "milestones", f"{milestones} must rise step by step, without repeats"
        for milestone in milestones:
            if milestone <= warmup or (stage_steps is not None and milestone >= stage_steps):
                yield "milestones", (f"{milestone} is outside the stage: milestones are stage steps after the warm-up "
                                     f"({warmup}) and before the end ({stage_steps})")
                break


def build(name: str, params: Mapping[str, Any], optimizer: torch.optim.Optimizer,
          steps: int) -> lr_scheduler.LRScheduler:
    """The schedule over a stage of ``steps`` steps (warm-up included), stepped once per step."""
    own = {k: v for k, v in params.items() if k not in WARMUP}
    warmup = params.get("warmup_steps", 0)
    if not warmup:
        return SCHEDULES[name](optimizer, steps, **own)
    if "milestones" in own:  # stage steps -> steps after the warm-up, where the main schedule starts
        own["milestones"] = [m - warmup for m in own["milestones"]]
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=params.get("warmup_start", 1e-3), end_factor=1.0,
                                 total_iters=warmup)
    main = SCHEDULES[name](optimizer, steps - warmup, **own)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
