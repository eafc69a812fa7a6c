"""Finding image files in folders and pairing HR with LR files by name."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

# Name endings that mark a file's role or scale, dropped when pairing: _HR, -LR, _LRx4, x4 (DIV2K).
_ROLE_SUFFIX = re.compile(r"(?:[_-](?:hr|lr))?(?:[_-]?x\d+)?$", re.IGNORECASE)


def list_images(root: Path, *, recursive: bool = False,
                subfolders_hint: str = "set recursive = true to look in subfolders") -> list[Path]:
    """The image files under ``root`` (by suffix, hidden files left out), sorted.

    Raises DataError when there are none; ``subfolders_hint`` (when not recursive) says how the
    caller's user reads subfolders ("" when they cannot).
    """
    if not root.is_dir():
        raise DataError(f"{root}: {'is not a folder' if root.exists() else 'no such folder'}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        suffixes = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise DataError(f"{root}: no image files ({suffixes}) in this folder"
                        + ("" if recursive or not subfolders_hint else f"; {subfolders_hint}"))
    return files


def pairing_key(path: Path, root: Path) -> str:
    """The name an HR and its LR file share: the relative path without suffix and role marks."""
    relative = path.relative_to(root).with_suffix("")
    stem = _ROLE_SUFFIX.sub("", relative.name) or relative.name
    return str(relative.with_name(stem))


def match_pairs(hr_root: Path, hr_files: list[Path], lr_root: Path, lr_files: list[Path]) -> list[tuple[str, Path, Path]]:
    """(key, HR file, LR file) for every HR file; a DataError lists unmatched and ambiguous files."""
    hr_by_key, lr_by_key = _by_key(hr_root, hr_files), _by_key(lr_root, lr_files)
    problems = []
    for side, by_key in (("HR", hr_by_key), ("LR", lr_by_key)):
        for key, paths in by_key.items():
            if len(paths) > 1:
                problems.append(f"{side} files {', '.join(str(p) for p in paths)} share the name {key!r}")
    for side, here, there in (("HR", hr_by_key, lr_by_key), ("LR", lr_by_key, hr_by_key)):
        unmatched = [str(here[key][0]) for key in sorted(here) if key not in there]
        if unmatched:
            shown = ", ".join(unmatched[:10]) + (f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else "")
            problems.append(f"{len(unmatched)} {side} file(s) without a partner: {shown}")
    if problems:
        raise DataError(f"cannot pair {hr_root} (HR) with {lr_root} (LR) by name (suffixes such as _HR, _LRx4 "
                        "and x4 are ignored):\n" + "\n".join(f"  - {p}" for p in problems))
    return [(key, hr_by_key[key][0], lr_by_key[key][0]) for key in sorted(hr_by_key)]


def _by_key(root: Path, files: list[Path]) -> dict[str, list[Path]]:
    by_key: dict[str, list[Path]] = {}
    for path in files:
        by_key.setdefault(pairing_key(path, root), []).append(path)
    return by_key
