"""``srframe upscale``: image files and folders in, PNG files out, kept as they came in.

Grey stays grey, an alpha channel is kept (upscaled with the MATLAB bicubic), and 16-bit
images are written as 16-bit PNG. Outputs are named after their inputs, with ``.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.files import list_images
from ..data.images import decode_image
from ..errors import DataError
from .upscale import Precision, Upscaler


def upscale_files(model: Any, inputs: list[Path], out_dir: Path, *, tile: int = 256, overlap: int = 32,
                  batch_size: int = 1, precision: Precision = "fp32", channels_last: bool | None = None,
                  progress: Any = None) -> list[Path]:
    """Upscale every image file in ``inputs`` (files, or folders searched recursively) into ``out_dir``.

    ``progress`` is a rich Progress to show tiles done per image. Returns the files written.
    """
    jobs = [(path, out_dir / relative.with_suffix(".png")) for path, relative in _expand(inputs)]
    upscaler = Upscaler(model, tile=tile, overlap=overlap, batch_size=batch_size, precision=precision,
                        channels_last=channels_last)
    overall = progress.add_task("images", total=len(jobs)) if progress else None
    written = []
    for source, target in jobs:
        array = decode_image(source)
        on_tiles = None
        if progress:
            task = progress.add_task(source.name, total=upscaler.tiles_for(*array.shape[:2]))
            on_tiles = lambda n, task=task: progress.advance(task, n)  # noqa: E731
        written.append(write_png(upscaler(array, on_tiles), target))
        if progress:
            progress.remove_task(task)
            progress.advance(overall)
    return written


def write_png(array: np.ndarray, path: Path) -> Path:
    """Write an (H, W) or (H, W, C) uint8/uint16 array as PNG, 16-bit when the array is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype == np.uint16 and array.ndim == 3:  # Pillow writes 16-bit grey only
        import png

        mode = {2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        png.from_array(array.reshape(array.shape[0], -1), mode=f"{mode};16").save(str(path))
    else:
        from PIL import Image

        Image.fromarray(array).save(path)
    return path


def _expand(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(file, its path relative to the output folder) for every input file and every image in input folders."""
    found = []
    for item in inputs:
        if item.is_dir():
            found += [(path, path.relative_to(item)) for path in list_images(item, recursive=True)]
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            raise DataError(f"{item}: no such file or folder")
    return found
