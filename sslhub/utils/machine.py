"""Worker processes, pinned memory and torch threads, chosen from the machine: the one rule every command uses.

Why this rule (issues 21, 24): on a CPU device the model step is the work; batched augmentation and decoding are
a few percent of it (2,600-3,200 img/s per core for SimCLR's views at 32 px vs ~370 img/s for the whole step on 2
cores, training/README.md), and `--augment-on workers` vs `device` measured the same on the 2-core machine. So a
CPU device gets every core as torch threads and 1 worker per 8 cores (at least 1 from 2 cores on) that decodes and
augments beside the step. A GPU device gets cores - 1 workers (at most 8; the host feeds the GPU) and at most 4
threads (16 threads next to 12 workers made the augmentation ~100x slower on an H100 box). A machine that is
already busy (load average >= its cores) gets 1 thread: OpenMP threads that wait for each other made a step 5.5x
slower than one thread on a loaded 2-core machine (issue 21), and a warning says so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

__all__ = ["LoaderSettings", "available_cores", "loader_settings", "machine_load", "torch_threads"]

logger = logging.getLogger(__name__)

MAX_WORKERS = 8


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; cgroup-limited containers included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def machine_load() -> float | None:
    """The 1-minute load average, or None where the system does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class LoaderSettings:
    """Keyword arguments for ``torch.utils.data.DataLoader`` (``**settings.kwargs()``)."""

    num_workers: int
    pin_memory: bool
    persistent_workers: bool

    def kwargs(self) -> dict[str, object]:
        return {"num_workers": self.num_workers, "pin_memory": self.pin_memory,
                "persistent_workers": self.persistent_workers}  # fmt: skip


def loader_settings(device: str | object = "cpu", *, num_workers: int | None = None, items: int | None = None,
                    batch_size: int | None = None, epochs: int = 1) -> LoaderSettings:  # fmt: skip
    """The DataLoader settings for a loader on ``device``.

    Args:
        device: where the batches go (``cuda...``: pinned memory, so that the copy does not block the host).
        num_workers: the user's choice, kept as is; None: on a GPU ``cores - 1`` (at most 8), on a CPU one per 8
            cores (at least 1 from 2 cores on); 0 for a single pass over at most 4 batches (starting workers would
            cost more than it saves).
        items, batch_size: the dataset's size and the batch size, for that small-data rule.
        epochs: passes over the data; workers persist across passes when there are several.
    """
    dev = str(getattr(device, "type", device) or "cpu")
    if num_workers is None:
        cores = available_cores()
        if dev.startswith("cuda"):
            num_workers = max(0, min(MAX_WORKERS, cores - 1))
        else:  # the step is the work on a CPU: a worker per 8 cores decodes and augments beside it
            num_workers = min(max(0, cores - 1), max(1, cores // 8))
        if epochs <= 1 and items is not None and batch_size and items <= 4 * batch_size:
            num_workers = 0
    return LoaderSettings(num_workers=int(num_workers), pin_memory=dev.startswith("cuda"),
                          persistent_workers=int(num_workers) > 0 and epochs > 1)  # fmt: skip


def torch_threads(num_workers: int, device: str | object = "cpu") -> int:
    """Intra-op threads of the main process next to ``num_workers`` DataLoader workers (see the module's why).

    ``OMP_NUM_THREADS`` set by the user wins. A busy machine (load average >= cores) gets 1 thread, with a warning
    that says so once per process."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = available_cores()
    dev = str(getattr(device, "type", device) or "cpu")
    # CPU device: the workers only decode and augment (a few % of a step), so the step gets every core
    threads = min(4, max(1, cores - num_workers)) if dev.startswith("cuda") else cores
    load = machine_load()
    if load is not None and load >= cores and threads > 1:
        global _warned_busy
        if not _warned_busy:
            _warned_busy = True
            logger.warning("this machine is busy (load average %.1f on %d cores): using 1 torch thread instead of "
                           "%d, since threads that wait for each other are slower than one; expect a lower "
                           "throughput than on an idle machine (set OMP_NUM_THREADS=N to choose)", load, cores, threads)  # fmt: skip
        threads = 1
    return threads


_warned_busy = False
