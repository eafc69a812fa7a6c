"""The training feed: HR patches from ``[data.train]``, moved to the device and degraded there.

Each process's loader draws its share of the recipe's global batch (see
:class:`srframe.data.SeededSampler`); the recipe's degradation then makes the LR batch on the
training device from a seeded ``torch.Generator`` (one per process), so the CPU workers only
decode and crop. Paired datasets bring their own LR patches and skip the degradation.

A generator of one input channel (``in_channels = 1``) is trained on luminance, the SRCNN/VDSR
convention: RGB patches become the Y of MATLAB's ``rgb2ycbcr`` (16-235, divided by 255) before the
LR image is made from them, the same Y :func:`srframe.upscale` gives such a model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..data import loader_from_spec, to_float
from ..errors import RecipeError
from ..eval.metrics import rgb_to_y
from .distributed import Processes


class TrainingFeed:
    """Micro-batches ``(lr, hr)`` as float tensors in [0, 1] on the device, resumable."""

    def __init__(self, recipe: Any, processes: Processes, registry: Any, channels_last: bool = False,
                 channels: int = 3):
        spec = recipe.spec
        if spec.data is None:
            raise RecipeError(f"recipe {recipe.path} has no [data.train] section: training needs HR images, e.g.\n"
                              '  [data.train]\n  kind = "image_folder"\n  root = "path/to/DIV2K_train_HR"')
        self.device, self.channels_last, self.channels = processes.device, channels_last, channels
        self.loader = loader_from_spec(spec.data.train, seed=spec.seed, registry=registry, rank=processes.rank,
                                       world_size=processes.world_size)
        self.degradation = spec.degradation.build(registry)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(int(np.random.SeedSequence([spec.seed, processes.rank]).generate_state(1)[0]))
        self._batches: Iterator[dict[str, Any]] = self.loader.endless()

    def next(self, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The next ``count`` micro-batches (gradient accumulation takes several per step)."""
        return [self._prepare(next(self._batches)) for _ in range(count)]

    def _prepare(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        hr = self._in_channels(to_float(batch["hr"], self.device))
        if "lr" in batch:
            lr = self._in_channels(to_float(batch["lr"], self.device))
        else:
            lr = self.degradation(hr, self.generator)
        if self.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        return lr, hr

    def _in_channels(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB as the generator takes it: unchanged, or its Y in [16, 235] / 255 for one channel."""
        if self.channels == 1 and images.shape[1] == 3:
            return rgb_to_y(images) / 255
        return images

    def state_dict(self) -> dict[str, Any]:
        return {"loader": self.loader.state_dict(), "degradation": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state["loader"])
        self.generator.set_state(state["degradation"])
        self._batches = self.loader.endless()
