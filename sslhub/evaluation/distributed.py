"""``torchrun`` support for embedding and evaluation: rank and world size from the environment, gloo collectives.

The collectives here move small things (per-shard records, query features, top-k lists), always as CPU objects,
so the process group is gloo even on GPU machines: it needs no CUDA-aware setup and works across nodes over TCP.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

__all__ = ["all_gather_objects", "barrier", "init_from_env", "is_main", "rank_device", "world"]


def init_from_env() -> tuple[int, int]:
    """``(rank, world_size)``; joins the gloo process group when started by ``torchrun`` with several processes."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        # Ranks meet only at the start and the end; one resuming with fewer shards left may wait for hours there,
        # far beyond the default 30-minute timeout.
        hours = float(os.environ.get("SSLHUB_DIST_TIMEOUT_H", "48"))
        dist.init_process_group(backend="gloo", timeout=datetime.timedelta(hours=hours))
        logger.info("rank %d of %d joined the process group", dist.get_rank(), size)
    return world()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return world()[0] == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world()[1] > 1:
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    size = world()[1]
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out


def rank_device(device: str | torch.device | None) -> torch.device:
    """``device`` if given, else this rank's GPU (``LOCAL_RANK``) when CUDA is present, else the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")
