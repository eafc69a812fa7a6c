"""Tiled upscaling with blended seams, so any image fits in memory.

The LR image is cut into cores of ``tile`` x ``tile`` pixels. Each core is run through the
model with ``overlap`` pixels of surrounding context (less at the image border), and the
outputs are blended: a tile's weight is 1 over its core and falls linearly to 0 over the
first ``feather`` pixels of its context, where the neighbouring tile's weight rises. Where the
context on both sides of a seam covers the model's receptive field (``overlap - feather``
at least its radius), every blended pixel equals what the untiled model computes.

Tiles are run one row of tiles at a time, and only the band of HR rows that the current row
of tiles touches is held in float (with its blend weights): rows no later tile touches are
finished, handed to ``write`` and dropped. So the float memory is about
``(tile + 2 * overlap) * scale`` HR rows of the output's width, whatever the image's height.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby

import torch

from ..errors import ArgumentError, InferenceError

Write = Callable[[slice, torch.Tensor], None]


@dataclass(frozen=True)
class Tile:
    """A core (top, left, height, width) and the context window around it, in LR pixels."""

    core: tuple[int, int, int, int]
    window: tuple[int, int, int, int]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Cover a height x width image with cores of at most ``tile`` pixels and their context windows.

    The tiles come row by row of tiles, left to right; every tile of a row has the same window rows.
    """
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


def _tile_rows(tiles: list[Tile]) -> list[list[Tile]]:
    """The tiles of :func:`plan_tiles` as rows of tiles (tiles with the same core top), top to bottom."""
    return [list(row) for _, row in groupby(tiles, key=lambda t: t.core[0])]


def all_finite(output: torch.Tensor) -> bool:
    """Whether ``output`` holds no inf or NaN: one pass for its least and largest values, which an inf or
    a NaN anywhere becomes (a quarter of ``isfinite(...).all()``'s time, and no tensor of its size)."""
    if output.numel() == 0:
        return True
    return bool(torch.isfinite(torch.stack(torch.aminmax(output))).all())


def check_finite(output: torch.Tensor, where: str) -> None:
    """Raise :class:`InferenceError` when a model's ``output`` holds inf or NaN (``where``: which output)."""
    if not all_finite(output):
        bad = int((~torch.isfinite(output)).sum())
        raise InferenceError(f"the model's output for {where} has {bad} non-finite value(s) (inf/NaN): its "
                             "activations overflowed or its weights are broken; nothing was written")


class _Band:
    """The float sums (C, rows, W) and blend weights (rows, W) of the HR rows [top, top + rows) not yet finished."""

    def __init__(self, top: int):
        self.top = top
        self.sums: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None

    def reach(self, bottom: int, channels: int, width: int, device: torch.device) -> None:
        """Extend the band down to HR row ``bottom`` (exclusive) with zeros, keeping what it holds."""
        rows = bottom - self.top
        if self.sums is not None and self.sums.shape[1] >= rows:
            return
        sums = torch.zeros(channels, rows, width, device=device)
        weights = torch.zeros(rows, width, device=device)
        if self.sums is not None:
            held = self.sums.shape[1]
            sums[:, :held], weights[:held] = self.sums, self.weights
        self.sums, self.weights = sums, weights

    def add(self, result: torch.Tensor, weight: torch.Tensor, rows: slice, cols: slice) -> None:
        """Add one tile's (C, h, w) ``result`` with its (h, w) ``weight`` at HR ``rows`` and ``cols``."""
        local = slice(rows.start - self.top, rows.stop - self.top)
        self.sums[:, local, cols] += result * weight
        self.weights[local, cols] += weight

    def finish(self, bottom: int) -> torch.Tensor:
        """The blended (1, C, n, W) rows [top, bottom), dropped from the band, which then starts at ``bottom``."""
        count = bottom - self.top
        finished = self.sums[:, :count].div_(self.weights[:count])[None]
        rest = self.sums.shape[1] - count
        self.sums = self.sums[:, count:].clone() if rest else None
        self.weights = self.weights[count:].clone() if rest else None
        self.top = bottom
        return finished


