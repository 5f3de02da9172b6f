"""Training: ``sslhub.train`` runs a recipe on an image folder (see :mod:`sslhub.training.trainer`)."""

from sslhub.training.preempt import Preempted
from sslhub.training.trainer import TrainingError, train

__all__ = ["Preempted", "TrainingError", "train"]
