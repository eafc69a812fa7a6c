"""The interfaces components implement: Generator, Discriminator, Loss, Degradation.

Images are float tensors in [0, 1], NCHW. ``srframe.build`` checks that a generator,
discriminator, loss or degradation factory returns an instance of the matching interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


class Generator(nn.Module):
    """Maps a low-resolution batch to a super-resolved one ``scale`` times larger."""

    scale: int
    in_channels: int = 3
    out_channels: int = 3

    def forward(self, lr: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Discriminator(nn.Module):
    """Scores images as real or generated; returns logits. Accepts any crop size the recipe uses."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class LossContext:
    """What a loss may look at in one training step."""

    sr: torch.Tensor
    hr: torch.Tensor
    lr: torch.Tensor | None = None
    discriminator: Discriminator | None = None
    step: int = 0


class Loss(nn.Module):
    """A training objective. Its weight lives in the recipe, not in the loss.

    A loss that sets ``needs_discriminator = True`` may only be used in stages that train one.
    """

    needs_discriminator: ClassVar[bool] = False

    def forward(self, ctx: LossContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Degradation(abc.ABC):
    """Turns a batch of HR images into LR images on the same device.

    Deterministic for a given ``generator`` state, so a seeded run is reproducible.
    """

    scale: int

    @abc.abstractmethod
    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``hr`` (N, C, H, W) in [0, 1] -> LR (N, C, H / scale, W / scale)."""