def upscale_tiled(model: Callable[[torch.Tensor], torch.Tensor], lr: torch.Tensor, scale: int, tile: int,
                  overlap: int, batch_size: int = 1, on_progress: Callable[[int], None] | None = None,
                  write: Write | None = None,
                  check: Callable[[torch.Tensor, str], None] | None = check_finite) -> torch.Tensor | None:
    """Upscale ``lr`` (1, C, H, W) tile by tile, holding in float only the band of rows still being blended.

    ``model`` takes a batch of windows of ``lr`` (N, C, h, w), in ``lr``'s dtype and on its device, and
    returns (N, C_out, h * scale, w * scale) on any device; blending runs on the device of its outputs.
    Each output is checked for inf/NaN by ``check(output, where)`` (default :func:`check_finite`, an
    :class:`InferenceError` naming the tile); ``check=None`` when ``model`` checks its outputs itself.

    With ``write``, the finished rows are handed over top to bottom as ``write(rows, block)``: ``rows``
    a slice of HR rows, ``block`` (1, C_out, len(rows), W * scale) float32 on the outputs' device
    (a view of the band: convert or copy it rather than keep it); the function returns None. Without,
    the whole (1, C_out, H * scale, W * scale) float32 result is returned on ``lr``'s device.
    ``on_progress(n)`` is called after each batch with the number of tiles done in it.

    Raises:
        ValueError: ``lr`` is not one image (1, C, H, W).
        ArgumentError: ``tile`` < 1, ``overlap`` < 0 or ``batch_size`` < 1.
        InferenceError: a model output holds inf or NaN.
    """
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f"upscale_tiled takes one image (1, C, H, W), got shape {tuple(lr.shape)}")
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be >= 1 (tiles per forward pass), got {batch_size}")
    height, width = lr.shape[-2:]
    tiles = plan_tiles(height, width, tile, overlap)
    whole: list[torch.Tensor] = []  # the (1, C_out, H * scale, W * scale) result, made at the first rows
    if write is None:
        def write(rows: slice, block: torch.Tensor) -> None:
            if not whole:
                whole.append(torch.empty(1, block.shape[1], height * scale, width * scale, device=lr.device))
            whole[0][:, :, rows] = block
    rows_of_tiles = _tile_rows(tiles)
    band = _Band(0)
    for index, row in enumerate(rows_of_tiles):
        _run_row(model, lr, row, scale, overlap // 4, batch_size, band, on_progress, check)
        last = index + 1 == len(rows_of_tiles)
        done = height * scale if last else rows_of_tiles[index + 1][0].window[0] * scale
        if done > band.top:
            write(slice(band.top, done), band.finish(done))
    return whole[0] if whole else None


def _run_row(model: Callable[[torch.Tensor], torch.Tensor], lr: torch.Tensor, row: list[Tile], scale: int,
             feather: int, batch_size: int, band: _Band, on_progress: Callable[[int], None] | None,
             check: Callable[[torch.Tensor, str], None] | None) -> None:
    """Run one row of tiles through ``model`` in batches and add their outputs to ``band``."""
    bottom = (row[0].window[0] + row[0].window[2]) * scale
    for group in _batches(row, batch_size):
        windows = torch.cat([lr[..., t.window[0]:t.window[0] + t.window[2], t.window[1]:t.window[1] + t.window[3]]
                             for t in group])
        results = model(windows)
        top, left = group[0].core[:2]
        if check is not None:
            check(results, f"the tile at LR ({top}, {left})")
        results = results.float()
        band.reach(bottom, results.shape[1], lr.shape[-1] * scale, results.device)
        for t, result in zip(group, results):
            weight = blend_weight(t, scale, feather, results.device)
            rows = slice(t.window[0] * scale, (t.window[0] + t.window[2]) * scale)
            cols = slice(t.window[1] * scale, (t.window[1] + t.window[3]) * scale)
            band.add(result, weight, rows, cols)
        if on_progress:
            on_progress(len(group))
