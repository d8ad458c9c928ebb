"""Training on several processes with DistributedDataParallel, as torchrun starts it.

torchrun, or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT, starts one process (rank) per GPU, or several CPU processes.
`process_group` joins them with NCCL when the run uses CUDA and with Gloo on CPUs.
Then each rank:

- builds the same initial weights from --seed, and DistributedDataParallel copies
  rank 0's weights to the other ranks when it wraps the model;
- draws its own random windows from a generator seeded with seed + rank, so
  --batch-size is per rank and the global batch is batch_size * world_size;
- draws dropout masks from torch's generator, reseeded with seed + rank;
- averages its gradients with the other ranks during backward, so every rank takes
  the same optimizer step;
- scores every world_size-th validation batch, and the sums are added across ranks.

Only rank 0 writes files, logs metrics and runs callbacks. A stop signal and a
non-finite loss are agreed across ranks, so all ranks stop after the same step.

NOTE: only Gloo on CPUs has been run (tests/test_distributed.py). The NCCL path
for CUDA GPUs is untested.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import distributed as dist
from torch import nn

from abcrnn.devices import resolve_device
from abcrnn.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

Item = TypeVar("Item")


@dataclass(frozen=True)
class Ranks:
    """The processes of one training run, seen from one of them (rank)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl" or "gloo", or None for a single process
    # Gloo group for small CPU collectives (flags, random states), because NCCL
    # moves only CUDA tensors. None means the default group.
    control_group: Any = field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes files and logs metrics."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Return the sum of `tensor` over all ranks, or `tensor` in one process."""
        if not self.distributed:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Return the mean of `tensor` over all ranks, or `tensor` in one process."""
        if not self.distributed:
            return tensor
        return self.sum(tensor) / self.world_size

    def any(self, flag: bool) -> bool:
        """Return True on every rank when `flag` is True on at least one rank."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], dtype=torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control_group)
        return bool(value.item())

    def span(self, value: int) -> tuple[int, int]:
        """Return the smallest and the largest `value` over all ranks."""
        if not self.distributed:
            return value, value
        # The maximum of -value is minus the minimum, so one all_reduce does both.
        pair = torch.tensor([-value, value], dtype=torch.int64)
        dist.all_reduce(pair, op=dist.ReduceOp.MAX, group=self.control_group)
        return -int(pair[0]), int(pair[1])

    def shard(self, items: Sequence[Item]) -> list[Item]:
        """Return this rank's share of `items`: every world_size-th, from rank."""
        return list(items[self.rank :: self.world_size])

    def gather(self, value: Any) -> list[Any] | None:
        """Return every rank's `value` (picklable) on rank 0, in rank order.

        Returns None on the other ranks, and [value] for a single process.
        """
        if not self.distributed:
            return [value]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0, group=self.control_group)
        return gathered


def launch_rank() -> int:
    """Return the RANK that a launcher such as torchrun set, 0 when unset."""
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def process_group(device: str) -> Iterator[Ranks]:
    """Join the processes of a torchrun launch for the duration of a run.

    `device` is TrainConfig.device. The backend is NCCL when it resolves to CUDA
    and Gloo on the CPU. With WORLD_SIZE unset or 1 this yields a single-process
    Ranks and starts nothing. A process group that the caller initialised is used
    as it is and left open; one made here is destroyed on exit.

    NOTE: a second process group made here in the same process, after the first
    was destroyed, hung in Gloo's connection step under torchrun (PyTorch 2.13).
    To train several times in one torchrun process, call
    torch.distributed.init_process_group once before the first `train`.
    """
    if dist.is_available() and dist.is_initialized():
        yield _current_ranks()
        return
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield Ranks()
        return

    backend, device_id = _backend_for(resolve_device(device))
    try:
        dist.init_process_group(backend, device_id=device_id)
    except ValueError as error:  # MASTER_ADDR, MASTER_PORT or RANK is missing
        raise ConfigError(
            f"WORLD_SIZE is {world_size} but the process group cannot start: "
            f"{error}. Start abcrnn with torchrun, or unset WORLD_SIZE"
        ) from error
    try:
        yield _current_ranks()
        # Leave together: a rank that tore down Gloo while another still used it
        # sometimes aborted at exit ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _backend_for(device: torch.device) -> tuple[str, torch.device | None]:
    """Return the backend for `device` and the GPU of this rank (None on CPUs)."""
    if not dist.is_available():
        raise ConfigError(
            "WORLD_SIZE asks for several processes but this PyTorch build has no "
            "torch.distributed; start one process, without torchrun"
        )
    if device.type == "cpu":
        return "gloo", None
    if device.type != "cuda":
        raise ConfigError(
            f"training on several processes needs CUDA GPUs (NCCL) or CPUs (Gloo), "
            f"not {device.type}; pass --device cpu or start one process"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"LOCAL_RANK {local_rank} is out of range because this machine has "
            f"{count} GPUs. Start at most {count} processes per machine "
            f"(torchrun --nproc-per-node {count})"
        )
    torch.cuda.set_device(local_rank)
    return "nccl", torch.device("cuda", local_rank)


