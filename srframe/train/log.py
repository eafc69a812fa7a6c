"""Rank 0's record of a run: ``metrics.jsonl``, progress on the terminal, optional TensorBoard.

``metrics.jsonl`` gets one JSON object per logged step::

    {"kind": "train", "step": 200, "stage": "pixel", "stage_step": 200, "time": 31.2, "timestamp": ...,
     "lr": 0.0001, "mse": 0.0031, "total": 0.0031, "steps_per_s": 6.4, "hr_mpx_per_s": 0.94}

(``step`` counts steps over the whole run, ``time`` seconds of training; each loss term is the
mean over the steps since the previous line that computed it) and one per validation::

    {"kind": "val", "step": 1000, "stage": "pixel", "time": 160.0, "psnr_y": 27.9, "ssim_y": 0.79,
     "lpips": null, "n": 1, "best": true}

On a terminal a rich progress bar shows the stage, the step, the losses, the speed and the time
left; when the output is not a terminal (CI logs, ``nohup``) the same goes out as a plain line
every ``log_every`` steps.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from .checkpoint import RunDir

TRAIN, VAL = "train", "val"


class TrainingLog:
    """Writes the run's metrics and shows its progress; a no-op on ranks other than 0."""

    def __init__(self, run: RunDir, total_steps: int, log_every: int, pixels_per_step: int, *, main: bool,
                 tensorboard: bool = False, first_step: int = 0, elapsed: float = 0.0):
        self.main, self.total, self.every = main, total_steps, log_every
        self.pixels_per_step = pixels_per_step
        self.started, self.elapsed_before, self.first_step = time.perf_counter(), elapsed, first_step
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}  # steps that computed each term (a GAN stage skips G's at some)
        self._window_start, self._window_step = time.perf_counter(), first_step
        self._display = self._writer = self._file = None
        if not main:
            return
        _keep_up_to(run.metrics, first_step)
        self._file = run.metrics.open("a", encoding="utf-8")
        self._display = _RichDisplay(total_steps, first_step) if sys.stderr.isatty() else _PlainDisplay(total_steps)
        if tensorboard:
            self._writer = _tensorboard(run.path / "tensorboard")

    @property
    def elapsed(self) -> float:
        """Seconds of training in this run, earlier processes included."""
        return self.elapsed_before + time.perf_counter() - self.started

    def step(self, step: int, stage: str, stage_step: int, stage_steps: int, terms: Mapping[str, float],
             lr: float) -> None:
        """Record one step's loss terms; every ``log_every`` steps (and at a stage's end) write their means."""
        if not self.main:
            return
        for name, value in terms.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
            self._counts[name] = self._counts.get(name, 0) + 1
        if step % self.every and stage_step != stage_steps:
            self._display.advance(step, stage, stage_step, stage_steps, None)
            return
        seconds = time.perf_counter() - self._window_start
        steps = step - self._window_step
        record = {"kind": TRAIN, "step": step, "stage": stage, "stage_step": stage_step,
                  "time": round(self.elapsed, 3), "timestamp": round(time.time(), 3), "lr": lr,
                  **{name: total / self._counts[name] for name, total in self._sums.items()},
                  "steps_per_s": steps / seconds if seconds > 0 else None,
                  "hr_mpx_per_s": steps * self.pixels_per_step / 1e6 / seconds if seconds > 0 else None}
        self._write(record)
        self._display.advance(step, stage, stage_step, stage_steps, record)
        self._sums, self._counts = {}, {}
        self._window_start, self._window_step = time.perf_counter(), step

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Work between steps (validation, checkpoints) that the logged throughput and ETA leave out."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._window_start += time.perf_counter() - started

    def validation(self, step: int, stage: str, result: Mapping[str, Any], best: bool) -> None:
        if not self.main:
            return
        record = {"kind": VAL, "step": step, "stage": stage, "time": round(self.elapsed, 3),
                  "timestamp": round(time.time(), 3), **result, "best": best}
        self._write(record)
        lpips = f", LPIPS {result['lpips']:.4f}" if result.get("lpips") is not None else ""
        self.note(f"validation at step {step} ({stage}): PSNR-Y {result['psnr_y']:.3f} dB, "
                  f"SSIM-Y {result['ssim_y']:.4f}{lpips}{' (best so far)' if best else ''}")

    def note(self, text: str) -> None:
        """A line above the progress bar (or in the plain log)."""
        if self.main:
            self._display.note(text)

    def close(self) -> None:
        if not self.main:
            return
        self._display.close()
        self._file.close()
        if self._writer is not None:
            self._writer.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for name, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in ("step", "stage_step"):
                    self._writer.add_scalar(f"{record['kind']}/{name}", value, record["step"])


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (none when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _keep_up_to(path: Path, step: int) -> None:
    """Drop records after ``step``: a resumed run logs again the steps its checkpoint did not keep."""
    records = [r for r in read_metrics(path) if r["step"] <= step]
    if path.is_file():
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _losses_text(record: Mapping[str, Any] | None) -> str:
    if not record:
        return ""
    skip = {"kind", "step", "stage", "stage_step", "time", "timestamp", "lr", "steps_per_s", "hr_mpx_per_s"}
    return " ".join(f"{name} {value:.4g}" for name, value in record.items() if name not in skip)


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise RecipeError("train.tensorboard = true needs the tensorboard package: pip install tensorboard "
                          "(or set train.tensorboard = false)") from exc
    return SummaryWriter(str(folder))


class _RichDisplay:
    def __init__(self, total: int, done: int):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("[bold]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[speed]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
        self.task = self.progress.add_task("train", total=total, completed=done, stage="", losses="", speed="")
        self.progress.start()

    def advance(self, step: int, stage: str, stage_step: int, stage_steps: int, record: Mapping[str, Any] | None):
        fields = {"stage": f"{stage} {stage_step}/{stage_steps}"}
        if record:
            fields["losses"] = _losses_text(record)
            if record.get("steps_per_s"):
                fields["speed"] = f"{record['steps_per_s']:.2f} steps/s"
        self.progress.update(self.task, completed=step, **fields)

    def note(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        self.progress.stop()


class _PlainDisplay:
    def __init__(self, total: int):
        self.total, self.started = total, time.perf_counter()

    def advance(self, step: int, stage: str, stage_step: int, stage_steps: int, record: Mapping[str, Any] | None):
        if record is None:
            return
        speed = record.get("steps_per_s")
        left = f", {_duration((self.total - step) / speed)} left" if speed else ""
        rate = f" {speed:.2f} steps/s" if speed else ""
        self.note(f"step {step}/{self.total} [{stage} {stage_step}/{stage_steps}] {_losses_text(record)} "
                  f"lr {record['lr']:.3g}{rate}{left}")

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
