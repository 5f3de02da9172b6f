"""open-mmlab mmpretrain / mmselfsup / mmclassification files: ``{meta, state_dict}``.

The model's ``backbone.`` is the evaluation copy (``neck.``, ``head.``, momentum/target encoders, queues and
``data_preprocessor`` are dropped). mmcv's ResNet uses torchvision's key names (``conv1``, ``bn1``, ``layer<i>``,
``downsample.0/1``; ``style='pytorch'`` puts the stride in the 3x3 conv like torchvision). mmpretrain's
``VisionTransformer`` names differ from timm's and are remapped: ``patch_embed.projection -> patch_embed.proj``,
``layers.<i> -> blocks.<i>``, ``ln1/ln2 -> norm1/norm2``, ``ffn.layers.0.0 -> mlp.fc1``, ``ffn.layers.1 -> mlp.fc2``
and the final ``ln1 -> norm`` (``out_type='cls_token'`` with ``final_norm``: the final-norm cls token). Full
training runs also store ``message_hub`` with mmengine ``HistoryBuffer`` objects; the safe loader refuses those
files and says how to extract ``state_dict``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_resnet

_VIT_RENAMES = (
    (re.compile(r"^patch_embed\.projection\."), "patch_embed.proj."),
    (re.compile(r"^layers\.(\d+)\.ln1\."), r"blocks.\1.norm1."),
    (re.compile(r"^layers\.(\d+)\.ln2\."), r"blocks.\1.norm2."),
    (re.compile(r"^layers\.(\d+)\.ffn\.layers\.0\.0\."), r"blocks.\1.mlp.fc1."),
    (re.compile(r"^layers\.(\d+)\.ffn\.layers\.1\."), r"blocks.\1.mlp.fc2."),
    (re.compile(r"^layers\.(\d+)\.attn\."), r"blocks.\1.attn."),
    (re.compile(r"^ln1\."), "norm."),
)


class MMPretrain(Reader):
    name = "mmpretrain"
    upstream = "open-mmlab/mmpretrain (mmselfsup, mmcls)"
    evaluation_copy = "backbone; neck, head and momentum copies dropped"
    signature = ("backbone.patch_embed.projection.weight", "backbone.layers.0.ln1.weight")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        p = "backbone."
        if p + "patch_embed.projection.weight" in sd and p + "layers.0.ln1.weight" in sd:
            return Match(p, "ViT (mmcv names)")
        if "meta" in extras and is_resnet(sd, p):
            return Match(p, "ResNet")
        return None

    def rename(self, sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "patch_embed.projection.weight" not in sub:
            return sub  # ResNet: torchvision names already
        out: dict[str, torch.Tensor] = {}
        for k, v in sub.items():
            for rx, repl in _VIT_RENAMES:
                new, n = rx.subn(repl, k)
                if n:
                    k = new
                    break
            out[k] = v
        return out
