"""Multi-process training under `torchrun`: process group, device choice, DDP trainer.

`torchrun` describes the job in environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT); without them training runs as a single process and none of this
code touches torch.distributed. Only rank 0 writes files (dataset, checkpoints,
TensorBoard, artifact); the other ranks wait for it at barriers, so several nodes need
RUN_DIR on a shared filesystem.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from m2vae_training.interrupts import default_sigterm
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from m2vae_ros.devices import resolve_device
from m2vae_ros.model import M2VAE
from m2vae_ros.objectives import Loss, loss
from m2vae_ros.trainer import ArrayDataset, LossMeans, Trainer


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
            with default_sigterm():  # `kill` must end a rank waiting here for rank 0's dataset build
                dist.barrier()

    def shard(self, order: np.ndarray) -> np.ndarray:
        """This rank's share of `order`, as DistributedSampler does it.

        The list is padded by wrapping around to a multiple of the world size, then rank r
        takes every world_size-th entry from r: every rank runs the same number of batches
        (a rank that ran out early would hang the gradient all-reduce).
        """
        if not self.enabled:
            return order
        if len(order) == 0:
            raise ValueError("cannot shard an empty set of samples across ranks")
        total = -(-len(order) // self.world_size) * self.world_size
        return np.resize(order, total)[self.rank :: self.world_size]


def from_environment() -> Distributed:
    """Read torchrun's variables; a plain `python -m ...` run is rank 0 of 1."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Distributed()
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    values = [os.environ.get(name, "0") for name in names]
    if not all(value.isdigit() for value in values):
        given = ", ".join(f"{name}={value!r}" for name, value in zip(names, values, strict=True))
        raise ValueError(f"{given}: torchrun's variables must be whole numbers")
    rank, world_size, local_rank = map(int, values)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def training_device(request: str, job: Distributed) -> torch.device:
    """`--device` → a torch device; under torchrun each rank on a GPU gets cuda:LOCAL_RANK.

    Unlike the node, which must run on whatever the robot has, training refuses a GPU it
    was asked for and cannot have: hours on the CPU instead are no fallback (`auto` is).
    """
    device, warning = resolve_device(request)
    if warning:
        raise ValueError(f"{warning.partition(';')[0]}: pass --device cpu, or auto for a GPU where there "
                         "is one")
    if job.enabled and device.startswith("cuda"):
        return torch.device("cuda", job.local_rank)
    return torch.device(device)


def start(job: Distributed, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if not job.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    except ValueError as exc:  # RANK and WORLD_SIZE set by hand, without MASTER_ADDR or MASTER_PORT
        raise ValueError(f"RANK and WORLD_SIZE are set, but the process group cannot start ({exc}); "
                         "launch with torchrun, or unset them") from exc


def stop(job: Distributed) -> None:
    if job.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _Objective(nn.Module):
    """The model with the training objective as its forward(), which is what DDP synchronises.

    DDP hooks gradients on forward(); the objective calls encode/decode directly, so the
    whole loss computation has to be the forward of the module DDP wraps.
    """

    def __init__(self, model: M2VAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: dict[str, Tensor], available: Tensor, generator: torch.Generator) -> Loss:
        result = loss(self.model, x, available, generator=generator)
        if not result.total.requires_grad:
            # No sample of this rank's batch has a sensor. One process skips such a batch; a
            # rank must not, or the others wait in the gradient all-reduce forever. A zero loss
            # through every weight, built inside forward() where DDP tracks it, adds nothing.
            zero = sum(p.sum() for p in self.model.parameters()) * 0.0
            result = dataclasses.replace(result, total=zero)
        return result


class DistributedTrainer(Trainer):
    """The shared Trainer with each epoch's order sharded by rank and gradients averaged by DDP.

    Every rank shuffles with the same (seed, epoch) and takes its DistributedSampler-style
    share, so the ranks together visit each sample once per epoch. Validation runs the
    whole validation set on every rank: the metrics, and so the early-stopping decision,
    are identical everywhere without communication. Each rank draws its own noise, from
    a generator seeded by (seed, rank, epoch) at the start of every epoch.
    """

    def __init__(self, model: M2VAE, job: Distributed, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.job = job
        ids = [self.device.index] if self.device.type == "cuda" else None
        # A batch without some subset leaves that subset's head without gradient.
        self.ddp = DistributedDataParallel(
            _Objective(self.model), device_ids=ids, find_unused_parameters=True
        )

    def begin_epoch(self, epoch: int) -> None:
        # Seeded by rank, or every rank would draw the same noise; and per epoch, because only
        # rank 0 writes checkpoints: the other ranks' generator states could not be restored.
        seed = np.random.SeedSequence([self.seed, self.job.rank, epoch]).generate_state(1, np.uint64)[0]
        self.generator.manual_seed(int(seed))

    def epoch_order(self, data: ArrayDataset, epoch: int) -> np.ndarray:
        return self.job.shard(super().epoch_order(data, epoch))

    def compute_loss(self, x: dict[str, Tensor], available: Tensor) -> Loss:
        return self.ddp(x, available, self.generator)

    def pooled(self, totals: LossMeans) -> LossMeans:
        """Every rank's training sums added up, so rank 0 logs the whole epoch, not its share.

        A rank whose share held no sample of some subset has no entry for it: the key lists
        are gathered first, and the sums and row counts of their union all-reduced.
        """
        return LossMeans.from_table(pool_tables(totals.table(), self.device))


def pool_tables(table: dict[str, tuple[float, int]], device: torch.device) -> dict[str, tuple[float, int]]:
    """Per key (sum, rows) added up over the process group; keys missing on a rank count as (0, 0)."""
    key_lists: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(key_lists, sorted(table))
    keys = sorted(set().union(*key_lists))
    values = torch.tensor([table.get(key, (0.0, 0)) for key in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return {key: (float(total), int(rows)) for key, (total, rows) in zip(keys, values.tolist(), strict=True)}


def make_trainer(model: M2VAE, job: Distributed, *, lr: float, device: torch.device, seed: int) -> Trainer:
    """The plain Trainer for one process, the DDP one under torchrun."""
    if job.enabled:
        return DistributedTrainer(model, job, lr=lr, device=device, seed=seed)
    return Trainer(model, lr=lr, device=device, seed=seed)