def _current_ranks() -> Ranks:
    """Return Ranks for the initialised default process group."""
    backend = str(dist.get_backend())
    world_size = dist.get_world_size()
    control = None
    if world_size > 1 and backend != "gloo":
        control = dist.new_group(backend="gloo")
    rank = dist.get_rank()
    return Ranks(
        rank=rank,
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", str(rank))),
        backend=backend,
        control_group=control,
    )


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Return this rank's device: cuda:LOCAL_RANK for CUDA with several processes."""
    if device.type == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return device


def wrap_model(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """Return `model` in DistributedDataParallel with several processes, else itself.

    Wrapping copies rank 0's parameters to every rank.
    """
    if not ranks.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def gather_rng_states(state: dict[str, Any], ranks: Ranks) -> dict[str, Any] | None:
    """Return the random states to save: this rank's, plus every rank's in "ranks".

    With several processes, the result on rank 0 is rank 0's states with the
    extra key "ranks" (a list with one dict of states per rank), and None on the
    other ranks. A single process gets `state` back unchanged.
    """
    if not ranks.distributed:
        return state
    gathered = ranks.gather(state)
    if gathered is None:
        return None
    return {**state, "ranks": gathered}


def check_same_step(step: int | None, ranks: Ranks, path: Path) -> None:
    """Raise CheckpointError unless every rank resumes from the same step.

    `step` is the step of the checkpoint this rank read from `path`, or None when
    it starts a new run.
    """
    low, high = ranks.span(-1 if step is None else step)
    if low != high:
        raise CheckpointError(
            f"the ranks read different checkpoints from {path} (steps {low} to "
            f"{high}, -1 = none): every machine must see the same run folder, so "
            "keep it on storage that all machines share"
        )


def rank_rng_state(
    saved: dict[str, Any] | None, ranks: Ranks, step: int
) -> dict[str, Any] | None:
    """Return this rank's random states from a checkpoint's "rng" entry.

    Returns {} when the checkpoint has no random states, and None when it has
    states but none for this rank: the run had fewer processes. The top-level
    states are rank 0's, so a checkpoint from one process resumes on rank 0.
    Rank 0 logs a warning when the number of processes changed, because the
    batches after `step` then differ from an uninterrupted run.
    """
    if not saved:
        return {}
    per_rank = saved.get("ranks") or [saved]
    if len(per_rank) != ranks.world_size and ranks.is_main:
        log.warning(
            "the checkpoint was written by %d process(es) and this run has %d, so "
            "the batches after step %d differ from an uninterrupted run",
            len(per_rank),
            ranks.world_size,
            step,
        )
    if ranks.rank < len(per_rank):
        return per_rank[ranks.rank]
    return None


def rank_seed(seed: int, ranks: Ranks, step: int = 0) -> int:
    """Return the seed of this rank's windows and dropout: seed + rank + step."""
    return seed + ranks.rank + step
