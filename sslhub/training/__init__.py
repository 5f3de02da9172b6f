"""Training: ``sslhub.train`` runs a recipe on an image folder (see :mod:`sslhub.training.trainer`).

The trainer is imported on first use, so that the run-folder helpers (:mod:`sslhub.training.run_dir`,
:mod:`sslhub.training.run_results`) stay cheap to import for the hub and the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Preempted", "TrainingError", "train"]

if TYPE_CHECKING:  # pragma: no cover
    from sslhub.training.preempt import Preempted
    from sslhub.training.trainer import TrainingError, train


def __getattr__(name: str) -> Any:
    if name == "Preempted":
        return importlib.import_module("sslhub.training.preempt").Preempted
    if name in __all__:
        return getattr(importlib.import_module("sslhub.training.trainer"), name)
    raise AttributeError(f"module 'sslhub.training' has no attribute {name!r}")
