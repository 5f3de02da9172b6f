"""Momentum-encoder utilities with Lightly's names (``lightly.models.utils``).

``cosine_schedule`` / ``cosine_warmup_schedule`` live in :mod:`sslhub.utils.scheduler` (re-exported here for
the callers that import them from the heads).
"""

from __future__ import annotations

import torch
from torch import nn

from sslhub.utils.scheduler import cosine_schedule, cosine_warmup_schedule

__all__ = [
    "activate_requires_grad",
    "cosine_schedule",
    "cosine_warmup_schedule",
    "deactivate_requires_grad",
    "normalize_weight",
    "update_momentum",
]


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
