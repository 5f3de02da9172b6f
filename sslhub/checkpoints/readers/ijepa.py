"""facebookresearch/ijepa training and release files (``IN1K-vit.h.14-300e.pth.tar``, ``jepa-latest.pth.tar``).

``src/train.py`` ``save_checkpoint`` writes ``{encoder, predictor, target_encoder, opt, scaler, epoch, loss,
batch_size, world_size, lr}``; the three models are DDP-wrapped, so their keys start with ``module.``. The released
"full checkpoints" are these files. The encoders are ``src/models/vision_transformer.py``'s ``VisionTransformer``:
timm key names, **no class token**, a fixed 2D sin-cos ``pos_embed`` (a frozen Parameter, so it is stored),
LayerNorm eps 1e-6 (timm's), final ``norm``; the predictor is a narrower ViT with its own ``mask_token``.

Evaluation copy: ``target_encoder`` (the EMA encoder). The I-JEPA paper evaluates the target encoder ("we use the
target-encoder for evaluation"); timm's ``vit_*_gap_*.ijepa`` weights and transformers' converter take ``encoder``
instead, which is a different set of weights (the two differ by the EMA). Features: the average of the final-norm'd
patch tokens (timm ``class_token=False, global_pool='avg', fc_norm=False``), as the paper's linear probe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sslhub.checkpoints.readers.base import Match, Reader, StateDict

_MODELS = ("encoder", "target_encoder", "predictor")
# (embed_dim, depth, patch) -> timm name for the sizes the generic ViT rules do not build: ViT-H/16 (timm has no
# vit_huge_patch16_224) and ijepa's vit_giant (1408 dim, 40 blocks, 16 heads, MLP 48/11)
_GAP_NAMES = {(1280, 32, 16): "vit_huge_patch16_gap_448", (1408, 40, 16): "vit_giant_patch16_gap_224"}


def unwrap_models(obj: Mapping[str, Any], needed: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``{encoder: {...}, target_encoder: {...}, ...}`` -> one state dict with ``<model>.`` prefixes (I-JEPA, MSN).
    Top-level tensors (MSN's ``prototypes``) keep their name; everything else is returned as extras."""
    if not all(isinstance(obj.get(k), Mapping) for k in needed):
        return None
    sd: dict[str, torch.Tensor] = {}
    extras: dict[str, Any] = {}
    for key, val in obj.items():
        if key in _MODELS and isinstance(val, Mapping) and all(isinstance(v, torch.Tensor) for v in val.values()):
            sd.update({f"{key}.{k}": v for k, v in val.items()})
        elif isinstance(val, torch.Tensor):
            sd[key] = val
        else:
            extras[key] = val
    return sd, extras


def target_prefix(sd: StateDict, anchor: str) -> str | None:
    return next((p for p in ("target_encoder.module.", "target_encoder.") if p + anchor in sd), None)


class IJepa(Reader):
    name = "ijepa"
    method = "ijepa"
    upstream = "facebookresearch/ijepa"
    evaluation_copy = "target_encoder (the EMA encoder the paper evaluates); encoder and predictor dropped"
    signature = ("target_encoder.module.patch_embed.proj.weight", "target_encoder.patch_embed.proj.weight", "predictor.")

    def unwrap(self, obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        return unwrap_models(obj, ("encoder", "target_encoder", "predictor"))

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        p = target_prefix(sd, "patch_embed.proj.weight")
        if p is None or p + "cls_token" in sd or not any(k.startswith("predictor.") for k in sd):
            return None
        return Match(p, "training checkpoint")

    def spec(self, sub: StateDict) -> Any:
        proj = sub["patch_embed.proj.weight"]
        depth = len({k.split(".")[1] for k in sub if k.startswith("blocks.")})
        name = _GAP_NAMES.get((int(proj.shape[0]), depth, int(proj.shape[2])))
        if name is None:
            return None  # the generic timm ViT rules: no class token -> avg pool of the final-norm'd tokens
        import math

        from sslhub.checkpoints.spec import BackboneSpec

        img = math.isqrt(sub["pos_embed"].shape[1]) * int(proj.shape[2])
        kw = {"class_token": False, "global_pool": "avg", "fc_norm": False}  # as the named _gap_ models have them
        return BackboneSpec("timm", name, img_size=None if name.endswith(f"_{img}") else img, timm_kwargs=kw)

    def facts(self, spec: Any, sub: StateDict) -> list[str]:
        return ["no class token: features are the mean of the final-norm'd patch tokens (I-JEPA's linear probe)"]
