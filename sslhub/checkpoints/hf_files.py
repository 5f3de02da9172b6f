"""Hugging Face folders: the ``config.json`` that lies beside a ``model.safetensors``, and sharded weights.

``transformers``' ``save_pretrained`` and timm's ``save_for_hf`` write ``config.json`` next to the weights; the
Hugging Face cache keeps both in the same snapshot folder (:func:`sslhub.hub.hf.hf_hub_resolve` fetches both).
The config says what the tensors cannot (heads, registers, pooling, the timm architecture). It is read as plain
JSON and handed to the readers as the wrapper entry ``"config.json"``; sslhub's own files never get one (their
header already says everything), so a ``config.json`` written for timm by ``sslhub publish`` is not read back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from sslhub.checkpoints.io import CheckpointError, read_safetensors

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_KEY", "INDEX_NAME", "config_beside", "read_sharded", "weights_in"]

CONFIG_KEY = "config.json"  # the wrapper entry readers look for
INDEX_NAME = "model.safetensors.index.json"


def weights_in(path: Path) -> Path:
    """The weights file of a folder (``model.safetensors``, else a shard index); other paths unchanged."""
    if path.is_dir():
        for name in ("model.safetensors", INDEX_NAME):
            if (path / name).is_file():
                return path / name
    return path


def config_beside(weights: Path) -> dict[str, Any] | None:
    """The ``config.json`` in the folder of ``weights`` as a dict, or None when there is none (or it is no JSON
    object: the tensors alone are then read as before, and the reason is logged)."""
    cfg = weights.parent / CONFIG_KEY
    if not cfg.is_file():
        return None
    try:
        obj = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        logger.warning("%s is not readable JSON (%s); reading %s without it", cfg, e, weights.name)
        return None
    return obj if isinstance(obj, dict) else None


def read_sharded(index: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of a sharded checkpoint (``model.safetensors.index.json`` + ``model-0000N-of-0000M``)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index} is not a safetensors shard index ({type(e).__name__}: {e})") from None
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    for name in shards:
        shard = index.parent / name
        if Path(name).name != name or not shard.is_file():
            raise CheckpointError(f"{index} names the shard {name!r}, which is not in {index.parent}; download it too")
        part, meta = read_safetensors(shard)
        tensors.update(part)
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise CheckpointError(f"{index}: the shards lack {len(missing)} listed tensors (e.g. {missing[0]!r})")
    return tensors, meta
