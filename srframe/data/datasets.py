"""Datasets of HR images (with LR partners when paired): random training patches or whole
validation images, as uint8/uint16 tensors.

Registered under kind ``dataset``: ``image_folder`` (:class:`ImageFolder`), ``paired_folder``
(:class:`PairedFolder`) and ``samples`` (:class:`Samples`).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import torch

from ..errors import DataError
from ..schema import Exists, Range
from .files import list_images, match_pairs
from .images import from_array, probe_image, read_image
from .patches import dihedral, modcrop, paired_lr_size, random_patch

logger = logging.getLogger(__name__)

Mode = Literal["train", "val"]
OnBadFile = Literal["skip", "error"]
SampleName = Literal["astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
                     "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket"]
DEFAULT_SAMPLES: list[SampleName] = ["astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
                                     "rocket"]
Key = int | tuple[int, int]  # an index, or (index, seed) as the loader's sampler gives


class ImageSource(Protocol):
    def size(self) -> tuple[int, int, int]:
        """(height, width, bytes once decoded)."""

    def read(self) -> torch.Tensor:
        """The decoded (3, H, W) image."""


@dataclass(frozen=True)
class FileImage:
    path: Path

    def size(self) -> tuple[int, int, int]:
        info = probe_image(self.path)
        return info.height, info.width, info.decoded_bytes

    def read(self) -> torch.Tensor:
        return read_image(self.path)

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class SampleImage:
    """A photograph shipped inside scikit-image (``skimage.data.<name>()``), no download."""

    name: str

    def size(self) -> tuple[int, int, int]:
        image = self.read()
        return image.shape[1], image.shape[2], image.numel() * image.element_size()

    def read(self) -> torch.Tensor:
        import skimage.data

        return from_array(getattr(skimage.data, self.name)())

    def __str__(self) -> str:
        return f"skimage.data.{self.name}"


@dataclass(frozen=True)
class Entry:
    name: str
    hr: ImageSource
    lr: ImageSource | None = None


def check_patch(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """A training patch must split into whole LR pixels: ``patch_size`` a multiple of ``scale``."""
    if params["mode"] == "train" and params["patch_size"] % params["scale"]:
        fit = max(params["scale"], params["patch_size"] - params["patch_size"] % params["scale"])
        yield "patch_size", (f"{params['patch_size']} is not a multiple of the scale {params['scale']}: "
                             f"the LR patch would not have whole pixels; use e.g. {fit}")


class SRDataset(torch.utils.data.Dataset):
    """HR images (and LR partners) served as random patches (``mode="train"``) or whole images.

    Training items are ``{"hr": (C, P, P)}`` plus ``"lr"`` (C, P/scale, P/scale) for paired sets:
    a random ``patch_size`` square, randomly flipped and rotated when ``augment``. Validation
    items are whole images cropped top-left to a multiple of ``scale``, with ``"name"``.
    Images are uint8 (uint16 for 16-bit files). Decoded images are kept in memory up to
    ``cache_mb``; a file that cannot be used is left out with a warning (``on_bad_file="skip"``)
    or stops everything with a DataError naming it (``"error"``).
    """

    check_params = staticmethod(check_patch)  # subclasses that take scale, mode and patch_size

    def __init__(self, entries: Sequence[Entry], *, scale: int, mode: Mode, patch_size: int, augment: bool,
                 repeat: int, cache_mb: float, on_bad_file: OnBadFile, where: str):
        if mode == "train" and patch_size % scale:
            raise DataError(f"{where}: patch_size = {patch_size} is not a multiple of scale = {scale}")
        self.scale, self.mode, self.patch_size, self.augment = scale, mode, patch_size, augment
        self.repeat = repeat if mode == "train" else 1
        self.on_bad_file, self.where = on_bad_file, where
        sized = self._usable(entries)
        cached = self._decode_within(sized, cache_mb * 2**20)  # None for files that failed to decode
        self.entries = [entry for entry, _ in sized if cached.get(entry, ()) is not None]
        self.cache = {i: cached[entry] for i, entry in enumerate(self.entries) if entry in cached}
        if not self.entries:
            raise DataError(f"{where}: none of its {len(entries)} images can be used (see the warnings above)")
        self._left_out: set[int] = set()  # files that failed later, in this process

    def __len__(self) -> int:
        return len(self.entries) * self.repeat

    def __getitem__(self, key: Key) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, key)
        count = len(self.entries)
        for attempt in range(count):
            i = (index + attempt) % count
            if i in self._left_out:
                continue
            try:
                hr, lr = self.cache[i] if i in self.cache else self._read(self.entries[i])
            except DataError as exc:
                self._bad_file(exc)
                self._left_out.add(i)
                continue
            return self._item(self.entries[i], hr, lr, seed)
        raise DataError(f"{self.where}: every image failed to load (see the warnings above)")

    def _item(self, entry: Entry, hr: torch.Tensor, lr: torch.Tensor | None, seed: int) -> dict[str, Any]:
        if self.mode == "val":
            item = {"hr": modcrop(hr, self.scale), "name": entry.name}
            return item | ({"lr": lr} if lr is not None else {})
        rng = random.Random(seed)
        hr, lr = random_patch(hr, self.patch_size, rng, lr, self.scale)
        k = rng.randrange(8) if self.augment else 0
        return {"hr": dihedral(hr, k)} | ({"lr": dihedral(lr, k)} if lr is not None else {})

    @staticmethod
    def _read(entry: Entry) -> tuple[torch.Tensor, torch.Tensor | None]:
        return entry.hr.read(), entry.lr.read() if entry.lr is not None else None

    def _usable(self, entries: Sequence[Entry]) -> list[tuple[Entry, int]]:
        """The entries whose headers are readable and whose sizes fit, with their decoded bytes."""
        usable = []
        for entry in entries:
            try:
                usable.append((entry, self._check_size(entry)))
            except DataError as exc:
                self._bad_file(exc)
        return usable

    def _check_size(self, entry: Entry) -> int:
        height, width, nbytes = entry.hr.size()
        least = self.patch_size if self.mode == "train" else self.scale
        if entry.lr is None and min(height, width) < least:
            what = f"the {least}x{least} HR patch" if self.mode == "train" else f"the scale {least}"
            raise DataError(f"{entry.hr}: {width}x{height} pixels is too small for {what}")
        if entry.lr is None:
            return nbytes
        lr_height, lr_width, lr_bytes = entry.lr.size()
        expected = paired_lr_size(height, width, self.scale)
        if (lr_height, lr_width) != expected:
            raise DataError(f"{entry.lr}: {lr_width}x{lr_height} pixels does not match its HR image {entry.hr} "
                            f"({width}x{height}) at scale {self.scale}: expected {expected[1]}x{expected[0]}")
        lr_least = least // self.scale if self.mode == "train" else 1
        if min(lr_height, lr_width) < lr_least:
            raise DataError(f"{entry.hr}: {width}x{height} pixels is too small for the {least}x{least} HR patch")
        return nbytes + lr_bytes

    def _decode_within(self, sized: list[tuple[Entry, int]], budget: float) -> dict[Entry, Any]:
        """Decode, in threads, the images that fit in ``budget`` bytes (in order)."""
        chosen, used = [], 0
        for entry, nbytes in sized:
            if used + nbytes <= budget:
                chosen.append(entry)
                used += nbytes
        if not chosen:
            return {}
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            cached = dict(zip(chosen, pool.map(self._try_read, chosen)))
        logger.info("%s: %d of %d images decoded into memory (%.0f MB)", self.where, len(chosen), len(sized),
                    used / 2**20)
        return cached

    def _try_read(self, entry: Entry) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        try:
            return self._read(entry)
        except DataError as exc:
            self._bad_file(exc)
            return None

    def _bad_file(self, exc: DataError) -> None:
        if self.on_bad_file == "error":
            raise DataError(f'{exc} (to leave such files out with a warning, set on_bad_file = "skip")') from exc
        logger.warning('%s; left out (on_bad_file = "skip")', exc)


PatchSize = Annotated[int, Range(min=1)]
Repeat = Annotated[int, Range(min=1)]
CacheMB = Annotated[int, Range(min=0)]  # megabytes of decoded images kept in memory
Scale = Annotated[int, Range(min=1)]
_GET_IMAGES = ("put the images there (to train: e.g. DIV2K's 800 HR images from "
               "https://data.vision.ee.ethz.ch/cvl/DIV2K/, or T91/BSD200; to validate: e.g. Set5) or correct the "
               "path; `make demo` trains on photographs shipped with scikit-image and needs no download")
Folder = Annotated[Path, Exists("dir", _GET_IMAGES)]


class ImageFolder(SRDataset):
    """HR images from a folder; the recipe's degradation makes the LR images on the device."""

    def __init__(self, root: Folder, scale: Scale, mode: Mode = "train", patch_size: PatchSize = 96,
                 augment: bool = True, repeat: Repeat = 1, recursive: bool = False, cache_mb: CacheMB = 2048,
                 on_bad_file: OnBadFile = "error"):
        root = Path(root)
        entries = [Entry(p.relative_to(root).with_suffix("").as_posix(), FileImage(p))
                   for p in list_images(root, recursive=recursive)]
        super().__init__(entries, scale=scale, mode=mode, patch_size=patch_size, augment=augment, repeat=repeat,
                         cache_mb=cache_mb, on_bad_file=on_bad_file, where=f"image_folder {root}")


