"""A stage's runtime objects, built from its recipe table: no training logic here.

The generator is carried from stage to stage (a stage's ``init_generator`` replaces its weights
first). A stage's discriminator continues the previous stage's when both choose the same
discriminator with the same settings, and is built afresh otherwise. Optimisers, schedules and
the EMA start anew with every stage: a learning-rate drop inside a run belongs in a stage's
``scheduler``, so Adam's moments are not reset halfway.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, TrainingError
from ..interfaces import AdversarialLoss, Loss
from ..recipe.spec import ComponentSpec, RecipeSpec, StageSpec, TrainSpec
from . import optimizers, schedules
from .distributed import Processes
from .ema import GeneratorEMA
from .precision import MixedPrecision


@dataclass
class Trainable:
    """A module as trained: ``module`` itself (saved, averaged), ``synced`` (in DDP under torchrun),
    and ``forward`` (compiled when asked), which the steps call."""

    module: nn.Module
    synced: nn.Module
    forward: nn.Module


def trainable(module: nn.Module, processes: Processes, train: TrainSpec) -> Trainable:
    """``module`` on the device, in the recipe's memory layout, wrapped for DDP and compiled as asked."""
    if train.sync_batchnorm and processes.distributed:
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    module = module.to(processes.device)
    if train.channels_last:
        module = module.to(memory_format=torch.channels_last)
    module.train()
    synced = processes.wrap(module)
    return Trainable(module, synced, torch.compile(synced) if train.compile else synced)


@dataclass
class WeightedLoss:
    name: str  # the term's name in logs: the loss's kind, numbered when a stage uses one kind twice
    loss: Loss
    weight: float


@dataclass
class Stage:
    """What one stage trains with: its generator and optional discriminator, optimisers, schedules, losses."""

    spec: StageSpec
    index: int
    first_step: int  # global steps done before the stage
    generator: Trainable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    losses: list[WeightedLoss]
    precision: MixedPrecision
    grad_clip: float
    ema: GeneratorEMA | None = None
    discriminator: Trainable | None = None
    discriminator_spec: ComponentSpec | None = None
    discriminator_optimizer: torch.optim.Optimizer | None = None
    discriminator_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def steps(self) -> int:
        return self.spec.steps

    @property
    def adversarial(self) -> list[WeightedLoss]:
        """The losses that define the discriminator's objective."""
        return [term for term in self.losses if isinstance(term.loss, AdversarialLoss)]

    def trains_generator(self, stage_step: int) -> bool:
        """Whether the generator is updated at this step of the stage (1-based)."""
        if self.discriminator is None:
            return True
        return stage_step > self.spec.discriminator_warmup and stage_step % self.spec.generator_every == 0

    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def result(self) -> nn.Module:
        """The generator this stage hands on and saves: the EMA average when EMA is on."""
        return self.ema.module if self.ema is not None else self.generator.module

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "precision": self.precision.state_dict()}
        if self.discriminator_optimizer is not None:
            state["discriminator_optimizer"] = self.discriminator_optimizer.state_dict()
            state["discriminator_scheduler"] = self.discriminator_scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state["precision"])
        if self.discriminator_optimizer is not None:
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
            self.discriminator_scheduler.load_state_dict(state["discriminator_scheduler"])


def build_stage(recipe: RecipeSpec, index: int, generator: Trainable, losses: list[WeightedLoss],
                previous: Stage | None, processes: Processes, registry: Any) -> Stage:
    """Stage ``index`` of ``recipe``, its random initialisations seeded by the recipe's seed and the index."""
    spec, train = recipe.stages[index], recipe.train
    if spec.init_generator is not None:
        load_generator_weights(generator.module, spec.init_generator)
    torch.manual_seed(stage_seed(recipe.seed, index))
    first_step = sum(stage.steps for stage in recipe.stages[:index])
    optimizer = _optimizer(spec.optimizer, generator.module)
    stage = Stage(spec, index, first_step, generator, optimizer, _schedule(spec, optimizer), losses,
                  MixedPrecision(train.precision, processes.device), train.grad_clip)
    if train.ema_decay > 0:
        stage.ema = GeneratorEMA(generator.module, train.ema_decay)
    if spec.discriminator is not None:
        if not stage.adversarial:
            raise TrainingError(f"stage {spec.name!r} has a discriminator, but none of its losses is a "
                                "srframe.AdversarialLoss, so nothing would train it: add one, e.g. "
                                '{ kind = "adversarial", weight = 1e-3 }')
        same = previous is not None and previous.discriminator_spec == spec.discriminator
        stage.discriminator = previous.discriminator if same else \
            trainable(spec.discriminator.build(registry), processes, train)
        stage.discriminator_spec = spec.discriminator
        stage.discriminator_optimizer = _optimizer(spec.discriminator_optimizer, stage.discriminator.module)
        stage.discriminator_scheduler = _schedule(spec, stage.discriminator_optimizer)
    return stage


def build_losses(stage: StageSpec, device: torch.device, registry: Any) -> list[WeightedLoss]:
    """The stage's weighted losses on the device (building them loads their weights: VGG, ...)."""
    built, seen = [], {}
    for spec in stage.losses:
        seen[spec.name] = seen.get(spec.name, 0) + 1
        name = spec.name if seen[spec.name] == 1 else f"{spec.name}_{seen[spec.name]}"
        built.append(WeightedLoss(name, spec.build(registry).to(device), spec.options.weight))
    return built


def stage_seed(seed: int, index: int) -> int:
    """The seed of stage ``index``'s random initialisations: the same whether the run was resumed or not."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:8], "little")


def load_generator_weights(generator: nn.Module, source: Path) -> None:
    """Load the weights of the generator saved at ``source`` (a run directory, a component file or a
    community checkpoint) into ``generator``.

    Raises CheckpointError naming the file when its weights do not fit ``generator``.
    """
    from safetensors.torch import load_model

    from ..community import load_community_generator
    from ..component_files import find_generator_file, is_component_file

    file = find_generator_file(Path(source))
    try:
        if is_component_file(file):
            load_model(generator, str(file), device=str(next(generator.parameters()).device))
        else:
            generator.load_state_dict(load_community_generator(file).state_dict())
    except RuntimeError as exc:
        built = getattr(generator, "srframe_built_from", None)
        raise CheckpointError(f"the generator saved in {file} does not fit this recipe's generator "
                              f"({built.name if built else type(generator).__name__} "
                              f"{built.params if built else ''}): {exc}".replace("\n", " ")) from exc


def _optimizer(spec: ComponentSpec, module: nn.Module) -> torch.optim.Optimizer:
    return optimizers.build(optimizers.find(spec.name), module.parameters(), spec.params)


def _schedule(spec: StageSpec, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    scheduler = spec.scheduler or ComponentSpec("scheduler", "constant", {})
    return schedules.build(scheduler.name, scheduler.params, optimizer, spec.steps)

