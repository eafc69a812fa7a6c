"""Pixel losses between the super-resolved and the HR image."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F

from srframe.interfaces import Loss, LossContext
from srframe.schema import Range


class MSELoss(Loss):
    """Mean squared error, the paper's pixel loss (SRResNet is trained with it)."""

    def forward(self, ctx: LossContext) -> torch.Tensor:
        return F.mse_loss(ctx.sr, ctx.hr)


class L1Loss(Loss):
    """Mean absolute error."""

    def forward(self, ctx: LossContext) -> torch.Tensor:
        return F.l1_loss(ctx.sr, ctx.hr)


class CharbonnierLoss(Loss):
    """mean(sqrt((sr - hr)^2 + eps^2)): a differentiable L1 (Lai et al., LapSRN)."""

    def __init__(self, eps: Annotated[float, Range(above=0)] = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, ctx: LossContext) -> torch.Tensor:
        return torch.sqrt((ctx.sr - ctx.hr) ** 2 + self.eps**2).mean()
