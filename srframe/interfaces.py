"""The interfaces components implement: Generator, Discriminator, Loss, Degradation, and the GAN
contract (AdversarialLoss with its DiscriminatorContext).

Images are float tensors in [0, 1], NCHW. ``srframe.build`` checks that a generator,
discriminator, loss or degradation factory returns an instance of the matching interface.
``srframe.testing`` checks a component against these contracts on tiny tensors.

Every interface that is an ``nn.Module`` has an explicit ``__init__(self)`` with no
parameters, so a component that declares no ``__init__`` of its own has a closed, empty
schema: a misspelt recipe key is an error, not an argument passed on.
"""

from __future__ import annotations

import abc
import functools
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .errors import SrframeError


class Generator(nn.Module):
    """Maps a low-resolution batch to a super-resolved one ``scale`` times larger.

    ``forward(lr)``: (N, in_channels, h, w) in [0, 1] -> (N, out_channels, h * scale, w * scale),
    nominally in [0, 1] (not clamped: losses see the raw output; inference clamps).

    ``precisions`` names the inference precisions the network runs correctly in; inference refuses
    the others (``srframe upscale --precision``) with an error naming the model.
    """

    scale: int
    in_channels: int = 3
    out_channels: int = 3
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")

    def __init__(self) -> None:
        super().__init__()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare_for_export(self) -> None:
        """Make this generator (a copy ``srframe export`` made, in eval mode) traceable by ``torch.export``:
        e.g. fold weights that ``forward`` would recompute at every call into fixed ones. Outputs must not
        change. The default does nothing."""


def describe(generator: nn.Module) -> str:
    """How messages name a generator: its registered name and class, and the architecture a wrapper
    runs when it says (``architecture``, as spandrel's generators do), e.g.
    ``generator 'swinir' (SpandrelGenerator of SwinIR)``."""
    built_from = getattr(generator, "srframe_built_from", None)
    name = type(generator).__name__
    architecture = getattr(generator, "architecture", None)
    if isinstance(architecture, str) and architecture != name:
        name = f"{name} of {architecture}"
    return f"generator {built_from.name!r} ({name})" if built_from is not None else f"generator {name}"


class Discriminator(nn.Module):
    """Scores images as real or generated.

    ``forward(img)``: (N, C, H, W) in [0, 1] -> logits with N as their first dimension, (N,) or
    (N, ...) for a patch discriminator. Accepts any crop size the recipe uses.
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, img: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def regularization(self, ctx: DiscriminatorContext) -> torch.Tensor | None:
        """An extra term for the discriminator's own update (e.g. an R1 gradient penalty), or None.

        Added, unweighted, to the discriminator objective of the stage's adversarial losses.
        The default adds nothing.
        """
        return None


def _require_discriminator(discriminator: Discriminator | None) -> Discriminator:
    if discriminator is None:
        raise SrframeError("this loss needs the stage's discriminator, but the LossContext has none: "
                           "add discriminator = { kind = \"...\" } to the stage (or pass discriminator= when "
                           "calling the loss from Python)")
    return discriminator


@dataclass(eq=False)
class LossContext:
    """What a loss may look at in one generator step.

    ``sr`` (N, C, H, W) carries gradients to the generator; ``hr`` is the target, ``lr`` the
    generator's input (N, C, H / scale, W / scale). ``discriminator`` is the stage's (None in
    a stage without one); its parameters are frozen during the generator step.
    ``fake_logits`` and ``real_logits`` are computed on first use and shared by every loss of
    the step, so a stage with several adversarial terms runs the discriminator once per input.
    """

    sr: torch.Tensor
    hr: torch.Tensor
    lr: torch.Tensor | None = None
    discriminator: Discriminator | None = None
    step: int = 0

    @functools.cached_property
    def fake_logits(self) -> torch.Tensor:
        """D(sr), with gradients flowing back to the generator."""
        return _require_discriminator(self.discriminator)(self.sr)

    @functools.cached_property
    def real_logits(self) -> torch.Tensor:
        """D(hr), detached: what relativistic losses compare the fake logits with."""
        with torch.no_grad():
            return _require_discriminator(self.discriminator)(self.hr)


@dataclass(eq=False)
class DiscriminatorContext:
    """What the discriminator's objective may look at in one discriminator step.

    ``real`` are the HR images, ``fake`` the generator's output of the same step, detached
    (both (N, C, H, W) in [0, 1]). ``real_logits`` and ``fake_logits`` are computed on first
    use and shared by every adversarial loss and the discriminator's regularization. A term
    that needs gradients with respect to the images (R1) runs the discriminator itself on
    ``real.detach().requires_grad_()``.
    """

    real: torch.Tensor
    fake: torch.Tensor
    discriminator: Discriminator
    step: int = 0

    @functools.cached_property
    def real_logits(self) -> torch.Tensor:
        return self.discriminator(self.real)

    @functools.cached_property
    def fake_logits(self) -> torch.Tensor:
        return self.discriminator(self.fake)


class Loss(nn.Module):
    """A training objective of the generator: ``forward(ctx) -> scalar tensor``.

    Its weight lives in the recipe (``{ kind = "...", weight = 0.1 }``), not in the loss. A loss
    that sets ``needs_discriminator = True`` reads ``ctx.discriminator`` (or ``ctx.fake_logits``)
    and may only be used in stages that have a discriminator.
    """

    needs_discriminator: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()

    def forward(self, ctx: LossContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class AdversarialLoss(Loss):
    """The GAN contract: a loss that also defines what its discriminator is trained on.

    - ``forward(ctx)`` is the generator's side, e.g. ``-log D(G(lr))`` from ``ctx.fake_logits``
      (and ``ctx.real_logits`` for relativistic losses). Weighted by the recipe, like every loss.
    - ``discriminator_loss(ctx)`` is the discriminator's side, from ``ctx.real_logits`` and
      ``ctx.fake_logits`` (or the images). The engine minimises the unweighted sum of the
      stage's adversarial losses' ``discriminator_loss`` plus ``discriminator.regularization``.

    A stage with a discriminator needs at least one AdversarialLoss, or nothing would train it.
    """

    needs_discriminator: ClassVar[bool] = True

    def discriminator_loss(self, ctx: DiscriminatorContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Degradation(abc.ABC):
    """Turns a batch of HR images into LR images on the same device.

    Deterministic for a given ``generator`` state, so a seeded run is reproducible.
    """

    scale: int

    @abc.abstractmethod
    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``hr`` (N, C, H, W) in [0, 1] -> LR (N, C, H / scale, W / scale) in [0, 1]."""
