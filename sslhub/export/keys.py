"""Key renaming between torchvision, timm and Detectron2 layouts (pure functions on state dicts).

Every function maps *every* input key or raises :class:`KeyMappingError`; nothing is dropped silently except the
classifier heads and counters that a rule names explicitly.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, TypeVar

from sslhub.errors import SslhubError

__all__ = [
    "KeyMappingError",
    "timm_vit_to_torchvision",
    "torchvision_resnet_to_detectron2",
    "torchvision_vit_to_timm",
]

T = TypeVar("T")


class KeyMappingError(SslhubError, ValueError):
    """A state dict has a key that the conversion has no rule for."""


# --- torchvision ResNet -> Detectron2 ---------------------------------------------------------------------------
# Detectron2 names (detectron2/modeling/backbone/resnet.py, tools/convert-torchvision-to-d2.py): the stem conv is
# ``stem.conv1`` with its norm as a child ``stem.conv1.norm``; stages ``layer1..4`` are ``res2..res5``; each
# ``bnN`` is the ``norm`` child of ``convN``; ``downsample.0/1`` is ``shortcut`` / ``shortcut.norm``.
_BN_SUFFIX = r"(weight|bias|running_mean|running_var)"
_D2_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"conv1\.weight"), lambda m: "stem.conv1.weight"),
    (re.compile(rf"bn1\.{_BN_SUFFIX}"), lambda m: f"stem.conv1.norm.{m[1]}"),
    (
        re.compile(r"layer([1-4])\.(\d+)\.conv([1-3])\.weight"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight",
    ),
    (
        re.compile(rf"layer([1-4])\.(\d+)\.bn([1-3])\.{_BN_SUFFIX}"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}",
    ),
    (
        re.compile(r"layer([1-4])\.(\d+)\.downsample\.0\.weight"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.weight",
    ),
    (
        re.compile(rf"layer([1-4])\.(\d+)\.downsample\.1\.{_BN_SUFFIX}"),
        lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}",
    ),
]


def torchvision_resnet_to_detectron2(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename a torchvision ResNet state dict to Detectron2's ResNet names.

    ``fc.*`` (classifier) and ``*.num_batches_tracked`` (Detectron2's ``FrozenBatchNorm2d`` has no counter) are
    dropped; any other key without a rule raises :class:`KeyMappingError`.
    """
    out: dict[str, T] = {}
    for key, value in state_dict.items():
        if key.startswith("fc.") or key.endswith(".num_batches_tracked"):
            continue
        for pattern, repl in _D2_RULES:
            m = pattern.fullmatch(key)
            if m:
                out[repl(m)] = value
                break
        else:
            raise KeyMappingError(f"no Detectron2 name for torchvision ResNet key {key!r}")
    return out


# --- torchvision ViT <-> timm ViT --------------------------------------------------------------------------------
# (torchvision regex, timm template, timm regex, torchvision template); the table of the reference fact sheet §3.
_VIT_LAYER_TV = r"encoder\.layers\.encoder_layer_(\d+)\."
_VIT_RULES: list[tuple[str, str, str, str]] = [
    (r"class_token", "cls_token", r"cls_token", "class_token"),
    (r"conv_proj\.(weight|bias)", r"patch_embed.proj.\1", r"patch_embed\.proj\.(weight|bias)", r"conv_proj.\1"),
    (r"encoder\.pos_embedding", "pos_embed", r"pos_embed", "encoder.pos_embedding"),
    (_VIT_LAYER_TV + r"ln_([12])\.(weight|bias)", r"blocks.\1.norm\2.\3",
     r"blocks\.(\d+)\.norm([12])\.(weight|bias)", r"encoder.layers.encoder_layer_\1.ln_\2.\3"),
    # Same q, k, v order in both libraries, so the fused projection is copied unchanged.
    (_VIT_LAYER_TV + r"self_attention\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2",
     r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"encoder.layers.encoder_layer_\1.self_attention.in_proj_\2"),
    (_VIT_LAYER_TV + r"self_attention\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2",
     r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layers.encoder_layer_\1.self_attention.out_proj.\2"),
    (_VIT_LAYER_TV + r"mlp\.(?:0|linear_1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2",
     r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.layers.encoder_layer_\1.mlp.0.\2"),
    (_VIT_LAYER_TV + r"mlp\.(?:3|linear_2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2",
     r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.layers.encoder_layer_\1.mlp.3.\2"),
    (r"encoder\.ln\.(weight|bias)", r"norm.\1", r"norm\.(weight|bias)", r"encoder.ln.\1"),
]
_TV_TO_TIMM = [(re.compile(a), b) for a, b, _, _ in _VIT_RULES]
_TIMM_TO_TV = [(re.compile(c), d) for _, _, c, d in _VIT_RULES]


def _rename(
    state_dict: Mapping[str, T], rules: list[tuple[re.Pattern[str], str]], head: str, what: str
) -> dict[str, T]:
    out: dict[str, T] = {}
    for key, value in state_dict.items():
        if key.startswith(head):  # classifier head: the exported backbone has none
            continue
        for pattern, template in rules:
            m = pattern.fullmatch(key)
            if m:
                out[m.expand(template)] = value
                break
        else:
            raise KeyMappingError(f"no {what} name for key {key!r}")
    return out


def torchvision_vit_to_timm(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename a torchvision ``VisionTransformer`` state dict to timm ``VisionTransformer`` names (``heads.*`` dropped).

    Old torchvision names (``mlp.linear_1/2``, before torchvision 0.14) are accepted too.
    """
    return _rename(state_dict, _TV_TO_TIMM, "heads.", "timm ViT")


def timm_vit_to_torchvision(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename a timm ``VisionTransformer`` state dict to torchvision ``VisionTransformer`` names (``head.*``
    dropped)."""
    return _rename(state_dict, _TIMM_TO_TV, "head.", "torchvision ViT")
