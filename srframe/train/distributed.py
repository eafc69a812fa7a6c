"""Data-parallel training under ``torchrun``: the only module that touches ``torch.distributed``.

``torchrun --nproc_per_node=N -m srframe.cli run RECIPE`` (or ``srframe run`` launched by
torchrun on several machines, with its rendezvous options) sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`connect` reads them and joins the process group: nccl on CUDA, gloo on
the CPU. Without them, training runs in one process and every helper here is a no-op.
Rank 0 alone writes logs, checkpoints, plots and reports; the others wait where it matters.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import SrframeError


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (so all ranks stop at the same step)."""
        if not self.distributed:
            return flag
        tensor = torch.tensor([int(flag)], device=self._collective_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def mean(self, values: list[float]) -> list[float]:
        """The mean over ranks of each value (for logging the losses of the global batch)."""
        if not self.distributed or not values:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._collective_device)
        dist.all_reduce(tensor)
        return (tensor / self.world_size).tolist()

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when there are several processes, else itself."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    @property
    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def choose_device(wanted: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: this process's GPU when CUDA is available, else the CPU; or the device named."""
    if wanted == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(wanted)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SrframeError(f'train.device = "{wanted}", but CUDA is not available here: use "auto" or "cpu"')
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


@contextlib.contextmanager
def connect(wanted_device: str = "auto") -> Iterator[Processes]:
    """Join the torchrun process group when launched by torchrun (else one process); leave it on exit."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        yield Processes(device=choose_device(wanted_device))
        return
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = choose_device(wanted_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    try:
        yield Processes(rank, world_size, local_rank, device)
    finally:
        if joined and dist.is_initialized():
            # DDP wrappers sit in reference cycles and hold the group: free them first, or the group is
            # destroyed at interpreter exit, where gloo's threads may abort ("terminate called ...")
            gc.collect()
            dist.destroy_process_group()
