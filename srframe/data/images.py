"""Reading images into uint8/uint16 tensors, with explicit rules for every image mode.

The rules (also in docs/data.md):

- PNG, JPEG, BMP, WebP (and whatever else Pillow reads); the EXIF orientation is applied (JPEG,
  WebP, TIFF, and PNG's ``eXIf`` chunk, before or after the pixels), by the decoder and by the
  size probe alike, so a probed size is always the decoded size.
- 8-bit images give uint8; 16-bit PNGs give uint16 (full precision; :func:`to_float` divides by
  65535). Pillow would cut 16-bit RGB PNGs to 8 bits, so those are decoded by torchvision.
- Alpha (RGBA, grey + alpha, palette with transparency) is composited over white: a
  transparent pixel becomes white, an opaque one keeps its colour.
- With ``rgb=True`` (the default, for RGB models) grey images are replicated to 3 channels.
- Anything that cannot be read (missing, not an image, truncated, too large) raises
  :class:`~srframe.errors.DataError` naming the path and the problem.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)  # orientations stored turned by 90 degrees: width and height swap


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header says, read without decoding the pixels."""

    path: Path
    width: int  # as decoded, after the EXIF orientation
    height: int
    bit_depth: int  # 8 or 16

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the (3, H, W) tensor :func:`read_image` makes of it."""
        return self.width * self.height * 3 * self.bit_depth // 8


def probe_image(path: str | Path) -> ImageInfo:
    """Size and depth of an image from its header; DataError if it is not a readable image."""
    from PIL import Image

    path = Path(path)
    with _reading(path), Image.open(path) as image:
        width, height = image.size
        if exif_orientation(path, image) in _TURNED:
            width, height = height, width
        sixteen = _is_16bit_png(path) or image.mode.startswith("I")
    return ImageInfo(path, width, height, 16 if sixteen else 8)


def read_image(path: str | Path, *, rgb: bool = True) -> torch.Tensor:
    """Decode an image into a (C, H, W) uint8 or uint16 tensor following the module's rules.

    ``rgb=True`` gives 3 channels; ``rgb=False`` keeps grey images as 1 channel.
    """
    return from_array(decode_image(path), rgb=rgb)


def decode_image(path: str | Path) -> np.ndarray:
    """Decode an image as it is stored: (H, W, C) uint8 or uint16, C = 1 to 4 (grey, grey + alpha, RGB, RGBA).

    No alpha or grey rule is applied: for tools that write the image back in its own layout.
    """
    from PIL import Image

    path = Path(path)
    with _reading(path):
        array = _decode_16bit_png(path) if _is_16bit_png(path) else _decode_with_pillow(path)
        with Image.open(path) as image:
            array = _orient(array, exif_orientation(path, image))
    return array[..., None] if array.ndim == 2 else array


def exif_orientation(path: Path, image: Any) -> int:
    """The EXIF orientation (1 to 8; 1 when absent) of an opened image, without decoding its pixels.

    PNG keeps EXIF in an ``eXIf`` chunk that may follow the pixel data, which Pillow reads only
    after decoding, so PNG chunks are walked here instead.
    """
    from PIL import Image

    if image.format == "PNG":
        data = png_chunk(path, b"eXIf")
        exif = Image.Exif()
        if data:
            exif.load(data)
    else:
        exif = image.getexif()
    orientation = exif.get(_EXIF_ORIENTATION, 1)
    return orientation if orientation in range(1, 9) else 1


def png_chunk(path: Path, kind: bytes, prefix: bytes = b"") -> bytes | None:
    """The data of the first ``kind`` chunk of a PNG that starts with ``prefix`` (None: none, or not a PNG),
    found by skipping from chunk header to chunk header, without decoding the pixels."""
    with open(path, "rb") as file:
        if file.read(len(_PNG_SIGNATURE)) != _PNG_SIGNATURE:
            return None
        while len(header := file.read(8)) == 8:
            length, found = int.from_bytes(header[:4], "big"), header[4:]
            if found == b"IEND":
                return None
            if found == kind and length >= len(prefix):
                data = file.read(length)
                if data.startswith(prefix):
                    return data
                file.seek(4, os.SEEK_CUR)  # its CRC
            else:
                file.seek(length + 4, os.SEEK_CUR)  # data and CRC
    return None


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W[, C]) array as EXIF ``orientation`` says (the table of Pillow's ``ImageOps.exif_transpose``)."""
    turned = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # turned 180 degrees
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # turned 90 degrees clockwise to display
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # transversed
        8: lambda a: np.rot90(a, 1),  # turned 90 degrees counter-clockwise to display
    }[orientation](array)
    return turned if orientation == 1 else np.ascontiguousarray(turned)


