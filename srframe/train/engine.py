"""The training engine: ``srframe.run(recipe)`` and ``srframe run RECIPE`` train any recipe.

For each stage: build it; for each step: batch -> degrade on the device -> generator step
(-> discriminator step) -> read the loss terms (stop on a NaN) -> log -> validate, checkpoint
or stop when due. Everything else lives in a module of its own (see :mod:`srframe.train`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import ops
from ..errors import CheckpointError, RecipeError, TrainingError, TrainingInterrupted
from ..recipe import Recipe, load_recipe
from . import checkpoint, rundir, step as steps
from .checkpoint import DISCRIMINATOR, GENERATOR, GENERATOR_EMA, RunDir
from .data import TrainingFeed
from .distributed import Processes, connect
from .log import TrainingLog
from .plots import draw_curves
from .stage import Stage, Trainable, build_losses, build_stage, trainable
from .state import FORMAT, Progress, restore_rng, rng_state
from .validate import Validation


def run(recipe: Recipe | str | Path, run_dir: str | Path | None = None, resume: bool = False,
        overrides: Mapping[str, Any] | Sequence[str] | None = None) -> Path:
    """Train ``recipe`` (a Recipe or a recipe file) and return its run directory.

    ``run_dir`` defaults to ``<output_dir>/<recipe name>``. An existing run directory is continued
    only with ``resume=True``, from its latest complete checkpoint; a finished run is left as it is.
    Raises RecipeError/CheckpointError before the first step when something the run will need is
    wrong or missing, TrainingError when a loss becomes NaN, TrainingInterrupted after SIGINT or
    SIGTERM (a checkpoint was written first).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    train = recipe.spec.train
    with connect(train.device) as processes, ops.use_mode(train.ops), _stop_on_signals() as stop:
        if train.ops == "fused" and processes.device.type != "cuda":
            raise RecipeError(f'{recipe.path}: train.ops = "fused" runs the Triton kernels, which need CUDA, and this '
                              f'run trains on {processes.device}: use "auto" (the kernels on CUDA, torch elsewhere) '
                              'or "reference"')
        opened = rundir.open_run(recipe, run_dir, resume, processes)
        if opened.complete:
            return opened.run.path
        try:
            Engine(recipe, opened.run, processes, stop).train(opened.checkpoint)
        except BaseException:
            if opened.run.latest_checkpoint() is None:  # nothing saved: leave no folder that would need --resume
                rundir.discard(opened, processes)
            raise
        return opened.run.path


@dataclass
class _Stop:
    requested: bool = False
    signal_name: str = ""


