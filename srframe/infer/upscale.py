"""``srframe.upscale``: a generator applied to an image of any size, type and channel layout.

The image comes back as it went in: a PIL image as a PIL image of the same mode, a numpy
array with its dtype and layout, a tensor as a float tensor. Grey images go through an RGB
model as three equal channels and come back grey; an alpha channel is upscaled with the
MATLAB bicubic and put back. The model runs tile by tile (see :mod:`srframe.infer.tiles`),
optimised for inference by :func:`srframe.ops.optimize_for_inference`, in fp32, fp16 or bf16.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from ..degrade import imresize
from ..errors import ArgumentError
from .tiles import plan_tiles, upscale_tiled

Precision = Literal["fp32", "fp16", "bf16"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_PIL_MODES = ("L", "LA", "RGB", "RGBA", "I;16")  # the modes kept as they are; others become RGB(A)


class Upscaler:
    """A generator prepared once for inference, applied to one image at a time.

    The model is copied (and optimised for inference when ``optimize``), so the caller's model
    is never changed; build a new Upscaler after training it further. ``optimize`` and
    ``channels_last`` left as None are chosen where they were measured to pay: on the CPU, not
    on CUDA (docs/ops.md).
    """

    def __init__(self, model: torch.nn.Module, *, tile: int = 256, overlap: int = 32, batch_size: int = 1,
                 precision: Precision = "fp32", channels_last: bool | None = None, optimize: bool | None = None):
        if precision not in DTYPES:
            raise ArgumentError(f"precision must be one of {', '.join(DTYPES)}, not {precision!r}")
        self.scale = int(model.scale)
        self.tile, self.overlap, self.batch_size = tile, overlap, batch_size
        self.device = next(model.parameters()).device
        self.dtype = DTYPES[precision]
        on_cpu = self.device.type == "cpu"
        self.channels_last = on_cpu if channels_last is None else channels_last
        if on_cpu if optimize is None else optimize:
            from ..ops import optimize_for_inference

            ready = optimize_for_inference(model, channels_last=self.channels_last)
        else:
            ready = copy.deepcopy(model).eval()
            if self.channels_last:
                ready = ready.to(memory_format=torch.channels_last)
        self.model = ready.to(self.dtype)

    def __call__(self, image: Any, on_progress: Callable[[int], None] | None = None) -> Any:
        """Super-resolve one image (or a batch tensor); ``on_progress(n)`` hears of every ``n`` tiles done."""
        if isinstance(image, torch.Tensor):
            if image.dim() == 3:
                return self._upscale(image.unsqueeze(0), on_progress)[0].to(image.device)
            if image.dim() == 4:
                return torch.cat([self._upscale(x.unsqueeze(0), on_progress) for x in image]).to(image.device)
            raise ValueError(f"a tensor image must be (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
        if isinstance(image, np.ndarray):
            return _from_float(self._upscale(_to_float(image), on_progress), image)
        from PIL import Image

        if isinstance(image, Image.Image):
            if image.mode not in _PIL_MODES:
                image = image.convert("RGBA" if image.has_transparency_data else "RGB")
            array = np.asarray(image)
            return Image.fromarray(_from_float(self._upscale(_to_float(array), on_progress), array))
        raise TypeError(f"upscale takes a PIL image, a numpy array or a tensor, not {type(image).__name__}")

    def tiles_for(self, height: int, width: int) -> int:
        """How many tiles an image of this size is cut into (for progress bars)."""
        return len(plan_tiles(height, width, self.tile, self.overlap))

    def _run(self, lr: torch.Tensor) -> torch.Tensor:
        lr = lr.to(self.device, self.dtype)
        if self.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(lr).float().clamp_(0, 1)

    def _upscale(self, x: torch.Tensor, on_progress: Callable[[int], None] | None) -> torch.Tensor:
        return _upscale_channels(self._run, x.float(), self.scale, self.tile, self.overlap, self.batch_size,
                                 on_progress)


def upscale(model: torch.nn.Module, image: Any, *, tile: int = 256, overlap: int = 32, batch_size: int = 1,
            precision: Precision = "fp32", channels_last: bool | None = None, optimize: bool | None = None) -> Any:
    """Super-resolve ``image``: a PIL image, a numpy array, or a float tensor in [0, 1], (C, H, W) or (N, C, H, W).

    ``tile`` and ``overlap`` are in LR pixels (see :mod:`srframe.infer.tiles`); the result has
    the input's type, dtype and channel layout. The model is prepared for inference once and
    prepared again only when its parameters change (e.g. after a training step).
    """
    settings = (precision, channels_last, optimize)
    stamp = _state_stamp(model)
    cached = _prepared.get(model, {}).get(settings)
    if cached is None or stamp is None or cached[0] != stamp:
        cached = stamp, Upscaler(model, precision=precision, channels_last=channels_last, optimize=optimize)
        _prepared.setdefault(model, {})[settings] = cached
    upscaler = cached[1]
    upscaler.tile, upscaler.overlap, upscaler.batch_size = tile, overlap, batch_size
    return upscaler(image)


# model -> {(precision, channels_last, optimize): (state stamp, Upscaler)}
_prepared: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, tuple[tuple, Upscaler]]] = weakref.WeakKeyDictionary()


def _state_stamp(model: torch.nn.Module) -> tuple | None:
    """Changes whenever a parameter or buffer is replaced or modified in place (tensor version counters);
    None for inference tensors, which count no versions."""
    tensors = (*model.parameters(), *model.buffers())
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((id(t), t._version) for t in tensors)


def _upscale_channels(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int,
                      overlap: int, batch_size: int, on_progress: Callable[[int], None] | None) -> torch.Tensor:
    """(1, C, H, W) with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) -> (1, C, sH, sW)."""
    channels = x.shape[1]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"images with {channels} channels are not supported: expected 1 to 4 (grey, grey + alpha, "
                         "RGB, RGBA)")
    colour = x[:, : 3 if channels >= 3 else 1]
    grey = colour.shape[1] == 1
    sr = upscale_tiled(run, colour.expand(-1, 3, -1, -1) if grey else colour, scale, tile, overlap, batch_size,
                       on_progress)
    if grey:
        sr = sr.mean(dim=1, keepdim=True)
    if channels in (2, 4):
        alpha = imresize(x[:, -1:].float(), scale=scale, clamp=True).to(sr.device)
        sr = torch.cat([sr, alpha], dim=1)
    return sr


def _to_float(array: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) array -> (1, C, H, W) float in [0, 1]."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"an image array must be (H, W) or (H, W, C), got shape {array.shape}")
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        scale = np.iinfo(array.dtype).max
    elif np.issubdtype(array.dtype, np.floating):
        scale = 1.0
    else:
        raise TypeError(f"image arrays must be uint8, uint16 or float in [0, 1], not {array.dtype}")
    tensor = torch.from_numpy(np.array(array.transpose(2, 0, 1), dtype=np.float32))  # a copy: arrays may be read-only
    return (tensor / scale).unsqueeze(0)


def _from_float(sr: torch.Tensor, like: np.ndarray) -> np.ndarray:
    """(1, C, H, W) float -> an array of ``like``'s dtype and layout."""
    array = sr[0].permute(1, 2, 0).cpu().numpy()
    if like.ndim == 2:
        array = array[..., 0]
    if like.dtype in (np.uint8, np.uint16):
        top = np.iinfo(like.dtype).max
        return np.clip(np.rint(array * top), 0, top).astype(like.dtype)
    return array.astype(like.dtype)
