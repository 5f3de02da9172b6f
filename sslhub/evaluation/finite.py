"""Refuse to write numbers that are not numbers: NaN/Inf embeddings and results never reach a file unasked.

A checkpoint with NaN weights gives NaN embeddings, and a kNN over them still prints an accuracy (every distance
ties). :func:`check_finite` is called where a result is written (``embed``) and before an evaluation starts from a
model whose weights are not finite (``eval``); ``allow=True`` (``--allow-non-finite``) writes them anyway, with a
warning.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import torch

from sslhub.checkpoints.remap import non_finite
from sslhub.errors import SslhubError

logger = logging.getLogger(__name__)

__all__ = ["NonFiniteError", "check_finite", "check_model_finite", "non_finite_tensors"]


class NonFiniteError(SslhubError, ValueError):
    """Values that are NaN or infinite where a result is written; the message says where and what to do."""


def non_finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return non_finite({name: t for name, t in tensors if torch.is_tensor(t)})


def check_finite(values: torch.Tensor, what: str, *, allow: bool = False) -> None:
    """Raise :class:`NonFiniteError` when ``values`` (rows of results) hold NaN/Inf, unless ``allow`` (then warn)."""
    bad = ~torch.isfinite(values.detach())
    if not bool(bad.any()):
        return
    rows = int(bad.reshape(len(bad), -1).any(dim=1).sum()) if bad.ndim else 1
    msg = (f"{rows} of {len(values) if values.ndim else 1} rows of {what} are not finite (NaN or Inf); the model's "
           "weights are likely not finite (see the warning when it was loaded)")
    if allow:
        logger.warning("%s; written anyway (--allow-non-finite)", msg)
        return
    raise NonFiniteError(f"{msg}. Nothing was written. Use a checkpoint of a healthy run, or pass --allow-non-finite "
                         "to write them anyway")


def check_model_finite(model: Any, source: str, *, allow: bool = False) -> None:
    """Refuse to evaluate a model whose weights are not finite (its results would be meaningless), unless
    ``allow``."""
    bad = non_finite_tensors([*model.named_parameters(), *model.named_buffers()])
    if not bad:
        return
    msg = (f"{source}: {len(bad)} weight tensor(s) are not finite (NaN or Inf): {', '.join(bad[:5])}"
           f"{' ...' if len(bad) > 5 else ''}")
    if allow:
        logger.warning("%s; evaluated anyway (--allow-non-finite)", msg)
        return
    raise NonFiniteError(f"{msg}; results from them would be meaningless and nothing was computed. Use a checkpoint "
                         "of a healthy run, or pass --allow-non-finite to evaluate it anyway")
