"""Training: ``sslhub.train`` runs a recipe on an image folder (see :mod:`sslhub.training.trainer`)."""

from sslhub.training.trainer import TrainingError, train

__all__ = ["TrainingError", "train"]
