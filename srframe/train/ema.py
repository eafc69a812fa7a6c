"""An exponential moving average of the generator's weights (timm's ``ModelEmaV3``).

With ``[train] ema_decay > 0`` the average is updated after every generator update; validation,
each stage's saved generator and the run's final generator use the averaged weights (the
checkpoints keep both, as ``generator.safetensors`` and ``generator_ema.safetensors``). Each
stage starts a new average from the generator it starts with.
"""

from __future__ import annotations

from torch import nn


class GeneratorEMA:
    """The averaged copy (``module``) of a generator, updated with ``update(generator)``."""

    def __init__(self, generator: nn.Module, decay: float):
        from timm.utils import ModelEmaV3

        self.average = ModelEmaV3(generator, decay=decay)  # a deep copy: it keeps srframe_built_from too

    @property
    def module(self) -> nn.Module:
        return self.average.module

    def update(self, generator: nn.Module) -> None:
        self.average.update(generator)
