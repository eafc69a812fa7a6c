"""What ``srframe eval`` does: models and the bicubic baseline on benchmark sets, then the report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ArgumentError, DataError, WeightsError
from ..outputs import check_output_file, ensure_writable_folder, strict_json, write_text
from .benchmark import (BICUBIC, BenchmarkImage, GreyConvention, ImageScore, SetResult, check_grey, evaluate_images,
                        load_benchmark)
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
        logger.warning("LPIPS is left out, the other metrics still run (--no-lpips skips it without this "
                       "warning): %s", exc)
        return None


ImageSet = tuple[str, Sequence[BenchmarkImage]]  # a named set of images already in memory (a run's validation set)


def run_suite(models: Mapping[str, Any], sets: Sequence[str | Path | ImageSet], scale: int, *,
              out_dir: Path | None = None, json_file: Path | None = None, save_images: bool = False,
              lpips: bool = True, tile: int = 256, overlap: int = 32, device: str | torch.device | None = None,
              on_image: Callable[[str, str], None] | None = None, title: str = "srframe evaluation",
              curves: Path | None = None, whole: bool = False, grey: GreyConvention = "intensity") -> Suite:
    """Evaluate ``bicubic`` and each model (name -> generator) on each set (a benchmark folder, or a
    named list of images); write the report to ``out_dir`` and the table to ``json_file``.

    The report shows, per image, bicubic | every model | HR cropped where the outputs differ most;
    ``curves`` (a run's training curves) and, with ``whole``, the first image upscaled whole by the
    last model. ``on_image(set name, model name)`` is called after each image. ``grey`` is how grey
    images are scored (:mod:`srframe.eval.benchmark`); the JSON table records it with every row.

    Raises ArgumentError for a scale below 1, and DataError before any image is scored when
    ``out_dir`` or ``json_file`` cannot be written or would write into a benchmark folder.
    """
    if scale < 1:
        raise ArgumentError(f"scale must be >= 1 (the upscaling factor), got {scale}")
    check_grey(grey)
    if device is not None:
        from ..infer.upscale import checked_device

        checked_device(device)  # also when only the bicubic baseline runs
    _check_outputs(sets, [BICUBIC, *models], out_dir, json_file)
    metric = load_lpips() if lpips else None
    suite = Suite(scale)
    crops: dict[tuple[str, str], Path] = {}
    whole_images: list[tuple[str, Path]] = []
    for entry in sets:
        set_name, images = (entry[0], list(entry[1])) if isinstance(entry, tuple) else \
            (Path(entry).name, load_benchmark(entry, scale))
        outputs: dict[str, dict[str, tuple[torch.Tensor, ImageScore]]] = {}
        for name, model in {BICUBIC: BICUBIC, **models}.items():
            kept = outputs.setdefault(name, {})

            def keep(image: BenchmarkImage, sr: torch.Tensor, scored: ImageScore, name: str = name,
                     kept: dict = kept) -> None:
                if out_dir is not None:
                    kept[image.name] = sr, scored
                if on_image:
                    on_image(set_name, name)

            suite.results.append(evaluate_images(model, images, set_name, scale, lpips=metric, model_name=name,
                                                 tile=tile, overlap=overlap, device=device, on_image=keep, grey=grey,
                                                 save_dir=_images_dir(out_dir, save_images, set_name, name)))
        if out_dir is None:
            continue
        for image in images:
            panels = [(_label(name, outputs[name][image.name][1]), outputs[name][image.name][0])
                      for name in outputs] + [("HR", image.hr)]
            crops[(set_name, image.name)] = save_comparison(panels, out_dir / set_name / f"{image.name}.png")
        if whole and not whole_images and models:
            last = list(models)[-1]
            path = out_dir / set_name / f"{images[0].name}_x{scale}_{last}.png"
            from ..outputs import write_png

            write_png(outputs[last][images[0].name][0].permute(1, 2, 0).numpy(), path)
            whole_images.append((f"{images[0].name}, upscaled x{scale} whole by {last}", path))
    if out_dir is not None:
        suite.report = write_report(suite.results, crops, out_dir, scale, title=title, curves=curves,
                                    whole=whole_images)
    if json_file is not None:
        suite.json_file = write_text(json_file, strict_json(suite.table(), indent=2) + "\n")
    return suite


def _check_outputs(sets: Sequence[str | Path | ImageSet], model_names: list[str], out_dir: Path | None,
                   json_file: Path | None) -> None:
    """Refuse, before the long part, outputs that cannot be written or would land among the benchmark images."""
    names = [entry[0] if isinstance(entry, tuple) else Path(entry).name for entry in sets]
    shared = sorted({name for name in names if names.count(name) > 1})
    if shared:  # each set is a key of the JSON table and a folder of the report
        raise DataError(f"benchmark sets must have distinct folder names: {', '.join(shared)} given more than once "
                        f"({', '.join(str(entry) for entry, name in zip(sets, names) if name in shared)})")
    folders = {Path(entry).resolve(): Path(entry) for entry in sets if not isinstance(entry, tuple)}
    if json_file is not None:
        check_output_file(json_file, "--json")
        inside = [folder for resolved, folder in folders.items() if json_file.resolve().is_relative_to(resolved)]
        if inside:
            raise DataError(f"--json {json_file} is inside the benchmark folder {inside[0]}; a file there would be "
                            "read as one of its images next time: name a file elsewhere")
    if out_dir is None:
        return
    within = [folder for resolved, folder in folders.items() if out_dir.resolve().is_relative_to(resolved)]
    if within:
        raise DataError(f"-o {out_dir} is inside the benchmark folder {within[0]}: the report would be written among "
                        f"its images; give a folder elsewhere, e.g. -o {Path(within[0]).parent / 'eval'}")
    ensure_writable_folder(out_dir, "the report folder (-o)")
    for entry in sets:
        set_name = entry[0] if isinstance(entry, tuple) else Path(entry).name
        written = [out_dir, out_dir / set_name, *(out_dir / set_name / name / "sr" for name in model_names)]
        for folder in written:
            if folder.resolve() in folders:
                raise DataError(f"-o {out_dir} would write the report into the benchmark folder {folders[folder.resolve()]} "
                                f"(as {folder}), next to (or over) its images; give another folder, e.g. "
                                f"-o {Path(folders[folder.resolve()]).parent / 'eval'}")


def _label(name: str, scored: ImageScore) -> str:
    lpips = f", LPIPS {scored.lpips:.3f}" if scored.lpips is not None else ""
    return f"{name} {scored.psnr_y:.2f} dB{lpips}"


def _images_dir(out_dir: Path | None, save_images: bool, set_name: str, model_name: str) -> Path | None:
    return out_dir / set_name / model_name / "sr" if out_dir is not None and save_images else None
