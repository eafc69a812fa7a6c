"""The run directory: its layout (one owner), atomic checkpoints, retention, and resume checks.

A run directory holds::

    recipe.toml                   the resolved recipe (what --resume compares with)
    environment.json              versions, device, command line, processes
    metrics.jsonl                 one JSON object per logged step and per validation
    curves.png                    losses, learning rate and validation PSNR, refreshed at each validation
    checkpoints/<step>/           generator.safetensors, generator_ema.safetensors (EMA on),
                                  discriminator.safetensors (adversarial stages), state.pt
    checkpoints/best.json         per stage: the step of the best validation, the metric and its value
    stages/<stage>/generator.safetensors   each stage's final generator (EMA weights when EMA is on)
    generator.safetensors         the run's final generator (the last stage's)

A checkpoint is written into a hidden folder next to the others and renamed into place, so a
kill or a full disk leaves either the whole checkpoint or none, never damaging the previous one.
``state.pt`` is read with ``torch.load(weights_only=True)``. This module imports torch only in
the functions that read or write tensors, so :func:`srframe.load_generator` can use the layout
without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

GENERATOR = "generator.safetensors"
GENERATOR_EMA = "generator_ema.safetensors"
DISCRIMINATOR = "discriminator.safetensors"
STATE = "state.pt"
_STEP_FOLDER = re.compile(r"\d+")


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created until asked)."""

    path: Path

    @property
    def recipe(self) -> Path:
        return self.path / "recipe.toml"

    @property
    def environment(self) -> Path:
        return self.path / "environment.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.json"

    @property
    def generator(self) -> Path:
        """The run's final generator."""
        return self.path / GENERATOR

    def stage_generator(self, stage: str) -> Path:
        return self.path / "stages" / stage / GENERATOR

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{step:08d}"

    def checkpoint_steps(self) -> list[int]:
        """The steps of the complete checkpoints, oldest first (half-written ones are hidden folders)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(int(p.name) for p in self.checkpoints.iterdir()
                      if p.is_dir() and _STEP_FOLDER.fullmatch(p.name) and (p / STATE).is_file())

    def latest_checkpoint(self) -> Path | None:
        steps = self.checkpoint_steps()
        return self.checkpoint(steps[-1]) if steps else None

    def generator_file(self) -> Path | None:
        """What ``load_generator`` reads from this folder, or None.

        In a run directory: the final generator, else the newest checkpoint's. In a checkpoint
        folder (or a stage's folder): its generator. A checkpoint's EMA weights win over its raw ones.
        """
        if (self.path / STATE).is_file():  # a checkpoint folder
            return _ema_or_raw(self.path)
        if self.generator.is_file():
            return self.generator
        latest = self.latest_checkpoint()
        return _ema_or_raw(latest) if latest is not None else None

    def read_best(self) -> dict[str, dict[str, Any]]:
        if not self.best.is_file():
            return {}
        return json.loads(self.best.read_text(encoding="utf-8"))


def write_checkpoint(run: RunDir, step: int, modules: Mapping[str, Any], state: Mapping[str, Any]) -> Path:
    """Write ``modules`` (file name -> built component) and ``state`` as checkpoint ``step``, atomically.

    Raises CheckpointError (naming the folder and the cause) when it cannot be written; the
    previous checkpoints are untouched either way.
    """
    import torch

    from ..component_files import save_component

    final = run.checkpoint(step)
    partial = run.checkpoints / f".partial-{step:08d}"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name, module in modules.items():
            save_component(module, partial / name)
        torch.save(dict(state), partial / STATE)
        _sync_folder(partial)
        if final.exists():  # the same step written again (e.g. after an interrupt at a checkpoint step)
            shutil.rmtree(final)
        os.replace(partial, final)
    except Exception as exc:  # OSError, and what torch.save or safetensors make of a full disk
        shutil.rmtree(partial, ignore_errors=True)
        raise CheckpointError(f"cannot write checkpoint {final}: {type(exc).__name__}: {exc} (a full disk?); the "
                              "earlier checkpoints are intact, and --resume continues from the newest") from exc
    return final


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The training state of a checkpoint folder, read with ``weights_only=True`` (no code runs).

    Raises CheckpointError naming the file when it cannot be read that way (a pickle of other
    objects, whose loading would run code; damaged bytes), saying srframe will not run code from it.
    """
    import torch

    from ..weights import torch_load_problem

    file = checkpoint / STATE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"cannot read the training state {file}: {exc}") from exc
    except Exception as exc:  # pickle and zip errors alike
        raise CheckpointError(f"cannot read the training state {file}: {torch_load_problem(exc)}. srframe reads it "
                              "with torch.load(weights_only=True) and will not run code from it. To fix: delete "
                              f"{checkpoint} to resume from the checkpoint before it, or start the run again") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"the training state {file} holds a {type(state).__name__}, not the dict srframe "
                              f"writes. To fix: delete {checkpoint} to resume from the checkpoint before it")
    return state


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(partial, path)


