"""Helpers for the training-engine tests (tests/test_train_*.py): tiny recipes, test losses, runners.

Everything a test writes goes under its ``tmp_path``; runs are always given ``--run-dir`` and
subprocesses run with their working directory in ``tmp_path``, so nothing lands in the repository.

The test losses live in one plugin file written once per session (:func:`plugin_file`), so every
recipe of the session names the same file and the in-process registry loads it once:

- ``killer`` ``{ at_step, marker }``: SIGKILLs its own process at run step ``at_step`` unless the
  file ``marker`` exists (it creates it first, so a resumed run goes on); ``{rank}`` in ``marker``
  stands for the process's rank under torchrun, so every rank kills itself. Returns 0.
- ``gate`` ``{ at_step, folder }``: at run step ``at_step``, unless ``folder/go`` exists, touches
  ``folder/reached`` and waits for ``folder/go`` (at most a minute): a test sends its signal while the
  run is known to be inside that step. Returns 0.
- ``nan_at`` ``{ at_step }``: NaN at run step ``at_step``, else 0.
- ``record_batch`` ``{ folder }``: saves each step's HR batch as ``folder/step<step>_rank<RANK>.pt``.

All of them return a constant (no gradient), so with ``weight = 0.0`` they change nothing in training.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parents[1]

PLUGIN_SOURCE = '''
"""Test losses for the training-engine tests (see tests/train_helpers.py)."""
import os
import signal
import time
from pathlib import Path

import torch

import srframe
from srframe.interfaces import Loss, LossContext


def _zero(ctx: LossContext) -> torch.Tensor:
    return torch.zeros((), device=ctx.sr.device)


@srframe.register("loss", "killer")
class Killer(Loss):
    """SIGKILLs this process at run step at_step unless the marker file exists (created first)."""

    def __init__(self, at_step: int, marker: str):
        super().__init__()
        self.at_step, self.marker = at_step, marker

    def forward(self, ctx: LossContext) -> torch.Tensor:
        marker = self.marker.replace("{rank}", os.environ.get("RANK", "0"))
        if ctx.step == self.at_step and not os.path.exists(marker):
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return _zero(ctx)


@srframe.register("loss", "gate")
class Gate(Loss):
    """At run step at_step, unless folder/go exists: touch folder/reached, wait for folder/go."""

    def __init__(self, at_step: int, folder: str):
        super().__init__()
        self.at_step, self.folder = at_step, Path(folder)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        go = self.folder / "go"
        if ctx.step == self.at_step and not go.exists():
            (self.folder / "reached").touch()
            deadline = time.monotonic() + 60
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return _zero(ctx)


@srframe.register("loss", "nan_at")
class NanAt(Loss):
    """NaN at run step at_step, else 0."""

    def __init__(self, at_step: int):
        super().__init__()
        self.at_step = at_step

    def forward(self, ctx: LossContext) -> torch.Tensor:
        value = float("nan") if ctx.step == self.at_step else 0.0
        return torch.full((), value, device=ctx.sr.device)


@srframe.register("loss", "record_batch")
class RecordBatch(Loss):
    """Saves each step's HR batch as folder/step<step>_rank<RANK>.pt."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = Path(folder)

    def forward(self, ctx: LossContext) -> torch.Tensor:
        rank = os.environ.get("RANK", "0")
        torch.save(ctx.hr.detach().cpu().clone(), self.folder / f"step{ctx.step}_rank{rank}.pt")
        return _zero(ctx)
