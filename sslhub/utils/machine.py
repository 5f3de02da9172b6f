"""Worker processes, pinned memory and torch threads, chosen from the machine: the one rule every command uses.

Why this rule (issue 21/24): on a 2-core machine the default of two torch threads plus a training process that
also augments left the cores oversubscribed; on a machine that is already busy (load average at or above its core
count) OpenMP threads that wait for each other made a step several times slower than one thread did (5.5x measured
on a loaded 2-core machine). So: DataLoader workers = cores - 1 (at most 8), torch threads = the cores the workers
leave (at least 1; at most 4 next to a GPU, where the host only feeds it), and 1 thread when the machine is busy.
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
        num_workers: the user's choice, kept as is; None: ``cores - 1``, at most 8, and 0 for a single pass over
            at most 4 batches (starting workers would cost more than it saves).
        items, batch_size: the dataset's size and the batch size, for that small-data rule.
        epochs: passes over the data; workers persist across passes when there are several.
    """
    dev = str(getattr(device, "type", device) or "cpu")
    if num_workers is None:
        num_workers = max(0, min(MAX_WORKERS, available_cores() - 1))
        if epochs <= 1 and items is not None and batch_size and items <= 4 * batch_size:
            num_workers = 0
    return LoaderSettings(num_workers=int(num_workers), pin_memory=dev.startswith("cuda"),
                          persistent_workers=int(num_workers) > 0 and epochs > 1)  # fmt: skip


def torch_threads(num_workers: int, device: str | object = "cpu") -> int:
    """Intra-op threads for the main process next to ``num_workers`` DataLoader workers (see the module's why).

    ``OMP_NUM_THREADS`` set by the user wins. A busy machine (load average >= cores) gets 1 thread, with a warning
    that says so once per process."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = available_cores()
    dev = str(getattr(device, "type", device) or "cpu")
    threads = max(1, cores - num_workers)
    if dev.startswith("cuda"):
        threads = min(threads, 4)
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
