"""Preemption: SIGTERM/SIGINT during ``train`` save a resumable state instead of losing the epoch in progress.

SLURM (``--signal``, and at the time limit), Kubernetes, spot instances and ``torchrun`` stop a job with SIGTERM
and kill it (SIGKILL) a grace period later; Ctrl-C sends SIGINT. While :class:`StopSignals` is active, the first
such signal only sets a flag: the training loop finishes the optimizer step in progress, saves
``checkpoints/last.ckpt`` with the position inside the epoch (the batches done, the epoch's running loss), prints one
line saying where it stopped and exits non-zero (128 + the signal number, as a shell reports a killed process).
``--resume`` then continues from that batch; with augmentation in the training process (``--augment-on device``,
or no DataLoader workers) the resumed run ends bit-identical to an uninterrupted one, as after ``kill -9``.
A second signal stops at once (SIGINT: ``KeyboardInterrupt``; SIGTERM: the default action), the last state
written stays whole (writes are atomic).
"""

from __future__ import annotations

import itertools
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

from sslhub.errors import SslhubError

__all__ = ["Preempted", "SkipSampler", "StopSignals", "check_training_state"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# what every state written by the trainer holds, and what each must be
_STATE_KEYS = {"model": dict, "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict, "epoch": int,
               "global_step": int}  # fmt: skip


class Preempted(SslhubError, RuntimeError):
    """Training stopped on a signal after saving a resumable state; ``signum`` is the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """Within the block, the first SIGTERM/SIGINT sets :attr:`signum` instead of stopping the process.

    Installed only in the main thread (Python delivers signals there); elsewhere it does nothing. The previous
    handlers come back on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # a second signal: the user (or the scheduler) wants out now
            self.__exit__()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()


class SkipSampler:
    """A sampler that yields ``base``'s indices after the first :attr:`skip` (the batches a preempted run did).

    ``base`` draws its whole permutation as usual (same generator use), so the remaining indices are those an
    uninterrupted epoch would have used.
    """

    def __init__(self, base: Any) -> None:
        self.base = base
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        it = iter(self.base)
        skip, self.skip = self.skip, 0  # one epoch only
        return itertools.islice(it, skip, None)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)


def check_training_state(state: Any, path: Path) -> dict[str, Any]:
    """``state`` if it is a training state as the trainer writes it, else a clear error naming ``path``."""
    from sslhub.training.run_dir import RunDirError

    if not isinstance(state, dict):
        raise RunDirError(f"{path} is not a training state of sslhub train (it holds a {type(state).__name__}); "
                          "--resume needs the run's own checkpoints/last.ckpt. Restore it, or start over with --force")
    missing = [k for k, t in _STATE_KEYS.items() if not isinstance(state.get(k), t) or isinstance(state.get(k), bool)]
    if missing:
        raise RunDirError(f"{path} is not a training state of sslhub train (missing or wrong: {', '.join(missing)}); "
                          "--resume needs the run's own checkpoints/last.ckpt (a model-only file cannot be resumed). "
                          "Restore it, or start over with --force")
    if state["epoch"] < 0 or state["global_step"] < 0 or int(state.get("batch_in_epoch", 0) or 0) < 0:
        raise RunDirError(f"{path}: negative epoch or step; the file is damaged. Restore it, or start over with --force")
    return state
