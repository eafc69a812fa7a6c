"""Adversarial losses: the generator's objective, and the matching discriminator objective.

Modes, with D's logits on generated images ``fake`` and on HR images ``real``:

- ``vanilla``: the paper's -log D(G(I_LR)) for G; binary cross-entropy for D.
- ``lsgan``: least squares (Mao et al., 2017).
- ``hinge``: -D(G) for G; hinge for D (Lim & Ye, 2017).
- ``relativistic``: relativistic average GAN, as in ESRGAN (Jolicoeur-Martineau, 2018).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from srframe.interfaces import AdversarialLoss, DiscriminatorContext, LossContext

Mode = Literal["vanilla", "lsgan", "hinge", "relativistic"]


def generator_loss(mode: Mode, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """G's loss from D's logits; ``real`` (logits on HR images) is needed by ``relativistic`` only."""
    if mode == "vanilla":
        return F.softplus(-fake).mean()  # -log(sigmoid(fake))
    if mode == "lsgan":
        return ((fake - 1) ** 2).mean()
    if mode == "hinge":
        return -fake.mean()
    if real is None:
        raise ValueError("the relativistic loss needs the discriminator's logits on real images")
    return (F.softplus(real - fake.mean()) + F.softplus(real.mean() - fake)).mean() / 2


def discriminator_loss(mode: Mode, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """D's loss from its logits on real (HR) and generated images."""
    if mode == "vanilla":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if mode == "lsgan":
        return ((real - 1) ** 2).mean() + (fake**2).mean()
    if mode == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return (F.softplus(-(real - fake.mean())) + F.softplus(fake - real.mean())).mean() / 2


class GANLoss(AdversarialLoss):
    """The adversarial loss in four modes; its ``discriminator_loss`` is the matching discriminator objective."""

    def __init__(self, mode: Mode = "vanilla"):
        super().__init__()
        self.mode = mode

    def forward(self, ctx: LossContext) -> torch.Tensor:
        real = ctx.real_logits if self.mode == "relativistic" else None
        return generator_loss(self.mode, ctx.fake_logits, real)

    def discriminator_loss(self, ctx: DiscriminatorContext) -> torch.Tensor:
        return discriminator_loss(self.mode, ctx.real_logits, ctx.fake_logits)
