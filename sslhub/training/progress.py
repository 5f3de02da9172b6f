"""What a training run tells the person who waits for it: the whole run's ETA, a warning when the throughput
collapses, a warning when the batch size does not fit the data, the summary at the end and what Ctrl-C kept."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["RunClock", "batch_fit_warning", "format_duration", "interrupted_message", "run_summary"]

# An epoch slower than this fraction of the best epoch so far is a collapse worth saying (another process took
# the cores, the machine swaps, thermal throttling), not noise.
COLLAPSE_RATIO = 0.4


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class RunClock:
    """The whole run's ETA from the steps done so far, monitor passes and set-up included (wall clock per step
    since the first step of this process, times the steps left)."""

    def __init__(self, total_steps: int, done_steps: int = 0) -> None:
        self.total = max(1, total_steps)
        self.start_done = done_steps
        self.t0: float | None = None
        self.best_rate = 0.0

    def started(self) -> None:
        """Call at the first step (set-up and the random-init monitor are not the training's pace)."""
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def eta(self, done_steps: int) -> float:
        """Seconds left for the whole run (inf until a step has been timed)."""
        if self.t0 is None or done_steps <= self.start_done:
            return math.inf
        per_step = (time.perf_counter() - self.t0) / (done_steps - self.start_done)
        return per_step * (self.total - done_steps)

    def epoch_done(self, epoch: int, epochs: int, images_per_s: float, done_steps: int) -> None:
        """Log the run's ETA; warn when this epoch's throughput is a fraction of the best one's."""
        if epoch > 1 and self.best_rate > 0 and images_per_s < COLLAPSE_RATIO * self.best_rate:
            load = ""
            try:
                load = f"; load average {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores"
            except (AttributeError, OSError):
                pass
            logger.warning("epoch %d: throughput fell to %.0f img/s from %.0f img/s%s. Other processes may be "
                           "using the cores (see `top`); the run goes on, slower", epoch, images_per_s,
                           self.best_rate, load)  # fmt: skip
        if epoch > 1 or epochs == 1:  # the first epoch includes warm-up (allocations, workers starting)
            self.best_rate = max(self.best_rate, images_per_s)
        if epoch < epochs:
            logger.info("epoch %d/%d done; the run ends in about %s (%.0f img/s)", epoch, epochs,
                        format_duration(self.eta(done_steps)), images_per_s)  # fmt: skip


def batch_fit_warning(num_images: int, batch_size: int, epochs: int) -> str | None:
    """A warning when ``batch_size`` does not suit ``num_images``: fewer than 8 steps per epoch, or more than a
    tenth of the images dropped every epoch (the last, incomplete batch is dropped)."""
    if batch_size <= 0 or num_images < batch_size:
        return None
    steps = num_images // batch_size
    dropped = num_images - steps * batch_size
    if steps >= 8 and dropped <= num_images / 10:
        return None
    fit = max(8, 2 ** int(math.log2(max(1, num_images // 8))))
    fit = min(fit, batch_size)
    return (f"batch_size={batch_size} on {num_images} images: {steps} optimizer step(s) per epoch "
            f"({steps * epochs} in {epochs} epochs), {dropped} images left out of every epoch. "
            f"For data this small try -b {fit} (--set batch_size={fit}; the lr scales with it)")  # fmt: skip


def _rows(out: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def run_summary(out: str | os.PathLike) -> list[str]:
    """Lines that end a run: time, loss, kNN vs random init (with the evaluation's standard error), files."""
    out = Path(out)
    rows = _rows(out)
    lines = []
    if rows:
        last = rows[-1]
        lines.append(f"trained      {last['epoch']} epochs in {format_duration(last.get('elapsed_s', math.nan))} "
                     f"({last.get('images_per_s', 0):.0f} img/s in the last epoch); loss {rows[0]['loss']:.3f} -> "
                     f"{last['loss']:.3f}")  # fmt: skip
        knn = next((r for r in reversed(rows) if "knn_top1" in r), None)
        init = next((r["knn_top1_random_init"] for r in rows if "knn_top1_random_init" in r), None)
        if knn is not None:
            text = f"kNN top-1    {knn['knn_top1']:.2f}% after epoch {knn['epoch']}"
            if init is not None:
                text += f" vs {init:.2f}% at random init ({knn['knn_top1'] - init:+.2f} points)"
            lines.append(text)
    files = [f for f in ("model.safetensors", "checkpoint.ckpt", "checkpoints/last.ckpt", "metrics.jsonl",
                         "curves.png", "config.yaml") if (out / f).exists()]  # fmt: skip
    if files:
        lines.append(f"files        {out}/: {', '.join(files)}")
    return lines


def interrupted_message(out: str | os.PathLike, resume_command: str) -> str:
    """What Ctrl-C kept: the last finished epoch's checkpoint and how to continue from it."""
    out = Path(out)
    rows = _rows(out)
    if (out / "checkpoints" / "last.ckpt").exists() and rows:
        return (f"interrupted: {out / 'checkpoints' / 'last.ckpt'} holds the {rows[-1]['epoch']} finished epoch(s) "
                f"(the epoch under way is lost). Continue with: {resume_command}")  # fmt: skip
    return f"interrupted before the first epoch ended: nothing to resume in {out}; run the command again to start over"
