"""A generator step and a discriminator step, as plain functions returning detached loss terms.

A pixel stage calls :func:`generator_step`; an adversarial stage calls it, then
:func:`discriminator_step` on the same batch with the generator's output detached, which is
BasicSR's order (its ``optimize_parameters``): the discriminator's gradients are the same
whichever of the two updates comes first. Over several micro-batches (gradient accumulation)
the gradients add up, each micro-batch's loss divided by their number, and the optimiser steps
once; under DDP only the last micro-batch synchronises gradients.

No value leaves the device here: the engine reads every term once per step, to log them and to
stop on a NaN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from ..interfaces import DiscriminatorContext, LossContext
from .stage import Stage

Batch = tuple[torch.Tensor, torch.Tensor]  # (lr, hr), floats in [0, 1] on the device


def generator_step(stage: Stage, batches: Sequence[Batch], step: int, update: bool) -> tuple[dict[str, torch.Tensor],
                                                                                            list[torch.Tensor]]:
    """Run the generator on each micro-batch and, when ``update``, train it on the weighted losses.

    Returns the loss terms (means over the micro-batches, detached; ``total`` is the weighted
    sum) and each micro-batch's SR output, detached, for the discriminator step.
    """
    generator, precision = stage.generator, stage.precision
    discriminator = stage.discriminator.module if stage.discriminator is not None else None
    if discriminator is not None:
        discriminator.requires_grad_(False)  # the generator's losses must not train it
    terms: dict[str, torch.Tensor] = {}
    fakes = []
    for index, (lr, hr) in enumerate(batches):
        if not update:
            with torch.no_grad(), precision.autocast():
                fakes.append(generator.forward(lr).detach())
            continue
        with _sync_unless_last(generator.synced, index, len(batches)):
            with precision.autocast():
                sr = generator.forward(lr)
                ctx = LossContext(sr=sr, hr=hr, lr=lr, discriminator=discriminator, step=step)
                values = {term.name: term.loss(ctx) for term in stage.losses}
                total = sum(term.weight * values[term.name] for term in stage.losses)
            precision.backward(total / len(batches))
        _add(terms, {**values, "total": total}, len(batches))
        fakes.append(sr.detach())
    if update:
        _optimise(stage, stage.optimizer, generator.module)
        if stage.ema is not None:
            stage.ema.update(generator.module)
    return terms, fakes


def discriminator_step(stage: Stage, batches: Sequence[Batch], fakes: Sequence[torch.Tensor],
                       step: int) -> dict[str, torch.Tensor]:
    """Train the discriminator on the stage's adversarial objective, plus its own regularization.

    Terms: ``d_<loss>`` per adversarial loss, ``d_regularization`` when the discriminator has one,
    ``d_total``, and the mean logits ``d_real`` and ``d_fake``.
    """
    assert stage.discriminator is not None and stage.discriminator_optimizer is not None
    discriminator = stage.discriminator
    discriminator.module.requires_grad_(True)
    terms: dict[str, torch.Tensor] = {}
    for index, ((_, hr), fake) in enumerate(zip(batches, fakes)):
        with _sync_unless_last(discriminator.synced, index, len(batches)):
            with stage.precision.autocast():
                ctx = DiscriminatorContext(real=hr, fake=fake, discriminator=discriminator.forward, step=step)
                values = {f"d_{term.name}": term.loss.discriminator_loss(ctx) for term in stage.adversarial}
                regularization = discriminator.module.regularization(ctx)
                if regularization is not None:
                    values["d_regularization"] = regularization
                total = sum(values.values())
            stage.precision.backward(total / len(batches))
        _add(terms, {**values, "d_total": total, "d_real": ctx.real_logits.mean(), "d_fake": ctx.fake_logits.mean()},
             len(batches))
    _optimise(stage, stage.discriminator_optimizer, discriminator.module)
    return terms


def _optimise(stage: Stage, optimizer: torch.optim.Optimizer, module: nn.Module) -> None:
    """Clip (when asked) and apply the accumulated gradients, then clear them."""
    if stage.grad_clip > 0:
        stage.precision.unscale(optimizer)
        nn.utils.clip_grad_norm_(module.parameters(), stage.grad_clip)
    stage.precision.step(optimizer)
    optimizer.zero_grad(set_to_none=True)


def _add(terms: dict[str, torch.Tensor], values: dict[str, torch.Tensor], count: int) -> None:
    for name, value in values.items():
        value = value.detach().float() / count
        terms[name] = terms[name] + value if name in terms else value


def _sync_unless_last(module: nn.Module, index: int, count: int) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` for every micro-batch but the last, so gradients are all-reduced once per step."""
    if index < count - 1 and isinstance(module, nn.parallel.DistributedDataParallel):
        return module.no_sync()
    return contextlib.nullcontext()
