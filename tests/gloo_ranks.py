"""Run a test's worker in local gloo ranks and read back what each rank saved."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any, Callable

import torch

from conftest_servers import free_port


def run_ranks(worker: Callable[..., None], out: Path, *args: Any, world: int = 2,
              preload: tuple[str, ...] = ("sslhub.losses",)) -> list[dict]:
    """Call ``worker(rank, world, port, *args, str(out))`` in ``world`` processes; each rank saves its results to
    ``out/rank{rank}.pt``, which this returns in rank order.

    Results travel through files, not a multiprocessing queue: a queued tensor is a file descriptor that the parent
    can only take while its child still lives (CI lost one that way). forkserver with ``preload`` imported: children
    fork from a clean server, so they start fast (spawn re-imports everything in each) and cannot deadlock (plain
    fork after torch has used its OpenMP pool can). ``join=True`` re-raises a rank's error here.
    """
    mp.get_context("forkserver").set_forkserver_preload(["torch", *preload])
    torch.multiprocessing.start_processes(worker, args=(world, free_port(), *args, str(out)), nprocs=world, join=True,
                                          start_method="forkserver")
    return [torch.load(Path(out) / f"rank{r}.pt", weights_only=True) for r in range(world)]
