"""The random choices of one degradation call, drawn from the caller's generator.

Per-sample parameters (probabilities, sigmas, qualities, kernel sizes) are drawn on the CPU
from the caller's generator and returned on the CPU; stages move them to the batch's device.
Per-pixel noise is drawn on the batch's device from a generator seeded by one draw from the
caller's, so a large noise field never crosses from host to device. Either way the result
depends only on the generator's state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Draw:
    """Random parameters and noise fields for one batch on ``device``."""

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.generator = generator
        self.device = device
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        self.field_generator = torch.Generator(device).manual_seed(seed)

    def uniform(self, bounds: Sequence[float], shape: int | tuple[int, ...]) -> torch.Tensor:
        """Floats uniform in ``[low, high]``."""
        low, high = bounds
        return low + (high - low) * self._rand(shape)

    def bernoulli(self, prob: float, n: int) -> torch.Tensor:
        """``n`` booleans, each true with probability ``prob``."""
        return self._rand(n) < prob

    def choice(self, weights: Sequence[float], n: int) -> torch.Tensor:
        """``n`` indices into ``weights``, drawn in proportion to them."""
        probs = torch.tensor(weights, dtype=torch.float64)
        cumulative = (probs / probs.sum()).cumsum(0)
        index = torch.searchsorted(cumulative, self._rand(n).double(), right=True)
        return index.clamp(max=len(weights) - 1)

    def odd(self, bounds: Sequence[int], n: int) -> torch.Tensor:
        """``n`` odd integers uniform in ``[low, high]`` (both odd)."""
        low, high = bounds
        steps = (high - low) // 2 + 1
        return low + 2 * (self._rand(n) * steps).long().clamp(max=steps - 1)

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A standard normal field on the device."""
        return torch.randn(shape, generator=self.field_generator, device=self.device, dtype=dtype)

    def poisson(self, rates: torch.Tensor) -> torch.Tensor:
        """Poisson counts with the given rates (a tensor on the device)."""
        return torch.poisson(rates, generator=self.field_generator)

    def _rand(self, shape: int | tuple[int, ...]) -> torch.Tensor:
        size = (shape,) if isinstance(shape, int) else shape
        return torch.rand(size, generator=self.generator, device=self.generator.device).cpu()

