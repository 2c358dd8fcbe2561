"""Single process (CPU or one GPU) or several processes under `torchrun` / `accelerate launch` (DDP).

Nothing to change in user code or config: the launchers set WORLD_SIZE / RANK / LOCAL_RANK and
this module picks them up. Each rank takes every world-th step batch; only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world, device)

    def shard(self, batches: list[list[int]]) -> list[list[int]]:
        if self.world == 1:
            return batches
        usable = len(batches) - len(batches) % self.world  # every rank takes the same number of steps
        return batches[self.rank:usable:self.world]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)

    def no_sync(self, wrapped: torch.nn.Module):
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        return wrapped.no_sync() if hasattr(wrapped, "no_sync") else contextlib.nullcontext()
