"""Torch DataLoaders for srframe datasets: seeded, sharded over ranks, resumable, uint8 batches.

Randomness (the order, each item's patch and flips) comes from the loader's seed through the
sampler, not from the workers, so a seed gives the same batches with any number of workers.
Under DDP each rank's loader takes its share of one global order, so W ranks with batch ``b``
see together the batch ``b * W`` that one process would. The loader counts what it has handed
out: ``state_dict()`` / ``load_state_dict()`` resume at the next batch an uninterrupted run would
have drawn. A DataError in a worker (a bad file with ``on_bad_file = "error"``) reaches the
caller as a DataError with its own message, not as a worker traceback.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..errors import DataError

if TYPE_CHECKING:
    from ..recipe.spec import ComponentSpec
    from ..registry import Registry


def _whole(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError naming it (bools are not numbers here)."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return number


def check_shard(rank: Any, world_size: Any) -> tuple[int, int]:
    """``(rank, world_size)`` as ints, or a ValueError saying what is wrong with them."""
    world_size = _whole("world_size (the number of processes)", world_size, 1)
    rank = _whole("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank {rank} is out of range for world_size {world_size}: ranks go from 0 to "
                         f"{world_size - 1}")
    return rank, world_size


class SeededSampler(Sampler):
    """Yields this rank's ``(index, seed)`` keys for one epoch, from a global order drawn from ``(seed, epoch)``.

    Every rank draws the same global order of the ``length`` items (a permutation when ``shuffle``,
    else ``0 .. length-1``) and the same per-item seeds, indexed by global position. Of the first
    ``length - length % world_size`` positions (the ragged tail is dropped, as torch's
    ``DistributedSampler(drop_last=True)`` does) rank ``r`` takes positions ``r, r + W, r + 2W, ...``:
    the ranks' shares are disjoint and together cover the epoch (all of it when ``W`` divides
    ``length``). So the ``j``-th batches of size ``b`` of the ``W`` ranks are together the ``j``-th
    batch of size ``b * W`` of one process (item ``i`` of rank ``r``'s batch is item ``r + i * W`` of
    it), the same keys with the same per-item seeds. With ``world_size = 1`` nothing is dropped and
    the keys are what they were before sharding existed.

    Iteration starts at global position ``start`` of epoch ``epoch`` (set by :meth:`set_position`;
    :meth:`set_epoch` as in ``DistributedSampler``) and does not advance them: :class:`SRLoader`
    owns the position, because a DataLoader runs its sampler ahead of what the caller consumed.
    ``len()`` is the number of keys a whole epoch gives this rank (``length // world_size``);
    :meth:`remaining` is the number the next iteration gives from ``start``.
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True, *, rank: int = 0, world_size: int = 1):
        self.rank, self.world_size = check_shard(rank, world_size)
        self.length, self.seed, self.shuffle = _whole("length", length, 0), seed, shuffle
        self.epoch = 0
        self.start = 0  # global position in the epoch where the next iteration begins

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch``."""
        self.set_position(epoch, 0)

    def set_position(self, epoch: int, start: int) -> None:
        """Start the next iteration at global position ``start`` (positions already consumed by all ranks)."""
        epoch, start = _whole("epoch", epoch, 0), _whole("start", start, 0)
        if start > self.length:
            raise ValueError(f"start = {start} is beyond the {self.length} positions of an epoch")
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.length // self.world_size

    def remaining(self) -> int:
        """How many keys the next iteration gives this rank (every rank gets the same number)."""
        return (self.length - self.start) // self.world_size

    def epoch_keys(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The global order (``length`` indices) and the per-position seeds of ``epoch``, the same on every rank."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.length) if self.shuffle else np.arange(self.length)
        seeds = rng.integers(0, 2**63 - 1, size=self.length)
        return order, seeds

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order, seeds = self.epoch_keys(self.epoch)
        stop = self.start + self.remaining() * self.world_size
        mine = slice(self.start + self.rank, stop, self.world_size)
        return zip(order[mine].tolist(), seeds[mine].tolist())


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
    """A DataLoader over a :class:`SeededSampler` that knows where it is, so a run can resume there.

    It counts the batches it hands to the caller (not what its workers prefetched) when it hands
    them out: ``state_dict()`` taken right after the ``k``-th batch of an epoch says
    ``{"epoch": e, "consumed": k * batch_size * world_size}``, global positions, so the state is
    the same on every rank. Each iteration continues from that position: breaking out of a
    ``for`` loop and iterating again goes on with the next batch, and an iteration that runs to
    the end of the epoch moves on to the beginning of the next one (``epoch + 1``, ``consumed = 0``).
    :meth:`endless` yields batch after batch across epochs, which is what a training loop wants.

    Only one iteration runs at a time: starting a new one, or :meth:`load_state_dict`, ends the
    one in progress (its next ``next()`` raises StopIteration). A failed item is raised as its
    DataError in the calling process.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._consumed = 0  # global positions of the current epoch handed out (all ranks together)
        self._generation = 0  # bumped by each new iteration and each load_state_dict

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from (until an iteration finds the current one used up)."""
        return self._epoch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": int, "consumed": int}``: plain ints, the same on every rank, safe for JSON and
        ``torch.load(weights_only=True)``."""
        return {"epoch": self._epoch, "consumed": self._consumed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state``: the next iteration yields the batch an uninterrupted run would have drawn next."""
        sampler = self._seeded_sampler()
        if not isinstance(state, Mapping) or set(state) != {"epoch", "consumed"}:
            raise DataError(f"a loader state is {{'epoch': int, 'consumed': int}}, got {state!r}")
        try:
            epoch = _whole("epoch", state["epoch"], 0)
            consumed = _whole("consumed", state["consumed"], 0)
        except ValueError as exc:
            raise DataError(f"the loader state {dict(state)!r} cannot be used: {exc}") from None
        if consumed > sampler.length:
            raise DataError(f"the loader state says {consumed} items of the epoch were consumed, but an epoch has "
                            f"{sampler.length}: the state comes from another dataset")
        self._epoch, self._consumed = epoch, consumed
        self._generation += 1

    def endless(self) -> Iterator[Any]:
        """Batches forever, epoch after epoch, from the current position (the training engine's loop)."""
        while True:
            handed = False
            for batch in self:
                handed = True
                yield batch
            if not handed:
                raise DataError(f"an epoch of this loader has no batch ({len(self.dataset)} items, batch_size "
                                f"{self.batch_size}, {self._seeded_sampler().world_size} processes)")

    def _seeded_sampler(self) -> SeededSampler:
        if not isinstance(self.sampler, SeededSampler) or self.batch_size is None:
            raise TypeError("SRLoader needs a SeededSampler and a batch_size; build it with make_loader()")
        return self.sampler

    def _batches_in(self, keys: int) -> int:
        return keys // self.batch_size if self.drop_last else -(-keys // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        sampler = self._seeded_sampler()
        self._generation += 1
        generation = self._generation
        sampler.set_position(self._epoch, self._consumed)
        if self._batches_in(sampler.remaining()) == 0:  # the state was taken after the epoch's last batch
            self._epoch, self._consumed = self._epoch + 1, 0
            sampler.set_position(self._epoch, self._consumed)
        keys_left = sampler.remaining()
        # With persistent workers this resets the one DataLoader iterator: batches still in flight
        # from an iteration left half-way are drained and dropped, then prefetching restarts here.
        batches = super().__iter__()
        while True:
            if self._generation != generation:  # a newer iteration or load_state_dict took over
                return
            try:
                batch = next(batches)
            except StopIteration:
                break
            if isinstance(batch, _Failure):
                self._iterator = None  # the DataLoader's persistent iterator: let the workers go now
                del batches
                raise DataError(batch.message)
            taken = min(self.batch_size, keys_left)
            keys_left -= taken
            self._consumed += taken * sampler.world_size
            yield batch
        if self._generation == generation:
            self._epoch, self._consumed = self._epoch + 1, 0


def make_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 0, seed: int = 0, shuffle: bool = True,
                drop_last: bool = True, pin_memory: bool = True, prefetch_factor: int = 4, rank: int = 0,
                world_size: int = 1) -> SRLoader:
    """A seeded, resumable loader over ``dataset`` with ``num_workers`` worker processes (0: in this process).

    ``batch_size`` is per process: rank ``rank`` of ``world_size`` gets its share of each epoch
    (see :class:`SeededSampler`), so the global batch is ``batch_size * world_size``; when
    ``world_size`` does not divide ``len(dataset)``, the last ``len(dataset) % world_size`` items of
    each epoch's order are left out. Batches are dicts of ``(batch_size, C, H, W)`` uint8/uint16
    tensors (and lists of names for validation items). Memory is pinned only when CUDA is
    available; workers persist across epochs.
    """
    sampler = SeededSampler(len(dataset), seed, shuffle, rank=rank, world_size=world_size)
    share = len(sampler)
    if drop_last and share < batch_size:
        if world_size == 1:
            raise DataError(f"the dataset has {len(dataset)} items, fewer than one batch of {batch_size}: "
                            "lower batch_size or raise the dataset's repeat")
        raise DataError(f"the dataset has {len(dataset)} items, fewer than one batch of {batch_size} for each of "
                        f"{world_size} processes ({batch_size * world_size} items): lower batch_size or raise the "
                        "dataset's repeat")
    if share == 0:
        raise DataError(f"the dataset has {len(dataset)} items, fewer than the {world_size} processes sharing it")
    workers = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if num_workers else {}
    return SRLoader(_Guarded(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                    collate_fn=collate, drop_last=drop_last, pin_memory=pin_memory and torch.cuda.is_available(),
                    generator=torch.Generator().manual_seed(seed), **workers)


def loader_from_spec(spec: ComponentSpec, *, seed: int, registry: Registry | None = None, rank: int = 0,
                     world_size: int = 1) -> SRLoader:
    """Build the dataset a recipe's ``[data.train]`` or ``[data.val]`` chose and its loader, for rank ``rank``.

    Training loaders shuffle and drop the last partial batch. ``[data.train] batch_size`` is the
    global batch, whatever the number of processes: each of the ``world_size`` ranks gets
    ``batch_size // world_size`` (a DataError when that does not divide evenly). Validation
    loaders give one whole image at a time, in order, and are not sharded: every rank gets all
    the images (the engine validates on rank 0).
    """
    from ..recipe.spec import ValLoaderOptions

    rank, world_size = check_shard(rank, world_size)
    options = spec.options
    if not isinstance(options, ValLoaderOptions) and options.batch_size % world_size:
        below = options.batch_size - options.batch_size % world_size
        near = f"{below} or {below + world_size}" if below else f"{world_size}"
        raise DataError(f"data.train.batch_size = {options.batch_size} is the global batch, split evenly over "
                        f"{world_size} processes: it must be a multiple of {world_size} (e.g. {near})")
    if registry is None:
        from ..plugins import registry
    dataset = spec.build(registry)
    if isinstance(options, ValLoaderOptions):
        return make_loader(dataset, batch_size=1, num_workers=options.num_workers, seed=seed, shuffle=False,
                           drop_last=False, pin_memory=options.pin_memory)
    return make_loader(dataset, batch_size=options.batch_size // world_size, num_workers=options.num_workers,
                       seed=seed, pin_memory=options.pin_memory, rank=rank, world_size=world_size)
