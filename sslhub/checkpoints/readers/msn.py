"""facebookresearch/msn pre-training files (``vits16_800ep.pth.tar``, ``vitl7_200ep.pth.tar``, ...).

``src/msn_train.py`` saves ``{encoder, opt, prototypes, target_encoder, epoch, loss, batch_size, world_size, lr,
temperature}``; the encoders are DDP-wrapped (``module.``) ``src/deit.py`` ViTs: timm key names with a class token,
LayerNorm eps 1e-6, and the projection head as ``fc`` (``fc1``, ``bn1``, ``fc2``, ``bn2``, ``fc3``); ``prototypes``
is a top-level tensor. Evaluation copy: ``target_encoder`` with ``fc`` dropped, which is what ``linear_eval.py``
loads (``checkpoint['target_encoder']``, ``encoder.fc = None``); features: the class token after the final norm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sslhub.checkpoints.readers.base import Match, Reader, StateDict
from sslhub.checkpoints.readers.ijepa import target_prefix, unwrap_models


class MSN(Reader):
    name = "msn"
    method = "msn"
    upstream = "facebookresearch/msn"
    evaluation_copy = "target_encoder, projection head fc dropped (linear_eval.py); encoder and prototypes dropped"
    drop = ("fc.",)
    signature = ("target_encoder.module.patch_embed.proj.weight", "target_encoder.patch_embed.proj.weight", "prototypes")

    def unwrap(self, obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        if not isinstance(obj.get("prototypes"), torch.Tensor):
            return None
        return unwrap_models(obj, ("encoder", "target_encoder"))

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        p = target_prefix(sd, "cls_token")
        if p is None or "prototypes" not in sd or p + "patch_embed.proj.weight" not in sd:
            return None
        return Match(p, "pre-training checkpoint")