def prune(run: RunDir, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, never one that ``best.json`` names."""
    protected = {entry["step"] for entry in run.read_best().values()}
    steps = run.checkpoint_steps()
    for step in steps[: max(len(steps) - keep, 0)]:
        if step not in protected:
            shutil.rmtree(run.checkpoint(step), ignore_errors=True)


def _ema_or_raw(checkpoint: Path) -> Path:
    return checkpoint / GENERATOR_EMA if (checkpoint / GENERATOR_EMA).is_file() else checkpoint / GENERATOR


def _sync_folder(folder: Path) -> None:
    """Flush the folder's files to disk, so the rename never publishes data still in flight."""
    for file in folder.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


# Keys of a resolved recipe that a resumed run may change: where and how often it reports,
# how it loads data, not what it trains. Everything else must match the run being resumed.
_HARMLESS = [re.compile(pattern) for pattern in (
    r"name", r"output_dir", r"plugins(\[\d+\])?",
    r"train\.(device|log_every|val_every|checkpoint_every|keep_checkpoints|tensorboard|compile|ops|lpips|best_metric)",
    r"data\.train\.(num_workers|pin_memory)", r"data\.val(\..*|\[.*)?",
)]


def recipe_changes(stored: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The key paths where two resolved recipes differ: ``(breaking, harmless)``.

    More steps in the last stage are harmless (the run goes on); fewer is the engine's to judge.
    Not when its schedule spans the stage (cosine, linear): the resumed schedule would keep the old
    length and run past its end (a cosine rises again, a linear decay stays at its last rate).
    """
    from .schedules import LENGTH_FREE

    before, after = _flatten(stored), _flatten(current)
    for table in _other_kinds(before, after):  # another component: its kind says it all
        for flat in (before, after):
            for key in [k for k in flat if k.startswith(f"{table}.") and k != f"{table}.kind"]:
                del flat[key]
    stages = current.get("stages", [])
    scheduler = (stages[-1].get("scheduler") or {}).get("kind", "constant") if stages else "constant"
    last = f"stages[{len(stages) - 1}].steps" if scheduler in LENGTH_FREE else None
    breaking, harmless = [], []
    for key in sorted(set(before) | set(after)):
        if before.get(key, _ABSENT) == after.get(key, _ABSENT):
            continue
        if key == last or any(pattern.fullmatch(key) for pattern in _HARMLESS):
            harmless.append(key)
        else:
            breaking.append(key)
    return breaking, harmless


_ABSENT = object()


def _other_kinds(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The tables (key prefixes) whose ``kind`` differs between two flattened recipes."""
    return [key[: -len(".kind")] for key in before
            if key.endswith(".kind") and key in after and before[key] != after[key]]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        out = {prefix: f"{len(value)} tables"}  # adding or removing a stage shows as a change of ``stages``
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}
