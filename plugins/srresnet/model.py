"""The SRResNet generator of Ledig et al., "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network" (CVPR 2017), Figure 4."""

from __future__ import annotations

import math

import torch
from torch import nn

from srframe.interfaces import Generator


class ResidualBlock(nn.Module):
    """3x3 conv, BN, PReLU, 3x3 conv, BN, plus the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsampler(channels: int, scale: int) -> nn.Sequential:
    """log2(scale) stages of (3x3 conv to 4x the maps, x2 sub-pixel shuffle, PReLU); one x3 stage for scale 3."""
    factors = [3] if scale == 3 else [2] * int(math.log2(scale))
    layers: list[nn.Module] = []
    for factor in factors:
        layers += [nn.Conv2d(channels, channels * factor**2, 3, padding=1), nn.PixelShuffle(factor), nn.PReLU()]
    return nn.Sequential(*layers)


class SRResNet(Generator):
    """SRResNet: 9x9 head, B residual blocks with a global skip, sub-pixel upsampling, 9x9 tail."""

    def __init__(self, scale: int = 4, num_blocks: int = 16, channels: int = 64,
                 in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        if scale not in (2, 3, 4, 8):
            raise ValueError(f"SRResNet supports scale 2, 3, 4 or 8, not {scale}")
        self.scale, self.in_channels, self.out_channels = scale, in_channels, out_channels
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(
            *(ResidualBlock(channels) for _ in range(num_blocks)),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.upsample = _upsampler(channels, scale)
        self.tail = nn.Conv2d(channels, out_channels, 9, padding=4)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        features = self.head(lr)
        return self.tail(self.upsample(features + self.body(features)))
