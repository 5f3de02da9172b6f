"""facebookresearch/moco (v1/v2) and facebookresearch/moco-v3.

* v2 (``main_moco.py``): ``{epoch, arch, state_dict, optimizer}``; the DDP-wrapped model holds the query encoder
  ``module.encoder_q.`` (a torchvision ResNet whose ``fc`` is the projection MLP), the key encoder
  ``module.encoder_k.`` and the ``module.queue``/``module.queue_ptr`` buffers. Evaluation copy: the query encoder
  without ``fc`` (what ``main_lincls.py`` keeps).
* v3 (``main_moco.py``): the same wrapper plus ``scaler``; ``module.base_encoder.`` (torchvision ResNet with the
  projector as ``fc``, or the ``vits.py`` ViT with the projector as ``head``), ``module.momentum_encoder.`` and
  ``module.predictor.``. Evaluation copy: the base encoder without ``fc``/``head``.

MoCo v3's ``vit_small`` is a timm ``VisionTransformer`` with **12 heads** (timm's own ``vit_small`` has 6); the
head count is not in the tensors (qkv is 3*384 x 384 either way), so it is a fact of this layout. Its position
embedding is a fixed 2D sin-cos table, but it is a Parameter and is stored, so it loads like any other.
"""

from __future__ import annotations

from typing import Any, Mapping

from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_resnet, is_timm_vit

# vits.py: (embed_dim -> heads) where MoCo v3 differs from timm's same-sized model (small: 12 vs 6)
MOCO_V3_VIT_HEADS = {384: 12}


class MocoV2(Reader):
    name = "moco-v2"
    method = "moco"
    upstream = "facebookresearch/moco"
    evaluation_copy = "query encoder (module.encoder_q), projection MLP fc dropped"
    drop = ("fc.",)
    signature = ("module.encoder_q.conv1.weight", "module.queue", "module.encoder_k.conv1.weight")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        p = "module.encoder_q."
        if is_resnet(sd, p) and ("module.queue" in sd or "module.encoder_k.conv1.weight" in sd):
            return Match(p)
        return None


class MocoV3(Reader):
    name = "moco-v3"
    method = "mocov3"
    upstream = "facebookresearch/moco-v3"
    evaluation_copy = "base encoder (module.base_encoder), projector fc/head dropped"
    drop = ("fc.", "head.")
    signature = ("module.base_encoder.", "module.momentum_encoder.", "module.predictor.")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        p = "module.base_encoder."
        if not (is_resnet(sd, p) or is_timm_vit(sd, p)):
            return None
        if any(k.startswith(("module.momentum_encoder.", "module.predictor.")) for k in sd):
            return Match(p, "ViT" if is_timm_vit(sd, p) else "ResNet")
        return None

    def facts(self, spec: Any, sub: StateDict) -> list[str]:
        if spec.family != "timm" or "patch_embed.proj.weight" not in sub:
            return []
        dim = int(sub["patch_embed.proj.weight"].shape[0])
        heads = MOCO_V3_VIT_HEADS.get(dim)
        if heads is None:
            return []
        spec.timm_kwargs["num_heads"] = heads
        return [f"num_heads={heads} (moco-v3 vits.py builds its {dim}-d ViT with {heads} heads; not in the tensors)"]
