"""Process-group setup for multi-process training.

Two ways in, one code path:

* ``torchrun --nproc_per_node=N -m gemseg.cli.main train ...`` (or ``torchrun $(which gem) train ...``) sets
  ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``; :func:`init_from_env` joins that group.
  Multi-node: run the same torchrun command on every node with ``--nnodes``, ``--node_rank`` and
  ``--rdzv_endpoint`` / ``--master_addr`` (see ``docs/training.md``).
* ``gem train --num-gpus N`` (the official habit) spawns N local workers with :func:`launch`, which sets the same
  variables and calls the worker function in each — a single-node torchrun equivalent.

The backend is NCCL when the training device is CUDA, gloo otherwise (CPU, and MPS which has no collective
backend of its own). Loss normalisation across ranks is the official one: the criterion all-reduces the number of
target masks (``average_num_masks``) and DDP averages the gradients, so N ranks × b images equal one batch of N·b.
"""
from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from gemseg.errors import ConfigError


@dataclass
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun / :func:`launch`)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group described by the torchrun environment variables (no-op for a single process).

    Args:
        device_type: ``"cuda"`` selects NCCL (and ``cuda:LOCAL_RANK``), anything else gloo.
    """
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        # rank 0 evaluates alone while the others wait in a collective: allow a long evaluation (the default
        # NCCL timeout of 10 minutes would kill the job during a full-size CPU-side evaluation)
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(hours=2))
    return DistInfo(rank, world, local_rank)


def cleanup() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_max(flag: float, device: torch.device) -> float:
    """Max of a scalar over ranks (e.g. "any rank saw a non-finite loss")."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(flag)
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_reduce_mean(values: dict, device: torch.device) -> dict:
    """Mean over ranks of a dict of floats (for logging: every rank logs the same, rank 0 writes it)."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to all ranks (e.g. the run seed chosen by rank 0)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def free_port() -> int:
    """A free TCP port on this machine for the rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(local_rank: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # one intra-op thread pool per process would oversubscribe the CPU: share the cores between workers
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    fn(*args)


def launch(fn: Callable[..., Any], num_processes: int, args: tuple = (), port: Optional[int] = None) -> None:
    """Run ``fn(*args)`` in ``num_processes`` spawned local workers with torchrun-style environment variables.

    With ``num_processes == 1`` ``fn`` runs in this process. A worker's exception is re-raised here (as
    ``torch.multiprocessing.ProcessRaisedException`` carrying the worker's traceback).
    """
    if num_processes < 1:
        raise ConfigError(f"--num-gpus must be >= 1, got {num_processes}")
    if num_processes == 1 or env_world_size() > 1:
        fn(*args)
        return
    import torch.multiprocessing as mp

    mp.start_processes(_worker, args=(num_processes, port or free_port(), fn, args), nprocs=num_processes,
                       join=True, start_method="spawn")
