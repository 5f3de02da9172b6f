"""Lightly's ``lightly.models`` helper paths that training scripts import (``sslhub.models.utils``).

Lightly's model building blocks live in sslhub by concern: heads in :mod:`sslhub.heads`, masked ViTs and
ResNetGenerator in :mod:`sslhub.backbones`, memory banks in :mod:`sslhub.losses` (see README, "Porting from
Lightly").
"""
