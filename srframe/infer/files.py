"""``srframe upscale``: image files and folders in, PNG files out, kept as they came in.

Grey stays grey, an alpha channel is kept, and 16-bit images are written as 16-bit PNG.
Outputs are named after their inputs, with ``.png``; a folder's layout is kept.

Nothing a user has is lost (see :func:`plan_outputs`): an output never replaces an input, two
inputs never share an output, an output folder inside an input folder is not read as input,
and an existing output is kept unless ``overwrite`` (either way, the result says which).
Every PNG is written whole or not at all, so a killed run leaves no half-written file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ..data.files import list_images
from ..data.images import decode_image
from ..errors import DataError
from ..outputs import ensure_writable_folder, write_png
from .upscale import Precision, Upscaler

SHOWN = 10  # clashing files listed in an error before "and N more"


@dataclass(frozen=True)
class Job:
    """One input image and the PNG it is upscaled to."""

    source: Path
    target: Path


@dataclass
class UpscaleResult:
    """What :func:`upscale_files` did: the files written (new, or replaced with ``overwrite``) and the
    existing outputs it kept."""

    written: list[Path] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)  # the part of ``written`` that replaced a file
    kept: list[Path] = field(default_factory=list)  # existing outputs left as they were (no ``overwrite``)


def upscale_files(model: Any, inputs: list[Path], out_dir: Path, *, tile: int = 256, overlap: int = 32,
                  batch_size: int = 1, precision: Precision = "fp32", channels_last: bool | None = None,
                  overwrite: bool = False, progress: Any = None, **upscaler_options: Any) -> UpscaleResult:
    """Upscale every image file in ``inputs`` (files, or folders searched recursively) into ``out_dir``.

    ``model`` is a generator, or a component file or run directory (loaded once the inputs and
    outputs have been checked, so a mistake in them is reported at once). Existing outputs are kept (listed in the result's ``kept``) unless ``overwrite``. ``progress``
    is a rich Progress to show tiles done per image; ``upscaler_options`` go to :class:`Upscaler`.

    Raises:
        CheckpointError: ``model`` is a path that holds no generator.
        DataError: an input is missing, an output would replace an input or be shared by two inputs
            (all clashes listed, before any image is upscaled), or ``out_dir`` cannot be written.
    """
    jobs = plan_outputs(inputs, out_dir)
    result = UpscaleResult()
    todo = []
    for job in jobs:
        if job.target.exists() and not overwrite:
            result.kept.append(job.target)
        else:
            todo.append(job)
    ensure_writable_folder(out_dir, "the output folder (-o)")
    if isinstance(model, (str, Path)):
        from ..component_files import load_generator

        model = load_generator(model)
    upscaler = Upscaler(model, tile=tile, overlap=overlap, batch_size=batch_size, precision=precision,
                        channels_last=channels_last, **upscaler_options)
    overall = progress.add_task("images", total=len(todo)) if progress else None
    for job in todo:
        array = decode_image(job.source)
        on_tiles = None
        if progress:
            task = progress.add_task(job.source.name, total=upscaler.tiles_for(*array.shape[:2]))
            on_tiles = lambda n, task=task: progress.advance(task, n)  # noqa: E731
        existed = job.target.exists()
        write_png(upscaler(array, on_tiles), job.target)
        result.written.append(job.target)
        if existed:
            result.replaced.append(job.target)
        if progress:
            progress.remove_task(task)
            progress.advance(overall)
    return result


def plan_outputs(inputs: list[Path], out_dir: Path) -> list[Job]:
    """Each input image and its output PNG, checked before any work.

    Folders are searched recursively, leaving out ``out_dir`` when it lies inside them (so a second
    run does not upscale the first run's outputs). The same file named twice counts once.

    Raises:
        DataError: an input does not exist; ``out_dir`` is an input folder or an image file; an
            output would be an input file; two inputs would be written to the same output (x.png
            and x.jpg side by side, or a.png in two input folders). Every clash is listed.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"-o {out_dir} is a file: -o names the folder the upscaled images are written to")
    out_resolved = out_dir.resolve()
    jobs: dict[Path, Job] = {}  # by resolved source
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            if item.resolve() == out_resolved:
                raise DataError(f"-o {out_dir} is the input folder {item}: the outputs would mix with (and could "
                                f"replace) its images; write them elsewhere, e.g. -o {item / 'upscaled'}")
            found = [(path, path.relative_to(item)) for path in list_images(item, recursive=True)
                     if not path.resolve().is_relative_to(out_resolved)]
            if not found:
                raise DataError(f"{item}: no images outside the output folder {out_dir}")
        elif item.is_file():
            found = [(item, Path(item.name))]
        else:
            raise DataError(f"{item}: no such file or folder")
        for source, relative in found:
            jobs.setdefault(source.resolve(), Job(source, out_dir / relative.with_suffix(".png")))
    _refuse_clashes(list(jobs.values()), set(jobs))
    return list(jobs.values())


def _refuse_clashes(jobs: list[Job], sources: set[Path]) -> None:
    """DataError listing outputs that are inputs, and outputs shared by several inputs."""
    by_target: dict[Path, list[Job]] = {}
    for job in jobs:
        by_target.setdefault(job.target.resolve(), []).append(job)
    onto_inputs = [f"{job.source} -> {job.target} (the output would replace the input)"
                   for target, group in by_target.items() if target in sources for job in group[:1]]
    shared = [f"{' and '.join(str(job.source) for job in group)} -> {group[0].target} (both written to one file)"
              for group in by_target.values() if len(group) > 1]
    problems = onto_inputs + shared
    if not problems:
        return
    fixes = []
    if onto_inputs:
        fixes.append("write to another folder with -o")
    if shared:
        fixes.append("rename the inputs that share a name, or upscale each folder with its own -o")
    fix = f"To fix: {'; '.join(fixes)}."
    if len(problems) == 1:
        raise DataError(f"nothing upscaled: {problems[0]}. {fix}")
    shown = "\n".join(f"  - {p}" for p in problems[:SHOWN])
    more = f"\n  - and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    raise DataError(f"nothing upscaled: {len(problems)} outputs would replace a file being read or be written "
                    f"twice:\n{shown}{more}\n{fix}")
