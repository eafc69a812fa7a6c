"""A run's report: bicubic and each stage's generator on the run's validation images (or any
benchmark folders), as ``srframe report RUN_DIR`` writes it into ``RUN_DIR/report``.

``report/index.html`` opens from disk (no server, no network): the table of means, every
image's scores, the training curves, crops of bicubic | each stage | HR where they differ most,
and the first image upscaled whole by the last stage. ``report.md``, ``results.json`` and
``table.json`` hold the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..component_files import load_generator
from ..errors import CheckpointError, RecipeError
from ..eval.suite import ImageSet, Suite, run_suite
from ..recipe import load_recipe
from .checkpoint import RunDir
from .validate import validation_images


def report_run(run_dir: str | Path, data: Sequence[str | Path] = (), out_dir: Path | None = None, *,
               lpips: bool = True, device: str | None = None,
               on_image: Callable[[str, str], None] | None = None) -> Suite:
    """Evaluate a run's stages and write its report (default ``RUN_DIR/report``).

    ``data``: benchmark folders; default: the images of the recipe's ``[data.val]``. ``device`` runs the
    generators there (None: the CPU, where they are loaded). Raises
    CheckpointError when no stage has finished, RecipeError when there is nothing to evaluate on.
    """
    from ..plugins import registry

    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise CheckpointError(f"{run.path}: no such folder (give a run directory made by `srframe run`)")
    if not run.recipe.is_file():
        raise CheckpointError(f"{run.path} is not a srframe run directory (it has no recipe.toml)")
    spec = load_recipe(run.recipe).spec
    models = {stage.name: load_generator(run.stage_generator(stage.name)) for stage in spec.stages
              if run.stage_generator(stage.name).is_file()}
    if not models:
        raise CheckpointError(f"no stage of {run.path} has finished yet (stages/<name>/generator.safetensors): "
                              "train it first, or evaluate a checkpoint with `srframe eval`")
    sets: list[str | Path | ImageSet] = list(data)
    if not sets:
        if spec.data is None or spec.data.val is None:
            raise RecipeError(f"{run.recipe} has no [data.val]: give benchmark folders with --data")
        sets = [("validation", validation_images(spec.data.val.build(registry), spec.scale))]
    out_dir = out_dir or run.path / "report"
    return run_suite(models, sets, spec.scale, out_dir=out_dir, json_file=out_dir / "table.json", lpips=lpips,
                     device=device, on_image=on_image, title=f"{spec.name}: bicubic and each stage",
                     curves=run.curves, whole=True)
