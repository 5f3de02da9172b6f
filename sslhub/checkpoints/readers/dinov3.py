"""facebookresearch/dinov3 release files (ViT and ConvNeXt) and timm's ``*_dinov3`` state dicts.

ViT (``dinov3_vit{s,s+,b,l,h+,7b}16_pretrain_lvd1689m-*.pth``, ``dinov3/models/vision_transformer.py``): a bare
``DinoVisionTransformer`` state dict: ``cls_token``, ``storage_tokens`` (1, 4, D), ``mask_token`` (1, D),
``patch_embed.proj``, ``rope_embed.periods`` (D_head / 4 RoPE periods, no absolute position embedding), per block
``norm1``, ``attn.qkv`` (``LinearKMaskedBias``: the k third of the bias is multiplied by ``attn.qkv.bias_mask``,
which is zero there), ``ls1.gamma``, ``norm2``, ``mlp.fc1/fc2`` or SwiGLU ``mlp.w1/w2/w3``, ``ls2.gamma``, final
``norm``. Features: the class token after the final norm (``forward`` -> ``x_norm_clstoken``).

The remap is timm's ``eva.checkpoint_filter_fn`` for these files (``storage_tokens -> reg_token``, ``ls1.gamma ->
gamma_1``, ``w1/w2/w3 -> fc1_g/fc1_x/fc2``, q/v thirds of the masked qkv bias -> ``q_bias``/``v_bias`` on the
``_qkvb`` models, or dropped when they are zero as in the distilled releases) and the model is timm's
``vit_*_patch16_dinov3[_qkvb]`` with ``global_pool='token'``. One difference from timm: the release files store
the RoPE periods in bf16 and DINOv3's own ``load_state_dict`` uses those values, while timm recomputes them in
fp32, which moves the features by ~5e-4 relative. sslhub keeps the file's periods (``rope.periods``, made a
persistent buffer by :func:`sslhub.backbones.create_backbone`); timm's own ``*_dinov3`` files have none, so they
get the bf16-rounded periods that the release files hold.

ConvNeXt (``dinov3_convnext_{tiny,small,base,large}_pretrain_lvd1689m-*.pth``, ``dinov3/models/convnext.py``):
``downsample_layers.<i>``, ``stages.<i>.<j>`` (``dwconv``, ``norm``, ``pwconv1/2``, ``gamma``), ``norm`` and its
alias ``norms.3``. Features: the final LayerNorm of the global average pool (``x_norm_clstoken``), which is timm's
``convnext_*`` head with ``num_classes=0``; the remap is timm's ``convnext.checkpoint_filter_fn``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.readers.base import Match, Reader, StateDict

# (embed_dim, depth, SwiGLU) -> timm size name of the released DINOv3 ViTs (all have 64-d heads)
_VIT_SIZES = {(384, 12, False): "small", (384, 12, True): "small_plus", (768, 12, False): "base",
              (1024, 24, False): "large", (1280, 32, True): "huge_plus", (4096, 40, True): "7b"}  # fmt: skip
_HEAD_DIM = 64
_ROPE_BASE = 100.0  # hub/backbones.py: pos_embed_rope_base=100 for every release
# ConvNeXt (dims[0], depths) -> timm name (dinov3/models/convnext.py convnext_sizes)
_CONVNEXT_SIZES: dict[tuple[int, tuple[int, ...]], str] = {(96, (3, 3, 9, 3)): "convnext_tiny", (96, (3, 3, 27, 3)): "convnext_small",
                   (128, (3, 3, 27, 3)): "convnext_base", (192, (3, 3, 27, 3)): "convnext_large"}  # fmt: skip


def dinov3_rope_periods(head_dim: int, base: float = _ROPE_BASE) -> torch.Tensor:
    """DINOv3's RoPE periods (``RopePositionEmbedding._init_weights``) as the release files store them (bf16)."""
    periods = base ** (2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2))
    return periods.to(torch.bfloat16).float()


def _depth(sub: StateDict, rx: str) -> int:
    r = re.compile(rx)
    return len({m.group(1) for k in sub if (m := r.match(k))})


