"""How an image's channels reach a model and come back (the rules of :mod:`srframe.infer.upscale`).

- A grey image goes to a 1-channel model as it is, and to an RGB model as three equal channels.
- An RGB image goes to a 1-channel model as the Y of MATLAB's ``rgb2ycbcr`` (the SRCNN/VDSR
  convention, scaled to [0, 1]); Cb and Cr are upscaled with the MATLAB bicubic instead.
- Colour goes to the model premultiplied by alpha, and is divided by the upscaled alpha after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ArgumentError
from ..eval.metrics import Y_WEIGHTS

# MATLAB rgb2ycbcr for RGB in [0, 1]: (Y, Cb, Cr) = (OFFSET + YCBCR @ RGB) / 255, Y in [16, 235] / 255
_YCBCR = (Y_WEIGHTS, (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))
_YCBCR_OFFSET = (16.0, 128.0, 128.0)


def model_channels(model: torch.nn.Module) -> int:
    """The channels the model takes and gives (1 or 3), from ``in_channels``/``out_channels`` (3 when absent)."""
    takes = getattr(model, "in_channels", 3)
    gives = getattr(model, "out_channels", takes)
    name = type(model).__name__
    if takes not in (1, 3):
        raise ArgumentError(f"{name} takes {takes} input channels; images can be upscaled with models that take 1 "
                            "(grey, or the Y of YCbCr) or 3 (RGB)")
    if gives != takes:
        raise ArgumentError(f"{name} takes {takes} channel(s) but gives {gives}; images can be upscaled with models "
                            "that give as many channels as they take (1 or 3)")
    return takes


@dataclass(frozen=True)
class Layout:
    """How an image's channels reach the model: ``mode`` is "same" (grey to a 1-channel model, RGB to an
    RGB one), "grey3" (grey as three equal channels) or "luma" (the Y of an RGB image)."""

    channels: int  # the image's: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
    colour: int  # the image's colour channels, 1 or 3
    alpha: bool
    mode: Literal["same", "grey3", "luma"]


def layout_for(channels: int, model_channels: int) -> Layout:
    if channels not in (1, 2, 3, 4):
        raise ArgumentError(f"images with {channels} channels are not supported: expected 1 to 4 (grey, grey + "
                            "alpha, RGB, RGBA)")
    colour = 3 if channels >= 3 else 1
    mode = "same" if colour == model_channels else "grey3" if colour == 1 else "luma"
    return Layout(channels, colour, channels in (2, 4), mode)


def colour_of(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """(N, C, h, w) in [0, 1] -> (N, colour, h, w), premultiplied by alpha when there is one."""
    colour = x[:, :layout.colour]
    return colour * x[:, -1:] if layout.alpha else colour


def to_model(colour: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Colour (N, 1 or 3, h, w) -> what the model takes: as it is, three equal channels, or Y."""
    if layout.mode == "grey3":
        return colour.expand(-1, 3, -1, -1)
    if layout.mode == "luma":
        return rgb_to_ycbcr(colour)[:, :1]
    return colour


def side_planes(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The LR planes upscaled with the bicubic rather than the model: Cb, Cr (for "luma") and alpha."""
    planes = [rgb_to_ycbcr(colour_of(x, layout))[:, 1:]] if layout.mode == "luma" else []
    return torch.cat(planes + ([x[:, -1:]] if layout.alpha else []), dim=1)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr``: (N, 3, h, w) RGB in [0, 1] -> YCbCr scaled to [0, 1] (Y in [16, 235] / 255)."""
    matrix = torch.tensor(_YCBCR, dtype=rgb.dtype, device=rgb.device) / 255
    offset = torch.tensor(_YCBCR_OFFSET, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1) / 255
    return torch.einsum("ij,njhw->nihw", matrix, rgb) + offset


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """MATLAB ``ycbcr2rgb``, the inverse of :func:`rgb_to_ycbcr`: (N, 3, h, w) -> RGB clamped to [0, 1]."""
    inverse = torch.linalg.inv(torch.tensor(_YCBCR, dtype=torch.float64) / 255).to(ycbcr.device, ycbcr.dtype)
    offset = torch.tensor(_YCBCR_OFFSET, dtype=ycbcr.dtype, device=ycbcr.device).view(3, 1, 1) / 255
    return torch.einsum("ij,njhw->nihw", inverse, ycbcr - offset).clamp_(0, 1)


TRANSPARENT = 1 / 512  # alpha below half an 8-bit level: fully transparent, colour 0


def unpremultiply(colour: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Premultiplied colour / alpha (both as resized, overshoot included), clamped to [0, 1]; 0 where alpha
    is below :data:`TRANSPARENT` (fully transparent once written, even at 8 bits)."""
    return torch.where(alpha >= TRANSPARENT, colour / alpha, 0.0).clamp_(0, 1)
