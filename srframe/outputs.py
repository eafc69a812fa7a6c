"""Files a user keeps: written whole or not at all, into folders checked before the long part.

The commands that write results (``srframe upscale``, ``eval -o/--json``, ``report``) check
their output folders and files here before any image is processed, so a run never ends in
a traceback after minutes of work because a folder is read-only or ``--json`` names a folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError


def ensure_writable_folder(folder: Path, what: str) -> Path:
    """Create ``folder`` (and its parents) and check that a file can be written in it.

    ``what`` names it in the error, e.g. ``"the output folder (-o)"``.
    Raises DataError naming the folder and the reason.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{what} {folder} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DataError(f"cannot write to {what} {folder}: {exc.strerror or exc}") from exc
    return folder


def check_output_file(path: Path, what: str) -> Path:
    """Check that ``path`` can be written as a file (not a folder, its folder writable), without writing it.

    Raises DataError naming the file and the reason.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder; give a file name, e.g. {path / 'results.json'}")
    ensure_writable_folder(path.parent if str(path.parent) else Path("."), f"the folder of {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise DataError(f"cannot write {what} {path}: permission denied")
    return path


def write_atomically(path: Path, write: Any) -> Path:
    """Call ``write(stream)`` on a temporary file next to ``path``, then rename it into place.

    A failure (or a kill) leaves ``path`` as it was. Raises DataError when it cannot be written.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as stream:
            write(stream)
        os.replace(partial, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DataError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 text whole or not at all."""
    return write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))


def strict_json(data: Any, **options: Any) -> str:
    """JSON text that strict parsers accept: infinite and NaN floats (a PSNR of an output identical to
    its reference) become ``null``, since JSON has no Infinity. ``options`` go to ``json.dumps``."""
    return json.dumps(_finite(data), allow_nan=False, **options)


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def write_png(array: np.ndarray, path: Path, software: str | None = None) -> Path:
    """Write an (H, W) or (H, W, C) uint8/uint16 array as PNG, 16-bit when the array is, whole or not at all.

    ``software`` is recorded in the PNG's ``Software`` text chunk (see :func:`png_software`).
    Raises DataError when the file cannot be written.
    """
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]

    def write(stream: Any) -> None:
        _encode_png(array, stream)
        if software is not None:  # a text chunk may follow the pixels: put it before IEND (the last 12 bytes)
            stream.seek(-12, os.SEEK_END)
            stream.write(_png_chunk(b"tEXt", b"Software\x00" + software.encode("latin-1")) + _png_chunk(b"IEND", b""))

    return write_atomically(path, write)


def png_software(path: Path) -> str | None:
    """The ``Software`` text of a PNG file (None when it has none or is not a PNG)."""
    from .data.images import png_chunk

    key = b"Software\x00"
    try:
        data = png_chunk(path, b"tEXt", key)
    except OSError:
        return None
    return data[len(key):].decode("latin-1") if data is not None else None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _encode_png(array: np.ndarray, stream: Any) -> None:
    if array.dtype == np.uint16 and array.ndim == 3:  # Pillow writes 16-bit grey only
        import png

        mode = {2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        png.from_array(array.reshape(array.shape[0], -1), mode=f"{mode};16").write(stream)
    else:
        from PIL import Image

        Image.fromarray(array).save(stream, format="PNG")