class Engine:
    """One process's share of a run: the models, the feed, the log, and the loop over stages."""

    def __init__(self, recipe: Recipe, run: RunDir, processes: Processes, stop: _Stop):
        from ..plugins import registry

        self.recipe, self.spec, self.run, self.processes, self.stop = recipe, recipe.spec, run, processes, stop
        self.registry = registry
        train = self.spec.train
        # Fail early: every stage's losses are built now (a missing VGG for stage 2 shows before step 1).
        self.losses = [build_losses(stage, processes.device, registry) for stage in self.spec.stages]
        self.feed = TrainingFeed(recipe, processes, registry, train.channels_last,
                                 channels=self.spec.generator.params.get("in_channels", 3))
        self.validation = Validation.from_recipe(self.spec, registry) if processes.main else None
        torch.manual_seed(self.spec.seed)
        self.generator: Trainable = trainable(self.spec.generator.build(registry), processes, train)
        self.progress = Progress()

    def train(self, resume_from: Path | None) -> None:
        state = self._restore(resume_from) if resume_from is not None else None
        batch = self.spec.data.train.options.batch_size * self.spec.train.accumulate
        patch = self.spec.data.train.params.get("patch_size", 0)
        log = TrainingLog(self.run, sum(s.steps for s in self.spec.stages), self.spec.train.log_every,
                          batch * patch * patch, main=self.processes.main, tensorboard=self.spec.train.tensorboard,
                          first_step=self.progress.step, elapsed=self.progress.elapsed)
        stage = None
        try:
            for index in range(self.progress.stage, len(self.spec.stages)):
                stage = build_stage(self.spec, index, self.generator, self.losses[index], stage, self.processes,
                                    self.registry)
                if state is not None:
                    self._restore_stage(stage, resume_from, state)
                    state = None
                self._train_stage(stage, log)
                self._finish_stage(stage, log)
            self._finish_run(log)
        finally:
            log.close()

    def _train_stage(self, stage: Stage, log: TrainingLog) -> None:
        train, progress = self.spec.train, self.progress
        if progress.stage_step < stage.steps:
            log.note(f"stage {stage.name!r}: steps {progress.stage_step + 1}..{stage.steps} "
                     f"({'generator and discriminator' if stage.discriminator else 'generator'})"
                     + (f"; EMA of the generator (decay {self.spec.train.ema_decay:g}) is what validation sees and "
                        "what the stage saves" if stage.ema is not None else ""))
        while progress.stage_step < stage.steps:
            progress.step += 1
            progress.stage_step += 1
            batches = self.feed.next(train.accumulate)
            terms, fakes = steps.generator_step(stage, batches, progress.step, stage.trains_generator(progress.stage_step))
            if stage.discriminator is not None:
                terms |= steps.discriminator_step(stage, batches, fakes, progress.step)
            stage.precision.update()
            lr = stage.learning_rate()  # the rate this step trained with, logged before the schedule moves on
            _advance_schedules(stage)
            log.step(progress.step, stage.name, progress.stage_step, stage.steps, self._read(terms, stage), lr)
            stopping = self.processes.any(self.stop.requested)
            last = progress.stage_step == stage.steps
            with log.paused():
                best = self._validate(stage, log) if _due(progress.step, train.val_every) or last else False
                if best or last or stopping or _due(progress.step, train.checkpoint_every):
                    self._checkpoint(stage, log)
            if stopping:
                raise TrainingInterrupted(
                    f"{self.stop.signal_name or 'a signal'} received: stopped at step {progress.step} and wrote "
                    f"{self.run.checkpoint(progress.step)}. To continue, run the same command with --resume "
                    f"(e.g. `srframe run {self.recipe.path} --resume --run-dir {self.run.path}`, with the same --set "
                    "options)")

    def _read(self, terms: dict[str, torch.Tensor], stage: Stage) -> dict[str, float]:
        """The step's loss terms as numbers (averaged over processes); a NaN or infinity stops the run."""
        names = list(terms)
        values = self.processes.mean(torch.stack([terms[n] for n in names]).tolist()) if names else []
        for name, value in zip(names, values):
            if not math.isfinite(value):
                latest = self.run.latest_checkpoint()
                raise TrainingError(
                    f"stage {stage.name!r}, step {self.progress.stage_step} (run step {self.progress.step}): the loss "
                    f"term {name!r} is {value}. Nothing was saved after it; the last good checkpoint is "
                    f"{latest or 'none (none was written yet, so the run directory is not kept)'}. Start again "
                    "with a lower learning rate, train.grad_clip or precision = \"fp32\" (into another --run-dir: "
                    "--resume continues only the same recipe)")
        return dict(zip(names, values))

    def _validate(self, stage: Stage, log: TrainingLog) -> bool:
        """Validate on rank 0 (the others wait); True when this is the stage's best so far."""
        best = False
        if self.validation is not None:
            result = self.validation.score(stage.result())
            metric = self.spec.train.best_metric
            previous = self.progress.best.get(stage.name)
            if result.get(metric) is not None and self.validation.better(metric, result[metric], previous):
                self.progress.best[stage.name] = {"step": self.progress.step, "metric": metric,
                                                  "value": result[metric]}
                best = True
            log.validation(self.progress.step, stage.name, result, best)
            draw_curves(self.run.metrics, self.run.curves)
        return self.processes.broadcast(best)

    def _checkpoint(self, stage: Stage, log: TrainingLog) -> None:
        """Write the checkpoint of this step (rank 0), prune old ones, record the best."""
        feeds = self.processes.gather(self.feed.state_dict())  # each rank draws its own degradations
        if self.processes.main:
            self.progress.elapsed = log.elapsed
            modules = {GENERATOR: self.generator.module}
            if stage.ema is not None:
                modules[GENERATOR_EMA] = stage.ema.module
            if stage.discriminator is not None:
                modules[DISCRIMINATOR] = stage.discriminator.module
            state = {"format": FORMAT, "progress": self.progress.state_dict(), "feeds": feeds,
                     "stage": stage.state_dict(), "rng": rng_state()}
            checkpoint.write_checkpoint(self.run, self.progress.step, modules, state)
            checkpoint.write_json(self.run.best, self.progress.best)
            checkpoint.prune(self.run, self.spec.train.keep_checkpoints)
        self.processes.barrier()

    def _finish_stage(self, stage: Stage, log: TrainingLog) -> None:
        """Save the stage's generator under its name; the next stage starts from it (the EMA when on)."""
        result = stage.result()
        if result is not self.generator.module:
            self.generator.module.load_state_dict(result.state_dict())
        if self.processes.main:
            from ..component_files import save_component

            path = save_component(result, self.run.stage_generator(stage.name))
            log.note(f"stage {stage.name!r} done: {path}")
        self.progress.stage += 1
        self.progress.stage_step = 0

    def _finish_run(self, log: TrainingLog) -> None:
        if self.processes.main:
            from ..component_files import save_component

            save_component(self.generator.module, self.run.generator)
            draw_curves(self.run.metrics, self.run.curves)
            log.note(f"run done: {self.run.generator}")
        self.processes.barrier()

    def _restore(self, folder: Path) -> dict[str, Any]:
        """Read a checkpoint: progress and the feed's position now, the rest when its stage is built."""
        with _damaged(folder):
            state = checkpoint.read_state(folder)
            self.progress = Progress.from_state(state["progress"])
            feeds = state["feeds"]  # rank r continues rank r's stream (a new rank, when there are more: rank 0's)
            self.feed.load_state_dict(feeds[self.processes.rank] if self.processes.rank < len(feeds) else feeds[0])
        return state

    def _restore_stage(self, stage: Stage, folder: Path, state: dict[str, Any]) -> None:
        """Weights, optimisers, schedules and random generators of the stage the checkpoint was taken in."""
        from safetensors.torch import load_model

        with _damaged(folder):
            load_model(self.generator.module, str(folder / GENERATOR), device=str(self.processes.device))
            if stage.ema is not None:
                load_model(stage.ema.module, str(folder / GENERATOR_EMA), device=str(self.processes.device))
            if stage.discriminator is not None:
                load_model(stage.discriminator.module, str(folder / DISCRIMINATOR), device=str(self.processes.device))
            stage.load_state_dict(state["stage"])
            restore_rng(state["rng"])


@contextlib.contextmanager
def _damaged(folder: Path) -> Iterator[None]:
    """Whatever goes wrong reading a checkpoint becomes one CheckpointError that says how to go on."""
    try:
        yield
    except Exception as exc:
        raise CheckpointError(f"cannot resume from {folder}: {type(exc).__name__}: {exc}. The checkpoint is "
                              "damaged or incomplete: delete that folder to resume from the one before it") from exc


def _advance_schedules(stage: Stage) -> None:
    with warnings.catch_warnings():  # a step that skipped an optimiser (D warm-up, fp16 overflow) is fine here
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        stage.scheduler.step()
        if stage.discriminator_scheduler is not None:
            stage.discriminator_scheduler.step()


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    """SIGINT and SIGTERM ask the loop to checkpoint and stop after the current step; a second one stops at once."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def ask(number: int, frame: Any) -> None:
        if stop.requested:  # asked twice: stop now, without the checkpoint
            raise KeyboardInterrupt
        stop.requested, stop.signal_name = True, signal.Signals(number).name

    previous = {number: signal.signal(number, ask) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
