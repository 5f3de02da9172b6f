"""Learning-rate and momentum schedules with Lightly's names and numbers (``lightly.utils.scheduler``).

Port with ``from lightly.utils.scheduler import X`` -> ``from sslhub.utils.scheduler import X``. All return python
floats (safe in ``torch.load(weights_only=True)`` checkpoints).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch

__all__ = ["CosineWarmupScheduler", "cosine_schedule", "cosine_warmup_schedule", "linear_warmup_schedule"]


def cosine_schedule(
    step: int,
    max_steps: int,
    start_value: float,
    end_value: float,
    period: int | None = None,
) -> float:
    """Cosine interpolation from ``start_value`` (step 0) to ``end_value`` (step ``max_steps - 1``).

    With ``period`` the cosine cycles every ``period`` steps instead.
    """
    if step < 0:
        raise ValueError(f"Current step number {step} can't be negative.")
    if max_steps < 0:
        raise ValueError(f"Total step number {max_steps} can't be negative.")
    if period is None and step > max_steps:
        warnings.warn(f"Current step number {step} exceeds max_steps {max_steps}.", RuntimeWarning, stacklevel=2)
    if period is not None and period <= 0:
        raise ValueError(f"Period {period} must be >= 1")
    if period is not None:
        return float(end_value - (end_value - start_value) * (math.cos(2 * math.pi * step / period) + 1) / 2)
    if max_steps <= 1 or step >= max_steps - 1:
        # Also covers Lightning stepping the scheduler once more after the last epoch.
        return float(end_value)
    return float(end_value - (end_value - start_value) * (math.cos(math.pi * step / (max_steps - 1)) + 1) / 2)


def cosine_warmup_schedule(
    step: int,
    max_steps: int,
    start_value: float,
    end_value: float,
    warmup_steps: int,
    warmup_start_value: float,
    warmup_end_value: float | None = None,
    period: int | None = None,
) -> float:
    """Linear warmup for ``warmup_steps`` steps followed by :func:`cosine_schedule`."""
    if warmup_steps < 0:
        raise ValueError(f"Warmup steps {warmup_steps} can't be negative.")
    if warmup_steps > max_steps:
        raise ValueError(f"Warmup steps {warmup_steps} must be <= max_steps.")
    if step > max_steps:
        warnings.warn(f"Current step number {step} exceeds max_steps {max_steps}.", RuntimeWarning, stacklevel=2)
    if warmup_end_value is None:
        warmup_end_value = start_value
    if step < warmup_steps:
        # step + 1 so the warmup ends exactly at warmup_end_value (and never yields a 0 learning rate).
        return float(warmup_start_value + (warmup_end_value - warmup_start_value) * (step + 1) / warmup_steps)
    return cosine_schedule(
        step=step - warmup_steps,
        max_steps=max_steps - (warmup_steps if period is None else 1),
        start_value=start_value,
        end_value=end_value,
        period=period,
    )


def linear_warmup_schedule(step: int, warmup_steps: int, start_value: float, end_value: float) -> float:
    """Linear ramp from ``start_value`` (step 0) to ``end_value`` (step ``warmup_steps``), then constant."""
    if warmup_steps < 0:
        raise ValueError(f"Warmup steps {warmup_steps} can't be negative.")
    if step < 0:
        raise ValueError(f"Current step number {step} can't be negative.")
    if start_value < 0:
        raise ValueError(f"Start value {start_value} can't be negative.")
    if end_value <= 0:
        raise ValueError(f"End value {end_value} can't be non-positive.")
    if start_value > end_value:
        raise ValueError(f"Start value {start_value} must be less than or equal to end value {end_value}.")
    if step < warmup_steps:
        return float(start_value + step / warmup_steps * (end_value - start_value))
    return float(end_value)


class CosineWarmupScheduler(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` scaling the learning rate by :func:`cosine_warmup_schedule` (``epoch`` may count steps).

    Args:
        optimizer: Optimizer whose learning rates are scaled.
        warmup_epochs: Warmup length.
        max_epochs: Schedule length.
        last_epoch: Index of the last epoch (-1 to start).
        start_value: Factor after the warmup.
        end_value: Factor at the end.
        period: Optional cosine period (see :func:`cosine_schedule`).
        warmup_start_value: Factor at the start of the warmup.
        warmup_end_value: Factor at the end of the warmup (default ``start_value``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_epochs: int,
        max_epochs: int,
        last_epoch: int = -1,
        start_value: float = 1.0,
        end_value: float = 0.001,
        period: Optional[int] = None,
        warmup_start_value: float = 0.0,
        warmup_end_value: Optional[float] = None,
    ) -> None:
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.start_value = start_value
        self.end_value = end_value
        self.period = period
        self.warmup_start_value = warmup_start_value
        self.warmup_end_value = warmup_end_value
        super().__init__(optimizer=optimizer, lr_lambda=self.scale_lr, last_epoch=last_epoch)

    def scale_lr(self, epoch: int) -> float:
        """The learning-rate factor at ``epoch``."""
        return cosine_warmup_schedule(
            step=epoch,
            max_steps=self.max_epochs,
            start_value=self.start_value,
            end_value=self.end_value,
            warmup_steps=self.warmup_epochs,
            warmup_start_value=self.warmup_start_value,
            warmup_end_value=self.warmup_end_value,
            period=self.period,
        )
