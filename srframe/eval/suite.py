"""What ``srframe eval`` does: models and the bicubic baseline on benchmark sets, then the report."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError
from .benchmark import BICUBIC, BenchmarkImage, ImageScore, SetResult, evaluate
from .report import save_comparison, summary_table, write_report

logger = logging.getLogger(__name__)


@dataclass
class Suite:
    """The results of every model (bicubic first) on every set, and the files written."""

    scale: int
    results: list[SetResult] = field(default_factory=list)
    report: Path | None = None
    json_file: Path | None = None

    def table(self) -> dict[str, dict[str, dict[str, Any]]]:
        return summary_table(self.results)


def load_lpips() -> Any:
    """The LPIPS metric, or None (with a warning that says why and how to fix it) when its weights are missing."""
    from .lpips import LPIPS

    try:
        return LPIPS().eval()
    except WeightsError as exc:
        logger.warning("LPIPS is left out, the other metrics still run: %s", exc)
        return None


def run_suite(models: Mapping[str, Any], folders: Sequence[str | Path], scale: int, *, out_dir: Path | None = None,
              json_file: Path | None = None, save_images: bool = False, lpips: bool = True, tile: int = 256,
              overlap: int = 32, on_image: Callable[[str, str], None] | None = None) -> Suite:
    """Evaluate ``bicubic`` and each model (name -> generator) on each folder; write the report to ``out_dir`` and
    the table to ``json_file``.

    ``on_image(set name, model name)`` is called after each image.
    """
    metric = load_lpips() if lpips else None
    suite = Suite(scale)
    crops: dict[tuple[str, str], list[Path]] = {}
    for folder in folders:
        set_name = Path(folder).name
        baseline: dict[str, tuple[torch.Tensor, ImageScore]] = {}

        def keep_baseline(image: BenchmarkImage, sr: torch.Tensor, scored: ImageScore) -> None:
            baseline[image.name] = sr, scored
            if on_image:
                on_image(set_name, BICUBIC)

        suite.results.append(evaluate(BICUBIC, folder, scale, lpips=metric, on_image=keep_baseline,
                                      save_dir=_images_dir(out_dir, save_images, set_name, BICUBIC)))
        for name, model in models.items():
            shown = crops.setdefault((set_name, name), [])

            def compare(image: BenchmarkImage, sr: torch.Tensor, scored: ImageScore, name: str = name,
                        shown: list[Path] = shown) -> None:
                if out_dir is not None:
                    bicubic, bicubic_score = baseline[image.name]
                    labels = (f"bicubic {bicubic_score.psnr_y:.2f} dB", f"{name} {scored.psnr_y:.2f} dB", "HR")
                    path = out_dir / set_name / name / f"{image.name}.png"
                    shown.append(save_comparison(bicubic, sr, image.hr, labels, path))
                if on_image:
                    on_image(set_name, name)

            suite.results.append(evaluate(model, folder, scale, lpips=metric, model_name=name, tile=tile,
                                          overlap=overlap, on_image=compare,
                                          save_dir=_images_dir(out_dir, save_images, set_name, name)))
    if out_dir is not None:
        suite.report = write_report(suite.results, {k: v for k, v in crops.items() if v}, out_dir, scale)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(suite.table(), indent=2), encoding="utf-8")
        suite.json_file = json_file
    return suite


def _images_dir(out_dir: Path | None, save_images: bool, set_name: str, model_name: str) -> Path | None:
    return out_dir / set_name / model_name / "sr" if out_dir is not None and save_images else None
