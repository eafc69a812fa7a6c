"""LPIPS (Zhang et al., CVPR 2018), v0.1 with the VGG16 backbone, as the ``lpips`` package computes it.

The backbone is torchvision's ImageNet VGG16 and the linear heads are those shipped in the
PyPI package ``lpips``; both are found by :mod:`srframe.weights`, never made up.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..weights import load_lpips_heads, vgg_features

# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's vgg16.features
TAPS = (3, 8, 15, 22, 29)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """Perceptual distance per image pair; inputs are float images in [0, 1], (N, 3, H, W)."""

    def __init__(self, vgg_weights: Path | None = None, heads: Path | None = None):
        super().__init__()
        self.features = vgg_features("vgg16", vgg_weights)[: TAPS[-1] + 1]
        state = load_lpips_heads(heads)
        for i in range(len(TAPS)):
            self.register_buffer(f"head{i}", state[f"lin{i}.model.1.weight"].float())
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        both = (torch.cat([x, y]) * 2 - 1 - self.shift) / self.scale
        distance = x.new_zeros(x.shape[0])
        head = 0
        for index, layer in enumerate(self.features):
            both = layer(both)
            if index in TAPS:
                fx, fy = _unit_channels(both).chunk(2)
                weighted = ((fx - fy) ** 2 * getattr(self, f"head{head}")).sum(dim=1)
                distance = distance + weighted.mean(dim=(1, 2))
                head += 1
        return distance


def _unit_channels(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
