"""``srframe upscale``: image files and folders in, PNG files out, kept as they came in.

Grey stays grey, an alpha channel is kept, and 16-bit images are written as 16-bit PNG.
Outputs are named after their inputs, with ``.png``; a folder's layout is kept.

Nothing a user has is lost (see :func:`plan_outputs`): an output never replaces an input, two
inputs never share an output, an output folder inside an input folder is not read as input,
an existing output is kept unless ``overwrite``, and a file srframe did not write is never
replaced (the result says which is which).
Every PNG is written whole or not at all, so a killed run leaves no half-written file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.files import list_images
from ..data.images import decode_image
from ..errors import DataError
from ..outputs import ensure_writable_folder, png_software, write_png
from .upscale import Precision, Upscaler

SHOWN = 10  # clashing files listed in an error before "and N more"
SOFTWARE = "srframe upscale"  # the Software text of every PNG it writes: what --overwrite may replace


@dataclass(frozen=True)
class Job:
    """One input image and the PNG it is upscaled to."""

    source: Path
    target: Path


@dataclass
class UpscaleResult:
    """What :func:`upscale_files` did, file by file."""

    written: list[Path] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)  # the part of ``written`` that replaced an earlier output
    kept: list[Path] = field(default_factory=list)  # earlier outputs left as they were (no ``overwrite``)
    foreign: list[Path] = field(default_factory=list)  # files at output paths srframe did not write: never replaced
    left_out: list[Path] = field(default_factory=list)  # images of input folders inside the output folder


@dataclass
class Plan:
    """The jobs of a command, and the images of its input folders left out (they are in the output folder)."""

    jobs: list[Job]
    left_out: list[Path]


def upscale_files(model: Any, inputs: list[Path], out_dir: Path, *, tile: int = 256, overlap: int = 32,
                  batch_size: int = 1, precision: Precision = "fp32", channels_last: bool | None = None,
                  overwrite: bool = False, progress: Any = None, **upscaler_options: Any) -> UpscaleResult:
    """Upscale every image file in ``inputs`` (files, or folders searched recursively) into ``out_dir``.

    ``model`` is a generator, or a component file or run directory (loaded once the inputs and
    outputs have been checked, so a mistake in them is reported at once). Each PNG written records
    ``srframe upscale`` as its Software; an existing file at an output path is replaced only with
    ``overwrite`` and only when it carries that mark; a file without it (the user's own) is never
    replaced. The result lists each case. ``progress`` is a rich Progress to show tiles done per
    image; ``upscaler_options`` go to :class:`Upscaler`.

    Raises:
        CheckpointError: ``model`` is a path that holds no generator.
        DataError: an input is missing, an output would replace an input or be shared by two inputs
            (all clashes listed, before any image is upscaled), or ``out_dir`` cannot be written.
    """
    plan = plan_outputs(inputs, out_dir)
    result = UpscaleResult(left_out=plan.left_out)
    todo = []
    for job in plan.jobs:
        if not job.target.exists():
            todo.append(job)
        elif png_software(job.target) != SOFTWARE:
            result.foreign.append(job.target)
        elif overwrite:
            todo.append(job)
        else:
            result.kept.append(job.target)
    if isinstance(model, (str, Path)):
        from ..component_files import load_generator

        model = load_generator(model)
    upscaler = Upscaler(model, tile=tile, overlap=overlap, batch_size=batch_size, precision=precision,
                        channels_last=channels_last, **upscaler_options)
    ensure_writable_folder(out_dir, "the output folder (-o)")
    overall = progress.add_task("images", total=len(todo)) if progress else None
    for job in todo:
        array = decode_image(job.source)
        on_tiles = None
        if progress:
            task = progress.add_task(job.source.name, total=upscaler.tiles_for(*array.shape[:2]))
            on_tiles = lambda n, task=task: progress.advance(task, n)  # noqa: E731
        existed = job.target.exists()
        write_png(upscaler(array, on_tiles), job.target, software=SOFTWARE)
        result.written.append(job.target)
        if existed:
            result.replaced.append(job.target)
        if progress:
            progress.remove_task(task)
            progress.advance(overall)
    return result


def plan_outputs(inputs: list[Path], out_dir: Path) -> Plan:
    """Each input image and its output PNG, checked before any work.

    Folders are searched recursively, leaving out the output folder when it lies inside them (so a
    second run does not upscale the first run's outputs; the images left out are listed). The same
    file named twice counts once.

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
    left_out: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            if item.resolve() == out_resolved:
                raise DataError(f"-o {out_dir} is the input folder {item}: the outputs would mix with (and could "
                                f"replace) its images; write them elsewhere, e.g. -o {item / 'upscaled'}")
            images = list_images(item, recursive=True)
            inside = out_resolved.is_relative_to(item.resolve())  # the output folder lies within this input
            left_out += [path for path in images if inside and path.resolve().is_relative_to(out_resolved)]
            found = [(path, path.relative_to(item)) for path in images if path not in left_out]
            if not found:
                raise DataError(f"{item}: its only images are inside the output folder {out_dir}, which is not "
                                "read as input; move them, or write the outputs elsewhere")
        elif item.is_file():
            found = [(item, Path(item.name))]
        else:
            raise DataError(f"{item}: no such file or folder")
        for source, relative in found:
            jobs.setdefault(source.resolve(), Job(source, out_dir / relative.with_suffix(".png")))
    _refuse_clashes(list(jobs.values()), set(jobs))
    return Plan(list(jobs.values()), left_out)


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