def from_array(array: np.ndarray, *, rgb: bool = True) -> torch.Tensor:
    """An (H, W) or (H, W, C) uint8/uint16 array -> (C, H, W) tensor, alpha and grey rules applied."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or array.dtype not in (np.uint8, np.uint16):
        raise DataError(f"expected an (H, W) or (H, W, 1..4) uint8 or uint16 image, got shape {array.shape} "
                        f"of {array.dtype}")
    array = _composite_alpha(array)
    if rgb and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    chw = np.ascontiguousarray(array.transpose(2, 0, 1))
    return torch.from_numpy(chw if chw.flags.writeable else chw.copy())


def to_float(images: torch.Tensor, device: torch.device | str | None = None,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 or uint16 images -> floats in [0, 1] on ``device`` (copied there first, non-blocking).

    Loaders hand uint8 (a quarter of the bytes of float32) to the device, where this converts them.
    """
    images = images.to(device, non_blocking=True) if device is not None else images
    if images.dtype == torch.uint8:
        scale = 255.0
    elif images.dtype == torch.uint16:
        scale = 65535.0
    else:
        raise TypeError(f"to_float expects uint8 or uint16 images, got {images.dtype}")
    return images.to(dtype).div_(scale)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn every failure to read ``path`` into a DataError naming it."""
    from PIL import Image

    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a folder, not an image") from exc
    except PermissionError as exc:
        raise DataError(f"{path}: permission denied") from exc
    except Image.UnidentifiedImageError as exc:
        raise DataError(f"{path}: not an image file (or a format Pillow cannot read)") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: too large to decode safely ({exc})") from exc
    except (OSError, ValueError, SyntaxError, RuntimeError, EOFError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise DataError(f"{path}: cannot decode the image, it may be truncated or corrupt ({reason})") from exc


def _is_16bit_png(path: Path) -> bool:
    with open(path, "rb") as file:
        head = file.read(26)
    return len(head) == 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16


def _decode_16bit_png(path: Path) -> np.ndarray:
    import torchvision.io

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of torchcodec
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        image = torchvision.io.decode_png(torchvision.io.read_file(str(path)), torchvision.io.ImageReadMode.UNCHANGED)
    return image.permute(1, 2, 0).numpy()


def _decode_with_pillow(path: Path) -> np.ndarray:
    """(H, W) grey or (H, W, C) grey + alpha, RGB, RGBA; uint8, or uint16 for 16-bit grey."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        mode = image.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
        if mode == "F":
            raise DataError(f"{path}: floating-point images (mode F) are not supported; save it as 8- or 16-bit")
        if mode in ("P", "PA"):
            mode = "RGBA" if "transparency" in image.info or mode == "PA" else "RGB"
        elif mode == "1":
            mode = "L"
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            mode = "RGBA" if "A" in mode else "RGB"  # CMYK, YCbCr, LAB, RGBX, La ...
        return np.asarray(image.convert(mode) if mode != image.mode else image)


def _composite_alpha(array: np.ndarray) -> np.ndarray:
    """Drop the alpha channel (2 or 4 channels) by compositing over white."""
    if array.shape[2] not in (2, 4):
        return array
    top = np.iinfo(array.dtype).max
    colour, alpha = array[..., :-1].astype(np.float64), array[..., -1:].astype(np.float64) / top
    return np.rint(colour * alpha + top * (1 - alpha)).astype(array.dtype)
