"""sslhub: model zoo and checkpoint hub for self-supervised vision models.

Submodules are imported lazily so that ``import sslhub`` stays cheap (no torchvision/timm until needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sslhub._version import __version__

# public name -> module that defines it
_LAZY = {
    "load_pretrained": "sslhub.loading",
    "convert": "sslhub.loading",
    "info": "sslhub.loading",
    "create_backbone": "sslhub.backbones",
    "train": "sslhub.training",
    "list_recipes": "sslhub.recipes",
    "get_recipe": "sslhub.recipes",
    "CheckpointError": "sslhub.checkpoints.io",
    "export": "sslhub.export",
    "list_pretrained": "sslhub.hub.registry",
    "load_embeddings": "sslhub.evaluation.shards",
    "eval_transform": "sslhub.evaluation.features",
    "data_config": "sslhub.evaluation.features",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from sslhub.backbones import create_backbone as create_backbone
    from sslhub.recipes import get_recipe as get_recipe, list_recipes as list_recipes
    from sslhub.training import train as train
    from sslhub.checkpoints.io import CheckpointError as CheckpointError
    from sslhub.loading import convert as convert, info as info, load_pretrained as load_pretrained
    from sslhub.hub.registry import list_pretrained as list_pretrained
    from sslhub.export import export as export
    from sslhub.evaluation.features import data_config as data_config, eval_transform as eval_transform
    from sslhub.evaluation.shards import load_embeddings as load_embeddings


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sslhub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
