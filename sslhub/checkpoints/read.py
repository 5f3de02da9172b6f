"""Stage 2 of loading, *read*: a local file or folder -> its tensors, the wrapper's other entries and its header.

Safely: torch files go through :func:`~sslhub.checkpoints.io.load_torch_file` (``weights_only=True``; no code
from a file ever runs), safetensors through :func:`~sslhub.checkpoints.io.read_safetensors`. A Hugging Face
folder gives its ``model.safetensors`` (or shard index) and its ``config.json`` (for the readers, under the
wrapper key ``"config.json"``). Nothing here decides what the tensors are: that is the recognise stage's job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from sslhub.checkpoints.hf_files import (
    CONFIG_KEY,
    config_beside,
    read_sharded,
    weights_in,
)
from sslhub.checkpoints.io import (
    CheckpointError,
    is_safetensors_file,
    load_torch_file,
    read_safetensors,
)
from sslhub.checkpoints.spec import Checkpoint

__all__ = ["Checkpoint", "read_checkpoint", "unwrap_checkpoint"]


def read_checkpoint(path: str | os.PathLike, *, backbone_only: bool = False) -> Checkpoint:
    """Read any supported file: (state dict, other top-level entries, safetensors metadata).

    With ``backbone_only``, sslhub safetensors have only their backbone's tensors read (the rest is never touched).
    """
    path = weights_in(Path(path))  # a published / run / Hugging Face folder: its model.safetensors (or shard index)
    sharded = path.name.endswith(".safetensors.index.json") and path.is_file()
    if sharded or (path.is_file() and is_safetensors_file(path)):
        tensors, meta = read_sharded(path) if sharded else read_safetensors(path, backbone_only=backbone_only)
        extras = json.loads(meta["extras"]) if "extras" in meta else {}
        if not tensors:
            raise CheckpointError(f"{path} holds no tensors")
        if meta.get("format") != "sslhub":  # transformers / timm Hub files: their config.json says the model
            cfg = config_beside(path)
            if cfg is not None:
                extras = {**extras, CONFIG_KEY: cfg}
        return Checkpoint(tensors, extras, meta)
    obj = load_torch_file(path)
    sd, extras = unwrap_checkpoint(obj, str(path))
    return Checkpoint(sd, extras, {})


def unwrap_checkpoint(obj: Any, path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a loaded torch object into (state dict, other top-level entries)."""
    from sslhub.checkpoints.readers import (
        unwrap_nested,  # nested wrappers are a layout's knowledge
    )

    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    nested = unwrap_nested(obj)
    if nested is not None:
        return nested
    for key in ("state_dict", "model", "teacher", "module"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            extras = {k: v for k, v in obj.items() if k != key}
            return dict(inner), extras
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), {}
    if not obj or (isinstance(obj.get("state_dict"), Mapping) and not obj["state_dict"]):
        raise CheckpointError(f"{path} holds an empty state dict: there are no weights to load")
    raise CheckpointError(
        f"{path} has no state dict of tensors; its top-level keys are {sorted(map(str, obj))[:12]}. "
        "Expected a Lightly/Lightning checkpoint ({'state_dict': ...}) or a plain state dict."
    )
