"""Hugging Face ``transformers`` DINOv3: ``DINOv3ViTModel`` and ``DINOv3ConvNextModel`` (``facebook/dinov3-*``).

ViT files (as ``save_pretrained`` writes them): ``embeddings.{cls_token, mask_token, register_tokens,
patch_embeddings}``, per block ``layer.<i>.{norm1, norm2}``, ``attention.{q,k,v,o}_proj`` (no key bias),
``layer_scale{1,2}.lambda1``, ``mlp.{up,down}_proj`` or the gated ``mlp.{gate,up,down}_proj``, and the final
``norm``. No position embedding: RoPE, recomputed from ``config.json`` (``rope_theta``, head size); transformers
computes its inverse frequencies in fp32 (``DINOv3ViTRopePositionEmbedding``), as timm does its periods. The remap
inverts ``convert_dinov3_vit_to_hf.py`` onto timm's ``vit_*_patch16_dinov3`` (``eva.py``): q/k/v concatenated into
``attn.qkv``, ``q_bias``/``v_bias`` kept only when non-zero (the released weights' are zero: timm's plain name then
fits; the k bias is fixed at zero in both), ``register_tokens -> reg_token``, ``lambda1 -> gamma_{1,2}``, gated MLP
``gate/up -> fc1_g/fc1_x``. Features: ``pooler_output``, the cls token after the final norm (timm
``global_pool='token'``; timm's default for these models is the token mean).

ConvNeXt files: ``stages.<s>.downsample_layers.{0,1}`` (stage 0: the 4x4 conv stem then its LayerNorm; later stages:
LayerNorm then 2x2 conv), ``stages.<s>.layers.<j>.{depthwise_conv, layer_norm, pointwise_conv1, pointwise_conv2,
gamma}`` and the final ``layer_norm``, applied to the average-pooled map for ``pooler_output``: timm's ``convnext_*``
with its ``head.norm`` (as ``convnext_*.dinov3_lvd1689m``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.readers.base import Match, Reader, StateDict
from sslhub.checkpoints.readers.transformers_vit import _ratio, architecture, hf_config, model_prefix, norm_eps

_VIT_ANCHOR = "embeddings.patch_embeddings.weight"
_CNX_ANCHOR = "stages.0.downsample_layers.0.weight"
_VIT_SIZES = {(384, 12, 6): "small", (768, 12, 12): "base", (1024, 24, 16): "large"}
_CNX_SIZES = {((3, 3, 9, 3), (96, 192, 384, 768)): "tiny", ((3, 3, 27, 3), (96, 192, 384, 768)): "small",
              ((3, 3, 27, 3), (128, 256, 512, 1024)): "base", ((3, 3, 27, 3), (192, 384, 768, 1536)): "large"}  # fmt: skip
_VIT_BLOCK = {"norm1.": "norm1.", "norm2.": "norm2.", "attention.o_proj.": "attn.proj.",
              "layer_scale1.lambda1": "gamma_1", "layer_scale2.lambda1": "gamma_2"}  # fmt: skip
_CNX_BLOCK = {"depthwise_conv.": "conv_dw.", "layer_norm.": "norm.", "pointwise_conv1.": "mlp.fc1.",
              "pointwise_conv2.": "mlp.fc2.", "gamma": "gamma"}  # fmt: skip
TIMM_DINOV3_EPS = 1e-5  # timm's vit_*_patch16_dinov3 LayerNorm eps (DINOv3's own)
TIMM_CONVNEXT_EPS = 1e-6


def _vit_remap(sub: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    attn: dict[int, dict[str, torch.Tensor]] = {}
    gated = any(".mlp.gate_proj." in k for k in sub)
    mlp = {"gate_proj.": "fc1_g.", "up_proj.": "fc1_x.", "down_proj.": "fc2."} if gated else {
        "up_proj.": "fc1.", "down_proj.": "fc2."}  # fmt: skip
    for k, v in sub.items():
        m = re.match(r"^layer\.(\d+)\.(.+)$", k)
        if m is None:
            top = {"embeddings.cls_token": "cls_token", "embeddings.register_tokens": "reg_token",
                   "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
                   "embeddings.patch_embeddings.bias": "patch_embed.proj.bias"}.get(k, k)  # fmt: skip
            if top == "reg_token" and v.shape[1] == 0:
                continue  # no registers
            out[top] = v
            continue
        i, rest = int(m.group(1)), m.group(2)
        if rest.startswith("attention.") and rest[len("attention.") :][:7] in ("q_proj.", "k_proj.", "v_proj."):
            attn.setdefault(i, {})[rest[len("attention.") :]] = v
            continue
        table = {**_VIT_BLOCK, **{"mlp." + a: "mlp." + b for a, b in mlp.items()}}
        new = next((b + rest[len(a) :] for a, b in table.items() if rest.startswith(a)), rest)
        out[f"blocks.{i}.{new}"] = v
    for i, parts in attn.items():
        try:
            out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([parts[f"{c}_proj.weight"] for c in "qkv"])
        except KeyError as e:
            raise CheckpointError(f"layer {i}: attention lacks {e.args[0]}") from None
        if parts.get("k_proj.bias") is not None and bool(parts["k_proj.bias"].any()):
            raise CheckpointError(f"layer {i}: a non-zero key bias, which DINOv3 (and timm's model) fix at zero")
        qb, vb = parts.get("q_proj.bias"), parts.get("v_proj.bias")
        if qb is not None and vb is not None and (bool(qb.any()) or bool(vb.any())):
            out[f"blocks.{i}.attn.q_bias"] = qb
            out[f"blocks.{i}.attn.v_bias"] = vb
    return out


def _cnx_remap(sub: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in sub.items():
        m = re.match(r"^stages\.(\d+)\.(downsample_layers\.(\d+)|layers\.(\d+))\.(.+)$", k)
        if m is None:
            out[{"layer_norm.weight": "head.norm.weight", "layer_norm.bias": "head.norm.bias"}.get(k, k)] = v
            continue
        s, rest = int(m.group(1)), m.group(5)
        if m.group(3) is not None:  # stage 0: conv, LN (timm's stem); later: LN, conv (timm's downsample)
            out[f"stem.{m.group(3)}.{rest}" if s == 0 else f"stages.{s}.downsample.{m.group(3)}.{rest}"] = v
        else:
            new = next((b + rest[len(a) :] for a, b in _CNX_BLOCK.items() if rest.startswith(a)), rest)
            out[f"stages.{s}.blocks.{m.group(4)}.{new}"] = v
    return out


class TransformersDinov3ViT(Reader):
    name = "transformers-dinov3-vit"
    method = "dinov3"
    upstream = "huggingface/transformers (DINOv3ViTModel)"
    evaluation_copy = "the model: pooler_output (cls token after the final norm); mask_token dropped"
    drop = ("embeddings.mask_token",)

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        cfg = hf_config(extras)
        if cfg is None or cfg.get("model_type") != "dinov3_vit":
            return None
        p = model_prefix(sd, _VIT_ANCHOR)
        return None if p is None else Match(p, f"transformers {architecture(cfg)} (config.json model_type 'dinov3_vit')",
                                          why="config.json model_type 'dinov3_vit'")

    def rename(self, sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _vit_remap(sub)

    def spec_from_config(self, sub: StateDict, extras: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
        cfg = hf_config(extras) or {}
        proj = sub["patch_embed.proj.weight"]
        dim, patch = int(proj.shape[0]), int(proj.shape[2])
        depth = len({k.split(".")[1] for k in sub if k.startswith("blocks.")})
        heads = int(cfg.get("num_attention_heads") or 0)
        if heads <= 0 or dim % heads or (dim // heads) % 4:
            raise CheckpointError(f"config.json: num_attention_heads={cfg.get('num_attention_heads')!r} does not fit "
                                  f"the hidden size {dim} (RoPE needs a head size divisible by 4)")
        act = cfg.get("hidden_act", "gelu")
        gated = "blocks.0.mlp.fc1_g.weight" in sub
        if act != ("silu" if gated else "gelu"):
            raise CheckpointError(f"config.json: hidden_act={act!r} with {'a gated' if gated else 'a plain'} MLP; "
                                  "timm's DINOv3 has SiLU (gated) or GELU")
        hidden = int(sub["blocks.0.mlp.fc1_g.weight" if gated else "blocks.0.mlp.fc1.weight"].shape[0])
        n_reg = int(sub["reg_token"].shape[1]) if "reg_token" in sub else 0
        kw: dict[str, Any] = {"embed_dim": dim, "depth": depth, "num_heads": heads, "patch_size": patch,
                              "mlp_ratio": _ratio(hidden, dim), "num_reg_tokens": n_reg,
                              "qkv_bias": "blocks.0.attn.q_bias" in sub, "global_pool": "token",
                              "rope_temperature": float(cfg.get("rope_theta", 100.0)),
                              "keep_rope_periods": False}  # fmt: skip  # no periods stored: recomputed in fp32
        if gated:
            kw.update(swiglu_mlp=True, swiglu_align_to=1)  # the hidden size as the tensors have it
        if "blocks.0.gamma_1" not in sub:
            kw["init_values"] = None
        if not cfg.get("apply_layernorm", True):
            raise CheckpointError("config.json: apply_layernorm=false; DINOv3's features are taken after the final norm")
        facts = [f"config.json num_attention_heads={heads}, rope_theta={kw['rope_temperature']:g}, "
                 f"{n_reg} register tokens" + (", gated MLP (SiLU)" if gated else ""),
                 "features: cls token after the final norm (pooler_output), timm global_pool='token'"]  # fmt: skip
        facts += norm_eps(cfg, kw, TIMM_DINOV3_EPS)
        size = _VIT_SIZES.get((dim, depth, heads))
        arch = f"vit_{size}_patch16_dinov3" if size and not gated else "vit_small_patch16_dinov3"
        return {"family": "timm", "arch": arch, "img_size": None, "timm_kwargs": kw}, facts


class TransformersDinov3ConvNext(Reader):
    name = "transformers-dinov3-convnext"
    method = "dinov3"
    upstream = "huggingface/transformers (DINOv3ConvNextModel)"
    evaluation_copy = "the model: pooler_output (final layer_norm of the average-pooled map)"

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        cfg = hf_config(extras)
        if cfg is None or cfg.get("model_type") != "dinov3_convnext":
            return None
        p = model_prefix(sd, _CNX_ANCHOR)
        return None if p is None else Match(p, f"transformers {architecture(cfg)} (config.json model_type 'dinov3_convnext')",
                                          why="config.json model_type 'dinov3_convnext'")

    def rename(self, sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _cnx_remap(sub)

    def spec_from_config(self, sub: StateDict, extras: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
        cfg = hf_config(extras) or {}
        n_stages = len({k.split(".")[1] for k in sub if k.startswith("stages.")})
        depths = tuple(len({k.split(".")[3] for k in sub if k.startswith(f"stages.{s}.blocks.")}) for s in range(n_stages))
        dims = tuple(int(sub[f"stages.{s}.blocks.0.conv_dw.weight"].shape[0]) for s in range(n_stages))
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise CheckpointError(f"config.json: hidden_act={cfg.get('hidden_act')!r}; timm's ConvNeXt has GELU")
        size = _CNX_SIZES.get((depths, dims))
        kw: dict[str, Any] = {} if size else {"depths": list(depths), "dims": list(dims)}
        facts = [f"ConvNeXt depths {list(depths)}, dims {list(dims)}; features: final layer_norm of the pooled map"]
        if "stages.0.blocks.0.gamma" not in sub:
            kw["ls_init_value"] = None
        facts += norm_eps(cfg, kw, TIMM_CONVNEXT_EPS, "norm_eps")  # timm's ConvNeXt has its own
        return {"family": "timm", "arch": f"convnext_{size or 'tiny'}", "img_size": None, "timm_kwargs": kw}, facts
