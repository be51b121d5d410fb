"""torchrun / DDP support: `torchrun --nproc_per_node N -m evbattery.train ...`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; without them everything here
is a no-op and training runs in one process. The backend follows the training device: NCCL on CUDA (each
rank on cuda:LOCAL_RANK, see evbattery.core.devices.resolve_device), gloo on the CPU. Rank 0 logs and saves.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed_env() -> bool:
    """True when launched by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device | str | None = None) -> bool:
    """Initialise the process group when launched by torchrun; returns whether DDP is on.

    NCCL when `device` is a CUDA device (made this process's current device first), else gloo."""
    if not is_distributed_env():
        return False
    if not dist.is_initialized():
        cuda = device is not None and torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank() -> int:
    """This process's rank (0 without DDP)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without DDP)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Only rank 0 logs, tracks and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op without DDP)."""
    if world_size() > 1:
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few numbers over processes (loss/correct/count totals), identity without DDP."""
    if world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64).to(_comm_device())
    dist.all_reduce(t)
    return t.cpu().tolist()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's value of a picklable object on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel around the model when DDP is on."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper."""
    return getattr(model, "module", model)


def cleanup() -> None:
    """Destroy the process group if this process created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
