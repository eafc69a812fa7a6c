"""The first-order and the Real-ESRGAN-style second-order degradation pipelines."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from srframe.errors import DataError
from srframe.interfaces import Degradation

from . import stages
from .draw import Draw
from .params import Blur, FinalResize, Jpeg, Noise, Resize, TargetResize

Size = tuple[int, int]


@dataclass(frozen=True)
class FirstOrder(Degradation):
    """blur -> resize to the LR size -> noise -> JPEG, then clamp (and round to 8-bit levels with ``quantize``)."""

    scale: int
    blur: Blur
    resize: TargetResize
    noise: Noise
    jpeg: Jpeg
    quantize: bool = True

    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        size = lr_size(hr, self.scale)
        draw = Draw(generator, hr.device)
        x = stages.blur(hr, self.blur, draw)
        x = stages.resize(x, size, self.resize.modes, draw)
        x = stages.add_noise(x, self.noise, draw)
        x = stages.jpeg(x, self.jpeg, draw)
        return stages.finish(x, self.quantize)


@dataclass(frozen=True)
class SecondOrder(Degradation):
    """Real-ESRGAN's (Wang et al., ICCVW 2021) second-order model: blur -> random resize -> noise -> JPEG, twice
    (the second resize relative to the LR size), then the final resize to the LR size with a sinc filter, before
    or after the last JPEG; clamp (and round to 8-bit levels with ``quantize``)."""

    scale: int
    blur: Blur
    resize: Resize
    noise: Noise
    jpeg: Jpeg
    blur2: Blur
    resize2: Resize
    noise2: Noise
    jpeg2: Jpeg
    final: FinalResize
    quantize: bool = True

    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        size = lr_size(hr, self.scale)
        draw = Draw(generator, hr.device)
        x = stages.blur(hr, self.blur, draw)
        x = stages.random_resize(x, (hr.shape[-2], hr.shape[-1]), self.resize, draw)
        x = stages.add_noise(x, self.noise, draw)
        x = stages.jpeg(x, self.jpeg, draw)
        x = stages.blur(x, self.blur2, draw)
        x = stages.random_resize(x, size, self.resize2, draw)
        x = stages.add_noise(x, self.noise2, draw)
        if bool(draw.bernoulli(self.final.resize_first_prob, 1)):
            x = stages.jpeg(self._final_resize(x, size, draw), self.jpeg2, draw)
        else:
            x = self._final_resize(stages.jpeg(x, self.jpeg2, draw), size, draw)
        return stages.finish(x, self.quantize)

    def _final_resize(self, x: torch.Tensor, size: Size, draw: Draw) -> torch.Tensor:
        x = stages.resize(x, size, self.final.modes, draw)
        return stages.blur(x, self.final.sinc, draw)


def lr_size(hr: torch.Tensor, scale: int) -> Size:
    """The LR size of an HR batch; its sides must be multiples of ``scale``."""
    if hr.ndim != 4 or not hr.is_floating_point():
        raise DataError(f"a degradation takes a float batch (N, C, H, W) in [0, 1]; got a {hr.dtype} tensor of "
                        f"shape {tuple(hr.shape)}")
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise DataError(f"HR size {height}x{width} is not a multiple of the scale {scale}: crop HR patches to a "
                        f"multiple of it (e.g. {height - height % scale}x{width - width % scale})")
    return height // scale, width // scale
