"""Several processes under torchrun: process group set-up, rank-0-only work, and collectives."""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from util.config import FlagValue, OptionError


class DeviceIds(tuple, FlagValue):
    """--gpu_ids: CUDA device ids ('0', '0,1'), or none ('-1': the CPU). The flag left out is None: CUDA 0 where
    there is CUDA, else the CPU (device_ids)."""

    @classmethod
    def parse(cls, text: str, flag: str) -> DeviceIds:
        try:
            ids = [int(v) for v in text.split(",") if v.strip() != ""]
        except ValueError:
            ids = [-2]  # reported below
        if any(i < -1 for i in ids) or (-1 in ids and len(ids) > 1):
            raise OptionError(
                f"--{flag} {text!r}: expected comma-separated integers such as 0 or 0,1 (CUDA ids, 0 or more), or -1 "
                "for the CPU"
            )
        return cls(i for i in ids if i >= 0)

    def __str__(self) -> str:
        return ",".join(map(str, self)) if self else "-1"

    __repr__ = __str__


def device_ids(ids: DeviceIds | None) -> list[int]:
    """The CUDA devices asked for: --gpu_ids's, or CUDA 0 if there is CUDA when it was left out; [] is the CPU."""
    if ids is None:
        return [0] if torch.cuda.is_available() else []
    return list(ids)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where collectives' tensors live (NCCL needs CUDA tensors)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(use_cuda: bool) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    d = Dist(int(os.environ["RANK"]), world, local, f"cuda:{local}" if use_cuda else "cpu")
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        # A bounded timeout: a peer that died must not keep the others waiting for the default 30 minutes.
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=5))
    return d


def training_device(d: Dist, gpu_ids: list[int], fixed_crops: bool) -> torch.device:
    """This process's device: the CPU, the first of gpu_ids, or under torchrun the GPU of its local rank; on CUDA
    with cuDNN autotuning for fixed-size crops and TF32 tensor cores (about fp32's accuracy for GAN training)."""
    if not gpu_ids:
        return torch.device("cpu")
    device = torch.device(f"cuda:{d.local_rank if d.enabled else gpu_ids[0]}")
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = fixed_crops
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def mean_over_ranks(d: Dist, t: torch.Tensor) -> torch.Tensor:
    """All-reduce mean of a tensor (a no-op in a single process)."""
    if d.enabled:
        t = t.clone()
        dist.all_reduce(t)
        t /= d.world_size
    return t


def any_over_ranks(d: Dist, flag: bool) -> bool:
    """True if any process says so (every process must call it at the same point)."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def broadcast_int(d: Dist, value: int) -> int:
    """Rank 0's value on every process."""
    if not d.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return int(box[0])


def cleanup(d: Dist, together: bool) -> None:
    """Leave the process group. together: every process got here (a run that ended normally): they first wait for
    each other, so none tears its connections down while rank 0 still saves, and the DDP wrapper and what else
    refers to the group are collected before it goes, not during the interpreter's shutdown, where a thread of
    theirs still running aborts the process ("terminate called without an active exception"). After an error,
    no waiting: a peer may be gone."""
    if not (d.enabled and dist.is_initialized()):
        return
    gc.collect()
    if together:
        dist.barrier()
    dist.destroy_process_group()
