"""``srframe.upscale``: a generator applied to an image of any size, type and channel layout.

The image comes back as it went in: a PIL image as a PIL image of the same mode, a numpy
array with its dtype and layout, a float tensor as a float tensor on its device. The model runs
tile by tile (see :mod:`srframe.infer.tiles`), optimised for inference by
:func:`srframe.ops.optimize_for_inference`, in fp32, fp16 or bf16, on the model's device or the
one asked for. The rules:

- Memory: only the band of output rows being blended is held in float; finished rows are
  converted at once into the output, which has the input's format (uint8 stays uint8).
- Channels: the model gets the channels it takes (``model.in_channels``, 3 when absent). A grey
  image goes to a 1-channel model as it is, and to an RGB model as three equal channels, averaged
  back. An RGB image goes to a 1-channel model as the Y of MATLAB's ``rgb2ycbcr`` (the SRCNN/VDSR
  convention, the 16-235 range scaled to [0, 1]; its Y row is :func:`srframe.eval.metrics.rgb_to_y`'s);
  Cb and Cr are upscaled with the MATLAB bicubic and the three turned back into RGB.
- Alpha: the alpha channel is upscaled with the MATLAB bicubic; the colour goes through the model
  premultiplied by alpha and is divided by the upscaled alpha afterwards (clamped to [0, 1]), so
  colour next to transparent pixels keeps its value instead of darkening. Fully transparent output
  pixels (alpha 0) get colour 0.
- Non-finite output: every model output is checked before clamping; inf or NaN raises
  :class:`~srframe.errors.InferenceError` naming the precision and the fix, and nothing is returned.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch

from ..degrade import imresize
from ..errors import ArgumentError, InferenceError
from ..eval.metrics import check_unit_range
from ..interfaces import describe
from .channels import (Layout, colour_of, layout_for, model_channels, side_planes, to_model, unpremultiply,
                       ycbcr_to_rgb)
from .tiles import Write, all_finite, plan_tiles, upscale_tiled

Precision = Literal["fp32", "fp16", "bf16"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_PIL_MODES = ("L", "LA", "RGB", "RGBA", "I;16")  # the modes kept as they are; others become RGB(A)
_CHUNK_ROWS = 32  # LR rows of finished output converted (and their alpha / Cb Cr upscaled) at a time
_BICUBIC_COLUMNS = 128  # LR columns per bicubic block (its dense 1-D weight matrices stay small)
_MARGIN = 4  # LR pixels a bicubic block reads beyond its own: the MATLAB cubic reaches 2 (+ rounding)

class Upscaler:
    """A generator prepared once for inference, applied to one image at a time.

    The model is copied (and optimised for inference when ``optimize``), so the caller's model
    is never changed; build a new Upscaler after training it further. ``device`` (a string or
    ``torch.device``) runs the copy there; None keeps it where the model's parameters are. Images
    are moved to that device tile by tile and come back on their own (numpy and PIL: the host).
    ``optimize`` and ``channels_last`` left as None are chosen where they were measured to pay: on
    the CPU, not on CUDA (docs/performance.md).

    Raises:
        ArgumentError: an unknown ``precision``, or one the model does not run in (``model.precisions``); a ``device`` torch does not know or has not got
            here; a model that takes other than 1 or 3 channels, or gives other than it takes.
    """

    def __init__(self, model: torch.nn.Module, *, tile: int = 256, overlap: int = 32, batch_size: int = 1,
                 precision: Precision = "fp32", channels_last: bool | None = None, optimize: bool | None = None,
                 device: str | torch.device | None = None):
        if precision not in DTYPES:
            raise ArgumentError(f"precision must be one of {', '.join(DTYPES)}, not {precision!r}")
        supported = getattr(model, "precisions", tuple(DTYPES))
        if precision not in supported:
            raise ArgumentError(f"{describe(model)} does not run in {precision} (it runs in {', '.join(supported)}): "
                                f"choose one of those (--precision)")
        self.scale = int(model.scale)
        self.channels = model_channels(model)
        self.tile, self.overlap, self.batch_size = tile, overlap, batch_size
        self.device = _device_of(model) if device is None else checked_device(device)
        self.precision = precision
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
        self.model = ready.to(self.device, self.dtype)

    def __call__(self, image: Any, on_progress: Callable[[int], None] | None = None) -> Any:
        """Super-resolve one image (or a batch tensor); ``on_progress(n)`` hears of every ``n`` tiles done.

        Raises:
            TypeError: not a PIL image, numpy array or tensor.
            ArgumentError: a tensor that is not float, an array other than uint8, uint16 or float, a
                shape or channel count that is no image, float values outside [0, 1] or inf/NaN.
            InferenceError: the model's output holds inf or NaN.
        """
        if isinstance(image, torch.Tensor):
            return self._tensor(image, on_progress)
        if isinstance(image, np.ndarray):
            return self._array(image, on_progress)
        from PIL import Image

        if isinstance(image, Image.Image):
            if image.mode not in _PIL_MODES:
                image = image.convert("RGBA" if image.has_transparency_data else "RGB")
            return Image.fromarray(self._array(np.asarray(image), on_progress))
        raise TypeError(f"upscale takes a PIL image, a numpy array or a tensor, not {type(image).__name__}")

    def tiles_for(self, height: int, width: int) -> int:
        """How many tiles an image of this size is cut into (for progress bars)."""
        return len(plan_tiles(height, width, self.tile, self.overlap))

    def _tensor(self, image: torch.Tensor, on_progress: Callable[[int], None] | None) -> torch.Tensor:
        """(C, H, W) or (N, C, H, W) float -> float32 (…, C, sH, sW) on ``image``'s device."""
        if image.dim() not in (3, 4):
            raise ArgumentError(f"a tensor image must be (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise ArgumentError(f"a tensor image must be float in [0, 1], not {image.dtype} (divide a uint8 tensor by "
                            "255, or pass the numpy array)")
        batch = image if image.dim() == 4 else image[None]
        check_unit_range(batch)
        n, channels, height, width = batch.shape
        out = torch.empty(n, channels, height * self.scale, width * self.scale, device=image.device)
        for i in range(n):
            self._upscale(batch[i:i + 1], 1.0, _tensor_writer(out[i:i + 1]), on_progress)
        return out if image.dim() == 4 else out[0]

    def _array(self, array: np.ndarray, on_progress: Callable[[int], None] | None) -> np.ndarray:
        """(H, W) or (H, W, C) uint8, uint16 or float -> the same dtype and layout, ``scale`` times larger."""
        if array.ndim not in (2, 3):
            raise ArgumentError(f"an image array must be (H, W) or (H, W, C), got shape {array.shape}")
        if array.dtype == np.uint8 or array.dtype == np.uint16:
            top = float(np.iinfo(array.dtype).max)
        elif np.issubdtype(array.dtype, np.floating):
            top = 1.0
        else:
            raise ArgumentError(f"image arrays must be uint8, uint16 or float in [0, 1], not {array.dtype}")
        lr = _host_tensor(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1)[None]  # a view
        if top == 1.0:
            check_unit_range(lr)
        height, width = array.shape[:2]
        out = np.empty((height * self.scale, width * self.scale, *array.shape[2:]), dtype=array.dtype)
        self._upscale(lr, top, _array_writer(out), on_progress)
        return out

    def _upscale(self, lr: torch.Tensor, top: float, write: Write, on_progress: Callable[[int], None] | None) -> None:
        """Upscale ``lr`` (1, C, H, W) with values in [0, ``top``] into ``write``, band by band."""
        layout = layout_for(lr.shape[1], self.channels)

        def run(windows: torch.Tensor) -> torch.Tensor:
            sr = self._run(to_model(colour_of(_as_float(windows, top, self.device), layout), layout))
            self._check(sr)
            # premultiplied colour keeps its overshoot, as the alpha it is divided by does (no halo)
            return sr.clamp(0, None if layout.alpha else 1)

        def finish(rows: slice, block: torch.Tensor) -> None:
            step = _CHUNK_ROWS * self.scale
            for start in range(rows.start, rows.stop, step):
                chunk = slice(start, min(start + step, rows.stop))
                write(chunk, self._finish(block[:, :, chunk.start - rows.start:chunk.stop - rows.start], chunk,
                                          lr, top, layout))

        upscale_tiled(run, lr, self.scale, self.tile, self.overlap, self.batch_size, on_progress, write=finish,
                      check=None)  # run checks each output itself, before clamping hides an inf

    def _run(self, lr: torch.Tensor) -> torch.Tensor:
        """The model on a batch of windows (N, in_channels, h, w): float32, not clamped, not yet checked."""
        lr = lr.to(self.device, self.dtype)
        if self.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(lr).float()

    def _check(self, sr: torch.Tensor) -> None:
        """Raises InferenceError saying what to change (the precision, or the model) when ``sr`` holds inf/NaN."""
        if not all_finite(sr):
            raise InferenceError(self._non_finite_message(sr))

    def _finish(self, block: torch.Tensor, rows: slice, lr: torch.Tensor, top: float, layout: Layout) -> torch.Tensor:
        """Blended model output rows (1, model channels, n, sW) -> the image's channels (1, C, n, sW)."""
        if layout.mode == "grey3":
            block = block.mean(dim=1, keepdim=True)
        if layout.mode == "luma" or layout.alpha:
            side = _bicubic_rows(lambda x: side_planes(x, layout), lr, top, rows, self.scale, block.device)
            if layout.mode == "luma":
                block = ycbcr_to_rgb(torch.cat([block, side[:, :2]], dim=1))
            if layout.alpha:  # divided by the alpha as resized, overshoot included, so flat colour stays flat
                alpha = side[:, -1:]
                block = torch.cat([unpremultiply(block, alpha), alpha.clamp(0, 1)], dim=1)
        return block

    def _non_finite_message(self, sr: torch.Tensor) -> str:
        bad = int((~torch.isfinite(sr)).sum())
        found = f"the model's output has {bad} non-finite value(s) (inf/NaN) in {self.precision}"
        if self.precision == "fp16":
            return (f"{found}: its activations overflowed fp16 (largest value 65504) or became NaN; nothing was "
                    "written. Use precision bf16 (--precision bf16: fp32's range at fp16's cost) or fp32")
        if self.precision == "bf16":
            return (f"{found}: its activations became inf/NaN; nothing was written. Use precision fp32 "
                    "(--precision fp32); if that fails too, the model's weights are broken")
        broken = sum(1 for p in self.model.parameters() if not bool(torch.isfinite(p).all()))
        why = (f"the model's weights are broken ({broken} of its parameter tensors hold inf/NaN)" if broken
               else "its weights are finite, but its activations overflow float32 or turn NaN: the model is broken")
        return f"{found}: {why}, e.g. saved from a training run that diverged; nothing was written"


def upscale(model: torch.nn.Module, image: Any, *, tile: int = 256, overlap: int = 32, batch_size: int = 1,
            precision: Precision = "fp32", channels_last: bool | None = None, optimize: bool | None = None,
            device: str | torch.device | None = None) -> Any:
    """Super-resolve ``image``: a PIL image, a numpy array, or a float tensor in [0, 1], (C, H, W) or (N, C, H, W).

    ``tile`` and ``overlap`` are in LR pixels (see :mod:`srframe.infer.tiles`); the result has
    the input's type, dtype, channel layout and device. ``device`` runs the model there (None: where
    its parameters are). The model is prepared for inference once and prepared again only when its
    parameters change (e.g. after a training step) or it is asked to run elsewhere. The rules for
    channels, alpha, memory and inf/NaN outputs are the module's; errors are :class:`Upscaler`'s.
    """
    settings = (precision, channels_last, optimize)
    target = _device_of(model) if device is None else checked_device(device)
    stamp = _state_stamp(model)
    stamp = None if stamp is None else (target, stamp)
    cached = _prepared.get(model, {}).get(settings)
    if cached is None or stamp is None or cached[0] != stamp:
        cached = stamp, Upscaler(model, precision=precision, channels_last=channels_last, optimize=optimize,
                                 device=target)
        _prepared.setdefault(model, {})[settings] = cached
    upscaler = cached[1]
    upscaler.tile, upscaler.overlap, upscaler.batch_size = tile, overlap, batch_size
    return upscaler(image)


# model -> {(precision, channels_last, optimize): ((device, state stamp), Upscaler)}
_prepared: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple, tuple[tuple, Upscaler]]] = weakref.WeakKeyDictionary()