class PairedFolder(SRDataset):
    """HR and LR images from two folders, paired by name (suffixes such as _HR, _LRx4, x4 ignored)."""

    def __init__(self, hr: Folder, lr: Folder, scale: Scale, mode: Mode = "train", patch_size: PatchSize = 96,
                 augment: bool = True, repeat: Repeat = 1, recursive: bool = False, cache_mb: CacheMB = 2048,
                 on_bad_file: OnBadFile = "error"):
        hr, lr = Path(hr), Path(lr)
        pairs = match_pairs(hr, list_images(hr, recursive=recursive), lr, list_images(lr, recursive=recursive))
        entries = [Entry(key, FileImage(hr_path), FileImage(lr_path)) for key, hr_path, lr_path in pairs]
        super().__init__(entries, scale=scale, mode=mode, patch_size=patch_size, augment=augment, repeat=repeat,
                         cache_mb=cache_mb, on_bad_file=on_bad_file, where=f"paired_folder {hr}")


class Samples(SRDataset):
    """Photographs shipped inside scikit-image (astronaut, coffee, chelsea, rocket, ...): no download."""

    @staticmethod
    def check_params(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        if not params["names"]:
            yield "names", "is empty: choose from " + ", ".join(SampleName.__args__)
        yield from check_patch(params)

    def __init__(self, scale: Scale, names: list[SampleName] = DEFAULT_SAMPLES, mode: Mode = "train",
                 patch_size: PatchSize = 96, augment: bool = True, repeat: Repeat = 100):
        if not names:
            raise DataError("samples: names is empty; choose from " + ", ".join(SampleName.__args__))
        super().__init__([Entry(name, SampleImage(name)) for name in names], scale=scale, mode=mode,
                         patch_size=patch_size, augment=augment, repeat=repeat, cache_mb=float("inf"),
                         on_bad_file="error", where="samples")
