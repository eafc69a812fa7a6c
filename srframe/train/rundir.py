"""Opening a run directory: a new one, or the one ``--resume`` continues, checked against the recipe.

Rank 0 decides and writes; the other processes get its answer (or its error), so every process
stops with the same message. A new run directory gets the resolved recipe and an environment
record; an existing one is refused without ``--resume``, and with it the stored recipe is
compared with the given one (see :func:`srframe.train.checkpoint.recipe_changes`).
"""

from __future__ import annotations

import json
import logging
import platform
import socket
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, SrframeError
from ..recipe import Recipe
from .checkpoint import RunDir, read_state, recipe_changes, write_json
from .distributed import Processes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenedRun:
    run: RunDir
    checkpoint: Path | None  # the checkpoint to continue from, None for a fresh start
    complete: bool = False  # the run had already finished: nothing to do
    created: bool = False  # this call made the folder (so a failure before step 1 takes it away again)


def open_run(recipe: Recipe, run_dir: str | Path | None, resume: bool, processes: Processes) -> OpenedRun:
    """The run directory for ``recipe``, ready to train in (raises on every process when it is not)."""
    path = Path(run_dir) if run_dir is not None else recipe.spec.output_dir / recipe.spec.name
    answer: OpenedRun | SrframeError
    if processes.main:
        try:
            answer = _open(recipe, RunDir(path.resolve()), resume, processes)
        except SrframeError as exc:
            answer = exc
    answer = processes.broadcast(answer if processes.main else None)
    if isinstance(answer, SrframeError):
        raise answer
    return answer


def _open(recipe: Recipe, run: RunDir, resume: bool, processes: Processes) -> OpenedRun:
    resolved = recipe.to_toml()
    if run.path.exists() and not run.path.is_dir():
        raise CheckpointError(f"--run-dir {run.path} is a file: a run directory is a folder; choose another path")
    existing = run.path.is_dir() and any(run.path.iterdir())
    if existing and not run.recipe.is_file():
        raise CheckpointError(f"{run.path} is a folder that holds other files, not a srframe run directory (it has "
                              "no recipe.toml): choose another --run-dir, or an empty or new folder")
    if existing and not resume:
        raise CheckpointError(f"run directory {run.path} already exists (an earlier run of this recipe?): pass "
                              "--resume to continue it, or --run-dir to train into another folder")
    checkpoint = None
    if existing:
        checkpoint = run.latest_checkpoint()
        state = read_state(checkpoint) if checkpoint is not None else None
        if state is not None:  # with nothing trained yet, any change is fine
            _check_resumable(run, recipe, state, processes)
        if state is not None and state["progress"]["step"] >= _total(recipe) and run.generator.is_file():
            logger.warning("%s is already trained (all %d steps); its generator is %s", run.path, _total(recipe),
                           run.generator)
            return OpenedRun(run, checkpoint, complete=True)
        logger.warning("resuming %s from %s", run.path, checkpoint or "the start (it has no checkpoint yet)")
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        run.recipe.write_text(resolved, encoding="utf-8")
        _record_environment(run, processes, resumed=checkpoint)
    except OSError as exc:
        raise CheckpointError(f"cannot write the run directory {run.path}: {exc}") from exc
    return OpenedRun(run, checkpoint, created=not existing)


def _check_resumable(run: RunDir, recipe: Recipe, state: dict[str, Any], processes: Processes) -> None:
    """Refuse a resume that would break the run; log the harmless changes."""
    from ..recipe import load_recipe

    try:  # resolved again with today's components, so a parameter a plugin added since is no change
        stored = tomllib.loads(load_recipe(run.recipe).to_toml())
    except SrframeError as exc:
        raise CheckpointError(f"cannot resume {run.path}: its recipe.toml no longer loads: {exc}") from exc
    breaking, harmless = recipe_changes(stored, tomllib.loads(recipe.to_toml()))
    if breaking:
        why = ""
        if any(key.startswith("stages[") and key.endswith("].steps") for key in breaking):
            why = (" (a stage's steps may only grow in the last stage, and not when its scheduler is cosine or "
                   "linear, whose length is set when the stage starts)")
        raise CheckpointError(f"cannot resume {run.path}: the recipe changed in ways that would break the run: "
                              f"{', '.join(breaking)}{why}. Undo those changes, or train into another --run-dir")
    progress = state["progress"]
    stage = recipe.spec.stages[progress["stage"]] if progress["stage"] < len(recipe.spec.stages) else None
    if stage is not None and stage.steps < progress["stage_step"]:
        raise CheckpointError(f"cannot resume {run.path}: its stage {stage.name!r} has trained "
                              f"{progress['stage_step']} steps already, more than steps = {stage.steps}")
    if harmless:
        logger.warning("resuming with changed settings: %s", ", ".join(harmless))
    saved = len(state.get("feeds", [None]))
    if saved != processes.world_size:
        logger.warning("this run was checkpointed by %d process(es) and resumes with %d: it goes on, but not "
                       "exactly as it would have with %d", saved, processes.world_size, saved)


def _total(recipe: Recipe) -> int:
    return sum(stage.steps for stage in recipe.spec.stages)


def _record_environment(run: RunDir, processes: Processes, resumed: Path | None) -> None:
    """environment.json: what each start of the run ran on (the latest last)."""
    from .. import __version__

    starts = json.loads(run.environment.read_text(encoding="utf-8"))["starts"] if run.environment.is_file() else []
    device = processes.device
    starts.append({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv, "host": socket.gethostname(),
        "resumed_from": str(resumed) if resumed else None, "processes": processes.world_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": {"srframe": __version__, "torch": torch.__version__, "python": platform.python_version(),
                     **_versions("torchvision", "kornia", "timm", "safetensors")},
    })
    write_json(run.environment, {"starts": starts})


def _versions(*packages: str) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def discard(opened: OpenedRun, processes: Processes) -> None:
    """Take away a run directory this run created, when it failed before its first step."""
    if opened.created and processes.main:
        import shutil

        shutil.rmtree(opened.run.path, ignore_errors=True)
