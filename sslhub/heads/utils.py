"""Momentum-encoder and schedule utilities with Lightly's names (``lightly.models.utils`` / ``lightly.utils.scheduler``)."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn


def deactivate_requires_grad(model: nn.Module) -> None:
    """Sets ``requires_grad=False`` on all parameters (e.g. of a momentum encoder)."""
    for param in model.parameters():
        param.requires_grad = False


def activate_requires_grad(model: nn.Module) -> None:
    """Sets ``requires_grad=True`` on all parameters."""
    for param in model.parameters():
        param.requires_grad = True


@torch.no_grad()
def update_momentum(model: nn.Module, model_ema: nn.Module, m: float) -> None:
    """EMA update ``ema = m * ema + (1 - m) * model`` over parameters (buffers are left untouched)."""
    ema_params = list(model_ema.parameters())
    torch._foreach_mul_(ema_params, m)
    torch._foreach_add_(ema_params, list(model.parameters()), alpha=1.0 - m)


@torch.no_grad()
def normalize_weight(weight: nn.Parameter, dim: int = 1, keepdim: bool = True) -> None:
    """Normalises ``weight`` in place to unit L2 norm along ``dim``."""
    weight.div_(torch.norm(weight, dim=dim, keepdim=keepdim))


def cosine_schedule(
    step: int,
    max_steps: int,
    start_value: float,
    end_value: float,
    period: int | None = None,
) -> float:
    """Cosine interpolation from ``start_value`` (step 0) to ``end_value`` (step ``max_steps - 1``).

    With ``period`` the cosine cycles every ``period`` steps instead. Returns a python float (safe for
    ``torch.load(weights_only=True)`` checkpoints).
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
