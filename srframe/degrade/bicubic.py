"""The ``bicubic`` degradation: MATLAB-exact bicubic downscaling of a float batch on its device."""

from __future__ import annotations

from typing import Annotated

import torch

from ..errors import DataError
from ..interfaces import Degradation
from ..schema import Range
from .imresize import imresize


class Bicubic(Degradation):
    """MATLAB-compatible bicubic downscaling by ``scale`` (the field's standard LR images)."""

    def __init__(self, scale: Annotated[int, Range(min=1)]):
        self.scale = scale

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``hr`` (N, C, H, W) floats in [0, 1], H and W multiples of ``scale`` -> LR in [0, 1].

        Deterministic: ``generator`` is accepted for the interface and not used. Values are
        clamped to [0, 1] after each 1-D pass, so the result is within one grey level of
        MATLAB's uint8 result.
        """
        height, width = hr.shape[-2:]
        if height % self.scale or width % self.scale:
            raise DataError(f"bicubic degradation: an HR batch of {height}x{width} pixels is not a multiple of "
                            f"the scale {self.scale}; crop HR images to a multiple of the scale first")
        return imresize(hr, size=(height // self.scale, width // self.scale), clamp=True)

    def __repr__(self) -> str:
        return f"Bicubic(scale={self.scale})"
