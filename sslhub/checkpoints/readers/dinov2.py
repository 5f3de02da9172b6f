"""facebookresearch/dinov2 backbones and training ``teacher_checkpoint.pth``.

Released ``dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth``: bare ``DinoVisionTransformer`` state dicts with LayerScale
(``blocks.<i>.ls1.gamma``), a ``mask_token`` of shape (1, D) and a 518-px position embedding (37x37 patches + cls);
with registers, ``register_tokens`` (1, R, D) that take no position embedding. The training loop writes
``{"teacher": {backbone.*, dino_head.*, ibot_head.*}}``, with the blocks chunked for FSDP as
``backbone.blocks.<chunk>.<i>.`` where ``<i>`` is already the global block index (each chunk is padded with
Identity modules).

The remap is timm's own (``timm.models.vision_transformer._convert_dinov2``): drop ``mask_token``; with registers
``register_tokens -> reg_token``, the cls token's position embedding folded into ``cls_token`` and
``pos_embed[:, 1:]`` kept (timm's ``no_embed_class``); ViT-g's SwiGLU ``mlp.w12/w3 -> mlp.fc1/fc2`` (timm's
``SwiGLUPacked``: 1536 dim, 40 blocks, 24 heads, hidden 4096). The result is
timm's ``vit_<size>_patch14[_reg4]_dinov2``; the features are the final-norm cls token, as DINOv2's ``forward``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import torch

from sslhub.checkpoints.readers.base import Match, Reader, StateDict

_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+\.)")
_SIZES = {384: "small", 768: "base", 1024: "large", 1536: "giant"}


class DinoV2(Reader):
    name = "dinov2"
    method = "dinov2"
    upstream = "facebookresearch/dinov2"
    evaluation_copy = "backbone (teacher's, in training files); mask_token and dino/ibot heads dropped"
    drop = ("mask_token",)
    signature = ("mask_token", "blocks.0.attn.qkv.weight", "blocks.0.0.attn.qkv.weight")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        for p in ("", "backbone."):
            mask = sd.get(p + "mask_token")
            if mask is None or mask.ndim != 2 or p + "patch_embed.proj.weight" not in sd:
                continue
            if p + "blocks.0.attn.qkv.weight" in sd or p + "blocks.0.0.attn.qkv.weight" in sd:
                return Match(p, "training teacher checkpoint" if p else "released backbone")
        return None

    def rename(self, sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        regs = sub.get("register_tokens")
        for k, v in sub.items():
            k = _CHUNKED.sub(r"blocks.\1", k)  # blocks.<chunk>.<i>. -> blocks.<i>.
            if regs is not None and k in ("register_tokens", "cls_token", "pos_embed"):
                continue
            k = re.sub(r"^(blocks\.\d+\.mlp\.)w12\.", r"\1fc1.", k)
            k = re.sub(r"^(blocks\.\d+\.mlp\.)w3\.", r"\1fc2.", k)
            out[k] = v
        if regs is not None:
            pos = sub["pos_embed"]
            out["reg_token"] = regs
            out["cls_token"] = sub["cls_token"] + pos[:, :1]
            out["pos_embed"] = pos[:, 1:]
        return out

    def spec(self, sub: StateDict) -> Any:
        """ViT-g's SwiGLU FFN (``w12`` packs both halves) is not a plain timm MLP: build timm's SwiGLUPacked ViT."""
        fc1, fc2 = sub.get("blocks.0.mlp.fc1.weight"), sub.get("blocks.0.mlp.fc2.weight")
        if fc1 is None or fc2 is None or fc1.shape[0] != 2 * fc2.shape[1]:
            return None  # the plain MLP of ViT-S/B/L: the generic timm ViT rules infer it
        from sslhub.checkpoints.spec import BackboneSpec

        proj = sub["patch_embed.proj.weight"]
        dim, patch = int(proj.shape[0]), int(proj.shape[2])
        depth = len({k.split(".")[1] for k in sub if k.startswith("blocks.")})
        n_reg = int(sub["reg_token"].shape[1]) if "reg_token" in sub else 0
        grid = math.isqrt(sub["pos_embed"].shape[1] - (0 if n_reg else 1))
        name = f"vit_giant_patch14{f'_reg{n_reg}' if n_reg else ''}_dinov2"
        kw: dict[str, Any] = {}
        if (dim, depth, patch) != (1536, 40, 14):  # another SwiGLU size: timm's ViT-g with its sizes overridden
            # DINOv2's heads are 64-d in every size (vits14 6, vitb14 12, vitl14 16, vitg14 24)
            kw = {"embed_dim": dim, "depth": depth, "num_heads": dim // 64, "patch_size": patch,
                  "mlp_ratio": fc1.shape[0] / dim}  # fmt: skip
        return BackboneSpec("timm", name, img_size=None if grid * patch == 518 else grid * patch, timm_kwargs=kw)

    def facts(self, spec: Any, sub: StateDict) -> list[str]:
        import timm

        proj = sub["patch_embed.proj.weight"]
        dim, patch = int(proj.shape[0]), int(proj.shape[2])
        n_reg = int(sub["reg_token"].shape[1]) if "reg_token" in sub else 0
        name = f"vit_{_SIZES.get(dim)}_patch{patch}{f'_reg{n_reg}' if n_reg else ''}_dinov2"
        if spec.timm_kwargs.get("embed_dim"):  # a SwiGLU ViT of another size (see spec)
            return [f"timm {spec.arch} with its sizes overridden: DINOv2's SwiGLU FFN (w12 = both halves), 64-d heads"]
        if dim not in _SIZES or not timm.is_model(name):
            return []
        # The named model carries heads, LayerScale, registers and no_embed_class itself; its default grid is
        # 37x37 (518 px): keep img_size only when the position embedding says otherwise.
        grid = math.isqrt(sub["pos_embed"].shape[1] - (0 if n_reg else 1))
        spec.arch = name
        spec.timm_kwargs = {}
        spec.img_size = None if grid * patch == 518 else grid * patch
        return [f"timm {name}: DINOv2's heads and LayerScale (dinov2/models/vision_transformer.py)"]
