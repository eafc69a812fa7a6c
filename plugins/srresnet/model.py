"""The SRResNet generator of Ledig et al., "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network" (CVPR 2017), Figure 4.

The defaults are the paper's. ``norm = "none"`` with ``skip = "bicubic"`` gives the no-BN
MSRResNet family (Wang et al., ESRGAN), which trains much faster on small budgets.
``upsample = "nearest"`` replaces the sub-pixel convolutions with nearest-neighbour resizing
followed by a convolution (Odena et al., "Deconvolution and Checkerboard Artifacts", 2016), as
ESRGAN's RRDBNet upsamples: the same number of multiply-adds, and no per-sub-pixel pattern for a
perceptual loss to pull into a grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from srframe import ops
from srframe.interfaces import Generator
from srframe.schema import Range, enforce, show

Norm = Literal["batch", "none"]
Activation = Literal["prelu", "relu", "leaky_relu"]
Skip = Literal["none", "bicubic", "bilinear"]
Upsampler = Literal["subpixel", "nearest"]
Scale = Literal[2, 3, 4, 8]  # one x3 or log2(scale) x2 sub-pixel upsamplers


def _activation(kind: Activation) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU()
    return nn.ReLU(inplace=True) if kind == "relu" else nn.LeakyReLU(0.2, inplace=True)


def _conv_norm(channels: int, norm: Norm) -> list[nn.Module]:
    """A 3x3 conv, followed by BN when ``norm == "batch"`` (then the conv needs no bias)."""
    batch = norm == "batch"
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=not batch)
    return [conv, nn.BatchNorm2d(channels)] if batch else [conv]


class ResidualBlock(nn.Module):
    """3x3 conv, BN, activation, 3x3 conv, BN, plus the identity."""

    def __init__(self, channels: int, norm: Norm = "batch", activation: Activation = "prelu"):
        super().__init__()
        self.body = nn.Sequential(*_conv_norm(channels, norm), _activation(activation),
                                  *_conv_norm(channels, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """3x3 conv to ``factor``^2 times the maps, sub-pixel shuffle by ``factor``, activation."""

    def __init__(self, channels: int, factor: int, activation: Activation):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(channels, channels * factor**2, 3, padding=1)
        self.act = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if isinstance(self.act, nn.PReLU):
            return ops.pixel_shuffle_prelu(x, self.act.weight, self.factor)
        return self.act(F.pixel_shuffle(x, self.factor))


class ResizeConv(nn.Module):
    """Nearest-neighbour resize by ``factor``, 3x3 conv, activation (resize-convolution)."""

    def __init__(self, channels: int, factor: int, activation: Activation):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest")))


class SRResNet(Generator):
    """SRResNet: 9x9 head, B residual blocks with a global skip, sub-pixel upsampling, 9x9 tail.

    ``upsample = "nearest"``: resize-convolution upsamplers instead (see the module's docstring).
    """

    def __init__(self, scale: Scale = 4, num_blocks: Annotated[int, Range(min=0)] = 16,
                 channels: Annotated[int, Range(min=1)] = 64, norm: Norm = "batch", activation: Activation = "prelu",
                 skip: Skip = "none", in_channels: Annotated[int, Range(min=1)] = 3,
                 out_channels: Annotated[int, Range(min=1)] = 3, upsample: Upsampler = "subpixel"):
        super().__init__()
        enforce(SRResNet, dict(scale=scale, skip=skip, in_channels=in_channels, out_channels=out_channels))
        self.scale, self.in_channels, self.out_channels, self.skip = scale, in_channels, out_channels, skip
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), _activation(activation))
        self.body = nn.Sequential(*(ResidualBlock(channels, norm, activation) for _ in range(num_blocks)),
                                  *_conv_norm(channels, norm))
        factors = [3] if scale == 3 else [2] * int(math.log2(scale))
        stage = Upsample if upsample == "subpixel" else ResizeConv
        self.upsample = nn.Sequential(*(stage(channels, f, activation) for f in factors))
        self.tail = nn.Conv2d(channels, out_channels, 9, padding=4)

    @staticmethod
    def check_params(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """The rules across parameters, run by ``srframe recipe check`` and by the constructor."""
        if params["scale"] not in get_args(Scale):
            yield "scale", f"SRResNet supports scale 2, 3, 4 or 8, not {params['scale']}"
        if params["skip"] != "none" and params["in_channels"] != params["out_channels"]:
            yield "skip", (f"skip = {show(params['skip'])} adds the upsampled input to the output, so in_channels "
                           f"({params['in_channels']}) must equal out_channels ({params['out_channels']})")

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        features = self.head(lr)
        sr = self.tail(self.upsample(features + self.body(features)))
        if self.skip != "none":
            sr = sr + F.interpolate(lr, scale_factor=self.scale, mode=self.skip, align_corners=False)
        return sr
