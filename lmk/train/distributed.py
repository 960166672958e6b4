"""Single process or DistributedDataParallel: rank, device, CPU threads and process group.

Under ``torchrun`` (RANK / WORLD_SIZE set) every rank trains on its shard; rank 0 alone
validates and writes files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lmk.core.errors import LmkError


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank 0 of 1 when not under torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def dist_from_env() -> Dist:
    """Rank and world size from torchrun's environment (1 process when unset)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise LmkError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    return Dist(rank, world, local)


def pick_device(name: str | None, ddp: Dist) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise LmkError("--device cuda: no CUDA device is available to torch here")
        return torch.device("cuda", ddp.local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise LmkError(f"--device must be cpu or cuda, got {name!r}")
    return torch.device("cpu")


def set_threads(device: torch.device, ddp: Dist) -> None:
    """Share the CPU between ranks: cores / local ranks torch threads each (1 on 2 cores x 2)."""
    if ddp.active and device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(ddp.world)))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, (cores or 1) // max(1, local_world)))


@contextlib.contextmanager
def process_group(ddp: Dist, device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the run (gloo on the CPU, nccl on CUDA); a single
    process joins none."""
    if not ddp.active:
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=ddp.rank, world_size=ddp.world)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
