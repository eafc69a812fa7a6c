"""Torch DataLoaders for srframe datasets: seeded, worker processes, pinned memory, uint8 batches.

Randomness (the order, each item's patch and flips) comes from the loader's seed through the
sampler, not from the workers, so a seed gives the same batches with any number of workers.
A DataError in a worker (a bad file with ``on_bad_file = "error"``) reaches the caller as a
DataError with its own message, not as a worker traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..errors import DataError

if TYPE_CHECKING:
    from ..recipe.spec import ComponentSpec
    from ..registry import Registry


class SeededSampler(Sampler):
    """Yields ``(index, seed)`` keys: each epoch a fresh order (when ``shuffle``) and per-item seeds,
    all drawn from ``(seed, epoch)``."""

    def __init__(self, length: int, seed: int, shuffle: bool = True):
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.length) if self.shuffle else np.arange(self.length)
        seeds = rng.integers(0, 2**63 - 1, size=self.length)
        return zip(order.tolist(), seeds.tolist())


@dataclass(frozen=True)
class _Failure:
    message: str


class _Guarded(Dataset):
    """Hands a DataError back as a value, so the worker survives and the caller gets the message."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.dataset[key]
        except DataError as exc:
            return _Failure(str(exc))


def collate(items: list[Any]) -> Any:
    """Stack items; uint8 images are promoted to uint16 (x 257) when a batch mixes them with 16-bit ones."""
    failure = next((item for item in items if isinstance(item, _Failure)), None)
    if failure is not None:
        return failure
    for key, value in items[0].items():
        if isinstance(value, torch.Tensor) and len({item[key].dtype for item in items}) > 1:
            items = [item | {key: _as_uint16(item[key])} for item in items]
    return default_collate(items)


def _as_uint16(image: torch.Tensor) -> torch.Tensor:
    return image.to(torch.uint16) * 257 if image.dtype == torch.uint8 else image


class SRLoader(DataLoader):
    """A DataLoader that turns a failed item back into a DataError in the calling process."""

    def __iter__(self) -> Iterator[Any]:
        batches = super().__iter__()
        for batch in batches:
            if isinstance(batch, _Failure):
                self._iterator = None  # the DataLoader's persistent iterator: let the workers go now
                del batches
                raise DataError(batch.message)
            yield batch


def make_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 0, seed: int = 0, shuffle: bool = True,
                drop_last: bool = True, pin_memory: bool = True, prefetch_factor: int = 4) -> SRLoader:
    """A seeded loader over ``dataset`` with ``num_workers`` worker processes (0: in this process).

    Memory is pinned only when CUDA is available; workers persist across epochs.
    """
    if drop_last and len(dataset) < batch_size:
        raise DataError(f"the dataset has {len(dataset)} items, fewer than one batch of {batch_size}: "
                        "lower batch_size or raise the dataset's repeat")
    workers = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if num_workers else {}
    return SRLoader(_Guarded(dataset), batch_size=batch_size, sampler=SeededSampler(len(dataset), seed, shuffle),
                    num_workers=num_workers, collate_fn=collate, drop_last=drop_last,
                    pin_memory=pin_memory and torch.cuda.is_available(),
                    generator=torch.Generator().manual_seed(seed), **workers)


def loader_from_spec(spec: ComponentSpec, *, seed: int, registry: Registry | None = None) -> SRLoader:
    """Build the dataset a recipe's ``[data.train]`` or ``[data.val]`` chose and its loader.

    Training loaders shuffle and drop the last partial batch; validation loaders give one whole
    image at a time, in order.
    """
    from ..recipe.spec import ValLoaderOptions

    if registry is None:
        from ..plugins import registry
    dataset = spec.build(registry)
    options = spec.options
    if isinstance(options, ValLoaderOptions):
        return make_loader(dataset, batch_size=1, num_workers=options.num_workers, seed=seed, shuffle=False,
                           drop_last=False, pin_memory=options.pin_memory)
    return make_loader(dataset, batch_size=options.batch_size, num_workers=options.num_workers, seed=seed,
                       pin_memory=options.pin_memory)
