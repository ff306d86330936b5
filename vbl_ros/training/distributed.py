"""Several processes through ``torchrun``: the process group from its environment, and the few collectives used.

``torchrun --nproc_per_node N -m vbl_ros.cli train ...`` (one machine) or with ``--nnodes`` and a
rendezvous (several) sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :meth:`Distributed.from_env`
joins the group (NCCL on CUDA, gloo on the CPU). Without them, one process: every call is a no-op.
Rank 0 logs and saves; the mining cache is computed in parallel and gathered.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from vbl_ros.errors import ConfigError

__all__ = ["Distributed"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its machine;
    ``device``: where collectives' tensors go (``cuda:<local_rank>`` with NCCL)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: torch.device) -> Distributed:
        """Join the process group ``torchrun`` describes in the environment (if any).

        Raises:
            ConfigError: a partial torchrun environment.
        """
        if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
            return cls()
        try:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local = int(os.environ.get("LOCAL_RANK", "0"))
            os.environ["MASTER_ADDR"]
        except (KeyError, ValueError) as err:
            raise ConfigError(
                f"WORLD_SIZE is set but the torchrun environment is incomplete ({err}); start the run "
                "with torchrun (e.g. 'torchrun --nproc_per_node 2 -m vbl_ros.cli train ...')"
            ) from err
        collectives = "cpu"
        if device.type == "cuda":
            torch.cuda.set_device(local)
            collectives = f"cuda:{local}"
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
            logger.info("process %d of %d joined (%s)", rank, world, backend)
        return cls(rank, world, local, collectives)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, value: float) -> float:
        """The sum of ``value`` over the processes."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def shard(self, n: int) -> np.ndarray:
        """This process's contiguous share of ``0 .. n-1`` (shares differ by at most one)."""
        return np.array_split(np.arange(n), self.world_size)[self.rank]

    def gather_rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        """The ``(n, D)`` concatenation, in rank order, of every process's :meth:`shard` rows."""
        if not self.enabled:
            return rows
        sizes = [len(s) for s in np.array_split(np.arange(n), self.world_size)]
        width = rows.shape[1] if rows.ndim == 2 and rows.shape[0] else 0
        width = int(self.max(width))
        padded = torch.zeros(max(sizes), width, dtype=torch.float32)
        if len(rows):
            padded[: len(rows)] = torch.from_numpy(np.asarray(rows, np.float32))
        padded = padded.to(self.device)
        gathered = [torch.zeros_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded)
        return np.concatenate([g[:size].cpu().numpy() for g, size in zip(gathered, sizes, strict=True)])

    def max(self, value: float) -> float:
        """The maximum of ``value`` over the processes."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def broadcast_object(self, value: object) -> object:
        """Rank 0's ``value`` on every process."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
