"""Old import paths of the loading pipeline, kept working.

``load_pretrained`` now lives in :mod:`sslhub.loading` (above both the hub and the checkpoint layers; the stages
are :mod:`~sslhub.checkpoints.read`, :mod:`~sslhub.checkpoints.recognise`, :mod:`~sslhub.checkpoints.remap` and
:mod:`~sslhub.checkpoints.build`). The checkpoint-layer names are re-exported here; the three that resolve
sources are looked up in :mod:`sslhub.loading` on first use, so this module never imports a layer above it.
"""

from __future__ import annotations

import importlib
from typing import Any

from sslhub.checkpoints.build import FEATURES, TokenFeatures, build_from_state
from sslhub.checkpoints.read import read_checkpoint
from sslhub.checkpoints.remap import BackboneState

__all__ = ["FEATURES", "BackboneState", "TokenFeatures", "build_from_state", "read_checkpoint"]

_ABOVE = ("load_pretrained", "load_backbone_state", "resolve_path")  # defined in sslhub.loading


def __getattr__(name: str) -> Any:
    if name in _ABOVE:
        return getattr(importlib.import_module("sslhub.loading"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
