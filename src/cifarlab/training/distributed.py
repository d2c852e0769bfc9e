"""Several processes, one training run, with PyTorch's own engine: launched by `torchrun`
(which sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous), joined with NCCL on GPUs and gloo
on CPUs. Rank 0 alone prints, writes the run folder and evaluates; the others only train."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cifarlab.errors import CifarlabError


@dataclass
class Dist:
    """This process's place in the group; a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def sum_(self, *tensors: torch.Tensor) -> None:
        """Sum tensors over all processes, in place."""
        if self.active:
            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def any(self, flags: list[bool], device: torch.device) -> list[bool]:
        """Each flag, true if it is true on any process (the same answer everywhere)."""
        if not self.active:
            return flags
        t = torch.tensor([float(f) for f in flags], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every process."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self, together: bool) -> None:
        """Leave the group. `together`: every process is here by the same path (the run ended
        or stopped on a shared decision), so they first wait for each other: none then leaves
        (see cli.run) while a peer's last collective still needs it. After an error on one
        process alone, the others would never come: no wait then."""
        if self.active and dist.is_initialized():
            if together:
                dist.barrier()
            dist.destroy_process_group()


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (if any); returns it and this process's
    device (its own GPU, cuda:LOCAL_RANK, when training on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise CifarlabError(f"local rank {local_rank} has no GPU (this machine has "
                                f"{torch.cuda.device_count()}); lower --nproc-per-node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise CifarlabError(f"distributed training runs on CUDA (NCCL) or the CPU (gloo), "
                            f"not {device.type}")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        if restart:
            # A group torchrun restarted can meet the store of the attempt before, with the
            # dead processes' addresses in it (gloo's connect then fails now and then): this
            # attempt's keys get a prefix of their own.
            store, _, _ = next(dist.rendezvous("env://"))
            store = dist.PrefixStore(f"cifarlab-attempt-{restart}", store)
            dist.init_process_group(backend, store=store, rank=rank, world_size=world)
        else:
            dist.init_process_group(backend)
    return Dist(rank, world, local_rank), device
