"""The SRGAN discriminator of Ledig et al. (CVPR 2017), Figure 4.

Eight 3x3 convolutions (64, 64, 128, 128, 256, 256, 512, 512 maps; stride 2 on the even
layers, where the maps stay the same), batch norm after all but the first, LeakyReLU(0.2),
then dense 1024, LeakyReLU, dense 1. The paper feeds 96x96 crops, which reach the dense
layers as 6x6x512. To accept any crop size, an adaptive average pool brings the maps to
6x6 first: for 96x96 input it is the identity, so the paper's network is unchanged.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from srframe.interfaces import Discriminator
from srframe.schema import Range

POOLED = 6  # spatial size the dense layers see (96 / 2^4 in the paper)


class SRGANDiscriminator(Discriminator):
    """SRGAN's VGG-style discriminator; returns one logit per image."""

    def __init__(self, in_channels: Annotated[int, Range(min=1)] = 3, channels: Annotated[int, Range(min=1)] = 64):
        super().__init__()
        layers: list[nn.Module] = []
        maps_in = in_channels
        for i in range(8):
            maps = channels * 2 ** (i // 2)
            stride = 2 if i % 2 else 1
            layers.append(nn.Conv2d(maps_in, maps, 3, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(maps))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            maps_in = maps
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(POOLED)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(maps_in * POOLED * POOLED, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(img))).squeeze(1)