def _state_stamp(model: torch.nn.Module) -> tuple | None:
    """Changes whenever a parameter or buffer is replaced or modified in place (tensor version counters);
    None for inference tensors, which count no versions."""
    tensors = (*model.parameters(), *model.buffers())
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((id(t), t._version) for t in tensors)


def _device_of(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters (or buffers) are; the CPU for a model that has none."""
    tensor = next(iter((*model.parameters(), *model.buffers())), None)
    return torch.device("cpu") if tensor is None else tensor.device


def checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device that torch has here and upscaling can run on (cpu, cuda, mps), or
    ArgumentError naming it and what would work."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ArgumentError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                            f"not {device!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ArgumentError(f"device {str(device)!r}: torch finds no CUDA GPU here "
                                "(torch.cuda.is_available() is False); use device 'cpu'")
        if device.index is not None and device.index >= count:
            raise ArgumentError(f"device {str(device)!r}: there are {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ArgumentError("device 'mps': this torch has no usable MPS (Apple GPU) here; use device 'cpu'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ArgumentError(f"device {str(device)!r}: upscaling runs on 'cpu', 'cuda' (or 'cuda:N') or 'mps'")
    return device


def _host_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory, or of a native, writable copy where torch cannot share it."""
    if not (array.flags.writeable and array.dtype.isnative and all(s >= 0 for s in array.strides)):
        array = np.array(array, dtype=array.dtype.newbyteorder("="))
    return torch.from_numpy(array)


def _as_float(x: torch.Tensor, top: float, device: torch.device) -> torch.Tensor:
    """(N, C, h, w) in [0, ``top``], any dtype -> float32 in [0, 1] on ``device`` (moved before converting)."""
    x = x.to(device).float()
    return x / top if top != 1.0 else x


def _bicubic_rows(planes_of: Callable[[torch.Tensor], torch.Tensor], lr: torch.Tensor, top: float, rows: slice,
                  scale: int, device: torch.device) -> torch.Tensor:
    """HR ``rows`` of the MATLAB bicubic (not clamped) of ``planes_of(lr)``, made block by block on ``device``.

    ``lr`` (1, C, H, W) in [0, ``top``]; ``rows`` starts at a multiple of ``scale``. Each block reads
    ``_MARGIN`` LR pixels beyond its own, so it equals the same rows and columns of the whole image's
    bicubic (to float rounding) with small weight matrices, whatever the image's size.
    """
    height, width = lr.shape[-2:]
    first, last = rows.start // scale, math.ceil(rows.stop / scale)
    top_in, bottom_in = max(0, first - _MARGIN), min(height, last + _MARGIN)
    blocks = []
    for left in range(0, width, _BICUBIC_COLUMNS):
        right = min(width, left + _BICUBIC_COLUMNS)
        left_in, right_in = max(0, left - _MARGIN), min(width, right + _MARGIN)
        planes = planes_of(_as_float(lr[..., top_in:bottom_in, left_in:right_in], top, device))
        resized = imresize(planes, scale=scale)
        blocks.append(resized[..., rows.start - top_in * scale:rows.stop - top_in * scale,
                              (left - left_in) * scale:(right - left_in) * scale])
    return torch.cat(blocks, dim=-1)


def _tensor_writer(out: torch.Tensor) -> Write:
    """Writes finished rows (1, C, n, sW) into ``out`` (1, C, sH, sW), moving them to its device."""
    def write(rows: slice, block: torch.Tensor) -> None:
        out[:, :, rows] = block.to(out.device)

    return write


def _array_writer(out: np.ndarray) -> Write:
    """Writes finished rows (1, C, n, sW) in [0, 1] into ``out`` (sH, sW[, C]), rounded for integer dtypes."""
    integer = out.dtype in (np.uint8, np.uint16)
    top = np.iinfo(out.dtype).max if integer else None

    def write(rows: slice, block: torch.Tensor) -> None:
        values = block[0].permute(1, 2, 0).cpu().numpy()
        if out.ndim == 2:
            values = values[..., 0]
        out[rows] = np.clip(np.rint(values * top), 0, top).astype(out.dtype) if integer else values

    return write
