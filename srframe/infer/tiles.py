"""Tiled upscaling with blended seams, so any image fits in memory.

The LR image is cut into cores of ``tile`` x ``tile`` pixels. Each core is run through the
model with ``overlap`` pixels of surrounding context (less at the image border), and the
outputs are blended: a tile's weight is 1 over its core and falls linearly to 0 over the
first ``feather`` pixels of its context, where the neighbouring tile's weight rises. Where the
context on both sides of a seam covers the model's receptive field (``overlap - feather``
at least its radius), every blended pixel equals what the untiled model computes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..errors import ArgumentError


@dataclass(frozen=True)
class Tile:
    """A core (top, left, height, width) and the context window around it, in LR pixels."""

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Cover a height x width image with cores of at most ``tile`` pixels and their context windows."""
    if tile < 1 or overlap < 0:
        raise ArgumentError(f"tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    tiles = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            core_h, core_w = min(tile, height - top), min(tile, width - left)
            win_top, win_left = max(0, top - overlap), max(0, left - overlap)
            win_bottom, win_right = min(height, top + core_h + overlap), min(width, left + core_w + overlap)
            tiles.append(Tile((top, left, core_h, core_w), (win_top, win_left, win_bottom - win_top, win_right - win_left)))
    return tiles


def _ramp(length: int, start: int, stop: int, feather: int, device: torch.device) -> torch.Tensor:
    """1-D weights over a window of ``length``: 1 on [start, stop), falling to 0 over ``feather`` outside it."""
    position = torch.arange(length, device=device, dtype=torch.float32)
    distance = torch.clamp(start - position, min=0) + torch.clamp(position - (stop - 1), min=0)
    return torch.clamp(1 - distance / (feather + 1), min=0)


def blend_weight(tile: Tile, scale: int, feather: int, device: torch.device) -> torch.Tensor:
    """The (H * scale, W * scale) weight of a tile's output window."""
    (top, left, core_h, core_w), (win_top, win_left, win_h, win_w) = tile.core, tile.window
    rows = _ramp(win_h * scale, (top - win_top) * scale, (top - win_top + core_h) * scale, feather * scale, device)
    cols = _ramp(win_w * scale, (left - win_left) * scale, (left - win_left + core_w) * scale, feather * scale, device)
    return rows[:, None] * cols[None, :]


def _batches(tiles: list[Tile], batch_size: int) -> Iterator[list[Tile]]:
    """Tiles grouped into batches of equal window size (so each batch stacks into one tensor)."""
    by_size: dict[tuple[int, int], list[Tile]] = {}
    for tile in tiles:
        by_size.setdefault(tile.window[2:], []).append(tile)
    for group in by_size.values():
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


def upscale_tiled(model: Callable[[torch.Tensor], torch.Tensor], lr: torch.Tensor, scale: int, tile: int,
                  overlap: int, batch_size: int = 1, on_progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Upscale ``lr`` (1, C, H, W) tile by tile; returns (1, C_out, H * scale, W * scale) in float32.

    ``on_progress(n)`` is called after each batch with the number of tiles done in it.
    """
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f"upscale_tiled takes one image (1, C, H, W), got shape {tuple(lr.shape)}")
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1 (tiles per forward pass), got {batch_size}")
    height, width = lr.shape[-2:]
    feather = overlap // 4
    tiles = plan_tiles(height, width, tile, overlap)
    out: torch.Tensor | None = None
    total = torch.zeros(height * scale, width * scale, device=lr.device)
    for group in _batches(tiles, batch_size):
        windows = torch.cat([lr[..., t.window[0]:t.window[0] + t.window[2], t.window[1]:t.window[1] + t.window[3]]
                             for t in group])
        results = model(windows).float()
        if out is None:
            out = torch.zeros(1, results.shape[1], height * scale, width * scale, device=lr.device)
        for t, result in zip(group, results):
            weight = blend_weight(t, scale, feather, lr.device)
            rows = slice(t.window[0] * scale, (t.window[0] + t.window[2]) * scale)
            cols = slice(t.window[1] * scale, (t.window[1] + t.window[3]) * scale)
            out[0, :, rows, cols] += result * weight
            total[rows, cols] += weight
        if on_progress:
            on_progress(len(group))
    assert out is not None  # an image has at least one tile
    return out / total
