"""Multi-process training under `torchrun`: process group, device choice, data sharding.

`torchrun` describes the job in environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT); without them training runs as a single process and none of this
code touches torch.distributed. Only rank 0 writes files (dataset, checkpoints,
TensorBoard, artifact); the other ranks wait for it at barriers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """This rank's share of `indices`, as DistributedSampler does it.

        The list is padded by wrapping around to a multiple of the world size, then rank r
        takes every world_size-th entry from r: every rank runs the same number of batches
        (ranks that ran out early would hang the gradient all-reduce).
        """
        if not self.enabled:
            return indices
        if len(indices) == 0:
            raise ValueError("cannot shard an empty set of samples across ranks")
        total = -(-len(indices) // self.world_size) * self.world_size
        padded = np.resize(indices, total)
        return padded[self.rank :: self.world_size]


def from_environment() -> Distributed:
    """Read torchrun's variables; a plain `python -m ...` run is rank 0 of 1."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Distributed()
    return Distributed(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def resolve_device(request: str, job: Distributed) -> torch.device:
    """`auto` → CUDA when present, else CPU; under torchrun each rank gets cuda:LOCAL_RANK.

    An explicit `cuda` request without a GPU is an error, not a silent fall-back to CPU.
    """
    if request not in ("auto", "cpu") and not request.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:<index>, got {request!r}")
    if request == "cpu" or (request == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {request}: CUDA is not available on this machine")
    if job.enabled or request in ("auto", "cuda"):
        return torch.device("cuda", job.local_rank if job.enabled else 0)
    return torch.device(request)


def start(job: Distributed, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if not job.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def stop(job: Distributed) -> None:
    if job.enabled and dist.is_initialized():
        dist.destroy_process_group()
