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
    existing = run.path.is_dir() and any(run.path.iterdir())
    if existing and not resume:
        raise CheckpointError(f"run directory {run.path} already exists (an earlier run of this recipe?): pass "
                              "--resume to continue it, or --run-dir to train into another folder")
    checkpoint = None
    if existing:
        _check_resumable(run, tomllib.loads(resolved))
        checkpoint = run.latest_checkpoint()
        if checkpoint is not None and _finished(recipe, checkpoint) and run.generator.is_file():
            logger.warning("%s is already trained (all %d steps); its generator is %s", run.path,
                           sum(stage.steps for stage in recipe.spec.stages), run.generator)
            return OpenedRun(run, checkpoint, complete=True)
        logger.warning("resuming %s from %s", run.path, checkpoint or "the start (it has no checkpoint yet)")
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        run.recipe.write_text(resolved, encoding="utf-8")
        _record_environment(run, processes, resumed=checkpoint)
    except OSError as exc:
        raise CheckpointError(f"cannot write the run directory {run.path}: {exc}") from exc
    return OpenedRun(run, checkpoint, created=not existing)


def _check_resumable(run: RunDir, current: dict[str, Any]) -> None:
    if not run.recipe.is_file():
        raise CheckpointError(f"{run.path} is not a srframe run directory (it has no recipe.toml): choose another "
                              "--run-dir")
    stored = tomllib.loads(run.recipe.read_text(encoding="utf-8"))
    breaking, harmless = recipe_changes(stored, current)
    if breaking:
        raise CheckpointError(f"cannot resume {run.path}: the recipe changed in ways that would break the run: "
                              f"{', '.join(breaking)}. Undo those changes, or train into another --run-dir")
    if harmless:
        logger.warning("resuming with changed settings: %s", ", ".join(harmless))


def _finished(recipe: Recipe, checkpoint: Path) -> bool:
    progress = read_state(checkpoint)["progress"]
    return progress["step"] >= sum(stage.steps for stage in recipe.spec.stages)


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