'''


def plugin_file(folder: Path) -> Path:
    """Write the test-loss plugin into ``folder`` (once) and return its path."""
    path = folder / "train_test_losses.py"
    if not path.is_file():
        path.write_text(PLUGIN_SOURCE, encoding="utf-8")
    return path


# -- fixtures (import them into a test module to use them) -----------------------------------------


@pytest.fixture(autouse=True)
def one_thread():
    """Train with one torch thread, as the subprocesses do (``OMP_NUM_THREADS=1``, see :func:`env`).

    On a small, shared CPU two threads are much slower for these tiny models (the threads of one
    convolution wait for each other), and a run only reproduces another bit for bit with the same
    number of threads.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def plugin(tmp_path_factory) -> Path:
    """The test-loss plugin file, one path per session (see the module docstring): every test module that
    imports this fixture gets its own instance of it, and all of them must name the same file, or the
    second would register the same losses again."""
    folder = tmp_path_factory.getbasetemp() / "train_plugin"
    folder.mkdir(exist_ok=True)
    return plugin_file(folder)


@pytest.fixture(scope="session")
def val_folder(tmp_path_factory) -> Path:
    """Two tiny PNGs (32x32 and 28x24): validation images, and a benchmark folder for ``srframe eval``."""
    folder = tmp_path_factory.mktemp("val")
    write_png(folder / "a.png", 32, 32, seed=1)
    write_png(folder / "b.png", 28, 24, seed=2)
    return folder


# -- recipes -------------------------------------------------------------------------------------

GENERATOR = {"kind": "srresnet", "num_blocks": 1, "channels": 8, "norm": "none"}
DISCRIMINATOR = {"kind": "srgan", "channels": 8}


def pixel_stage(name: str = "pixel", steps: int = 4, *extra_losses: dict[str, Any], **keys: Any) -> dict[str, Any]:
    """A generator-only stage: MSE plus ``extra_losses``."""
    return {"name": name, "steps": steps, "losses": [{"kind": "mse"}, *extra_losses], **keys}


def gan_stage(name: str = "gan", steps: int = 4, *extra_losses: dict[str, Any], **keys: Any) -> dict[str, Any]:
    """An adversarial stage: SRGAN discriminator (8 channels), L1 + 1e-3 adversarial plus ``extra_losses``."""
    return {"name": name, "steps": steps, "discriminator": dict(DISCRIMINATOR),
            "losses": [{"kind": "l1"}, {"kind": "adversarial", "weight": 1e-3}, *extra_losses], **keys}


def recipe_data(stages: Sequence[dict[str, Any]], *, plugin: Path | None = None, train: dict[str, Any] | None = None,
                data_train: dict[str, Any] | None = None, val: Path | None = None,
                generator: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A tiny x4 recipe: srresnet with 1 block of 8 channels, no batch norm; 16-pixel patches, batch 2
    from the ``coffee`` sample; a metrics line every step, a checkpoint every 2 steps, 10 kept."""
    data: dict[str, Any] = {"train": {"kind": "samples", "names": ["coffee"], "patch_size": 16, "batch_size": 2,
                                      "num_workers": 0, "repeat": 8, **(data_train or {})}}
    if val is not None:
        data["val"] = {"kind": "image_folder", "root": str(val)}
    return {"scale": 4, "seed": 0, "plugins": [str(plugin)] if plugin else [],
            "generator": {**GENERATOR, **(generator or {})}, "data": data,
            "train": {"log_every": 1, "val_every": 0, "checkpoint_every": 2, "keep_checkpoints": 10, **(train or {})},
            "stages": [copy.deepcopy(stage) for stage in stages], **top}


def write_recipe(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


# -- running -------------------------------------------------------------------------------------


def run_inprocess(recipe: Path, run_dir: Path, *overrides: str, resume: bool = False) -> Path:
    """``srframe.run`` in this process (no interpreter start-up: the cheapest way to train)."""
    from srframe.train.engine import run

    return run(recipe, run_dir=run_dir, resume=resume, overrides=list(overrides))


def env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess: this one, offline, plus ``extra``."""
    out = {**os.environ, "SRFRAME_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}
    out.pop("RANK", None), out.pop("WORLD_SIZE", None), out.pop("LOCAL_RANK", None)
    return out


def cli_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "srframe.cli", *map(str, args)]


def srframe_cli(*args: str | Path, cwd: Path, timeout: float = 120, extra_env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess:
    """``python -m srframe.cli ARGS`` in a subprocess; its output captured as text. Asserts that the files
    the command reads are unchanged afterwards."""
    from conftest import inputs_unchanged

    with inputs_unchanged(list(map(str, args)), cwd):
        return subprocess.run(cli_command(*args), cwd=cwd, env=env(**(extra_env or {})), capture_output=True,
                              text=True, timeout=timeout)


def start_cli(*args: str | Path, cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``python -m srframe.cli ARGS`` in the background, stdout and stderr into ``log``."""
    with log.open("w") as handle:  # the child keeps its own copy of the file
        return subprocess.Popen(cli_command(*args), cwd=cwd, env=env(), stdout=handle, stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float = 60, what: str = "a condition",
             process: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until it holds; fail when ``process`` ends first or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def torchrun(*args: str | Path, cwd: Path, nproc: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=N -m srframe.cli ARGS`` on the CPU (gloo), one thread per
    process. On a timeout the launcher and its workers (its process group) are killed."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "srframe.cli", *map(str, args)]
    process = subprocess.Popen(command, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        raise AssertionError(f"torchrun timed out after {timeout} s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(command, process.returncode, out, err)


# -- reading a run directory ----------------------------------------------------------------------


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_records(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in metrics(run_dir) if r["kind"] == "train"]


def last_step_logged(run_dir: Path) -> int:
    try:
        return max((r["step"] for r in train_records(run_dir)), default=0)
    except (ValueError, KeyError):  # a line being written
        return 0


def tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_tensors(a: Path, b: Path) -> None:
    """The two safetensors files hold the same names with ``torch.equal`` tensors."""
    import torch

    left, right = tensors(a), tensors(b)
    assert left.keys() == right.keys(), (a, b)
    different = [name for name in left if not torch.equal(left[name], right[name])]
    assert not different, f"{a} and {b} differ in {different}"


def update_gap(a: dict[str, Any], b: dict[str, Any], start: dict[str, Any]) -> tuple[float, float]:
    """``(largest |a - b|, largest |b - start|)`` over all tensors: how far two updates of ``start`` differ,
    and how large the update is."""
    gap = max((a[k] - b[k]).abs().max().item() for k in start)
    largest = max((b[k] - start[k]).abs().max().item() for k in start)
    return gap, largest


def checkpoint_steps(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: its mtime (ns) and bytes."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write_png(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A small RGB PNG of smooth random colours."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1, 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