class DinoV3ViT(Reader):
    name = "dinov3"
    method = "dinov3"
    upstream = "facebookresearch/dinov3"
    evaluation_copy = "the released backbone (class token after the final norm); mask_token and bias masks dropped"
    drop = ("mask_token", "local_cls_norm.")
    signature = ("storage_tokens", "rope_embed.periods", "reg_token", "blocks.0.gamma_1")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        if "patch_embed.proj.weight" not in sd or "blocks.0.attn.qkv.weight" not in sd:
            return None
        if "storage_tokens" in sd and "rope_embed.periods" in sd:
            return Match("", "release file")
        if "reg_token" in sd and "blocks.0.gamma_1" in sd and "pos_embed" not in sd:
            return Match("", "timm vit_*_dinov3 state dict")  # timm's Eva with DINOv3 RoPE: no absolute pos_embed
        return None

    def rename(self, sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if "storage_tokens" not in sub:  # timm's own file: only the periods it does not store
            out.update(sub)
            if "rope.periods" not in out:
                dim = int(sub["patch_embed.proj.weight"].shape[0])
                out["rope.periods"] = dinov3_rope_periods(_HEAD_DIM if dim % _HEAD_DIM == 0 else dim)
            return out
        for k, v in sub.items():
            if k.endswith(".bias_mask"):
                continue
            if k.endswith("attn.qkv.bias"):
                mask = sub.get(k[: -len("bias")] + "bias_mask")
                q, kb, vb = (v * mask.to(v.dtype) if mask is not None else v).chunk(3)
                if kb.any():
                    raise CheckpointError(f"{k}: the k bias is not masked out; timm's DINOv3 attention has no k bias")
                if q.any() or vb.any():  # timm's _qkvb models hold them
                    out[k.replace("qkv.bias", "q_bias")] = q
                    out[k.replace("qkv.bias", "v_bias")] = vb
                continue  # all zero (the distilled releases): timm's plain model has no qkv bias
            k = k.replace("rope_embed.periods", "rope.periods").replace("storage_tokens", "reg_token")
            if k == "rope.periods":
                v = v.float()  # DINOv3 loads the bf16 values into its fp32 buffer; timm computes in the buffer's dtype
            k = k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2")
            k = k.replace("mlp.w1.", "mlp.fc1_g.").replace("mlp.w2.", "mlp.fc1_x.").replace("mlp.w3.", "mlp.fc2.")
            out[k] = v
        return out

    def spec(self, sub: StateDict) -> Any:
        import timm

        from sslhub.checkpoints.spec import BackboneSpec

        proj = sub["patch_embed.proj.weight"]
        dim, patch = int(proj.shape[0]), int(proj.shape[2])
        depth = _depth(sub, r"^blocks\.(\d+)\.")
        swiglu = "blocks.0.mlp.fc1_g.weight" in sub
        qkvb = "blocks.0.attn.q_bias" in sub
        periods = sub.get("rope.periods")
        head_dim = 4 * int(periods.numel()) if periods is not None else _HEAD_DIM
        size = _VIT_SIZES.get((dim, depth, swiglu))
        name = f"vit_{size}_patch16_dinov3{'_qkvb' if qkvb else ''}"
        kw: dict[str, Any] = {"global_pool": "token"}  # DINOv3's features: the class token (timm defaults to avg)
        if size is None or not timm.is_model(name) or head_dim != _HEAD_DIM:
            # another size (or a tiny test model): timm's same-kind model with its sizes overridden
            name = f"vit_{'small_plus' if swiglu else 'small'}_patch16_dinov3{'_qkvb' if qkvb else ''}"
            hidden = int(sub["blocks.0.mlp.fc1_g.weight" if swiglu else "blocks.0.mlp.fc1.weight"].shape[0])
            kw.update(embed_dim=dim, depth=depth, num_heads=dim // head_dim, mlp_ratio=hidden / dim)
        if patch != 16:
            kw["patch_size"] = patch
        n_reg = int(sub["reg_token"].shape[1]) if "reg_token" in sub else 0
        if n_reg != 4:
            kw["num_reg_tokens"] = n_reg
        return BackboneSpec("timm", name, timm_kwargs=kw)

    def facts(self, spec: Any, sub: StateDict) -> list[str]:
        n = int(sub["rope.periods"].numel())
        return [
            "global_pool='token': DINOv3's features are the class token after the final norm",
            f"RoPE periods as the release files hold them ({n} per head, bf16 values; timm recomputes them in fp32)",
        ]


class DinoV3ConvNeXt(Reader):
    name = "dinov3-convnext"
    method = "dinov3"
    upstream = "facebookresearch/dinov3"
    evaluation_copy = "the released backbone (final LayerNorm of the average pool); norms.0-3 aliases dropped"
    drop = ("norms.",)
    signature = ("downsample_layers.0.0.weight", "stages.0.0.dwconv.weight")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        if "downsample_layers.0.0.weight" in sd and "stages.0.0.dwconv.weight" in sd and "norm.weight" in sd:
            return Match("", "release file")
        return None

    def rename(self, sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for k, v in sub.items():  # timm's convnext.checkpoint_filter_fn, for the keys these files have
            k = k.replace("downsample_layers.0.", "stem.")
            k = re.sub(r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2.", k)
            k = re.sub(r"^downsample_layers\.(\d+)\.(\d+)\.", r"stages.\1.downsample.\2.", k)
            k = k.replace("dwconv", "conv_dw").replace("pwconv", "mlp.fc")
            if k.startswith("norm."):
                k = "head." + k
            out[k] = v
        return out

    def spec(self, sub: StateDict) -> Any:
        from sslhub.checkpoints.spec import BackboneSpec

        dims0 = int(sub["stem.0.weight"].shape[0])
        depths = tuple(_depth(sub, rf"^stages\.{i}\.blocks\.(\d+)\.") for i in range(4))
        name = _CONVNEXT_SIZES.get((dims0, depths))
        if name is not None:
            return BackboneSpec("timm", name)
        dims = [int(sub[f"stages.{i}.blocks.0.conv_dw.weight"].shape[0]) for i in range(4)]
        return BackboneSpec("timm", "convnext_tiny", timm_kwargs={"depths": list(depths), "dims": dims})
