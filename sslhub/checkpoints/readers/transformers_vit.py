"""Hugging Face ``transformers`` ViTs: Dinov2Model, Dinov2WithRegistersModel, ViTModel (DINO), ViTMAEModel, IJepaModel.

``save_pretrained`` writes ``config.json`` + ``model.safetensors`` in the Hub's key names (transformers 5 renames
some keys on load and back on save, so files keep these names): ``embeddings.{cls_token, mask_token,
position_embeddings, register_tokens, patch_embeddings.projection}``, per block ``encoder.layer.<i>.`` with
``attention.attention.{query,key,value}``, ``attention.output.dense``, ``layernorm_before/after`` (ViT, ViT-MAE,
I-JEPA) or ``norm1/norm2`` + ``layer_scale{1,2}.lambda1`` + ``mlp.{fc1,fc2}`` or SwiGLU ``mlp.weights_{in,out}``
(DINOv2), ``intermediate.dense``/``output.dense`` (ViT MLP), and the final ``layernorm``. Heads classes add a
model prefix (``dinov2.``, ``vit.``, ``ijepa.``); ViT-MAE pre-training files keep the decoder under ``decoder.``.

The remap inverts transformers' own conversion scripts (``convert_dinov2_to_hf.py``,
``convert_dinov2_with_registers_to_hf.py``, ``convert_dino_to_pytorch.py``, ``convert_vit_mae_to_pytorch.py``,
``convert_ijepa_to_hf.py``): ``query/key/value`` are concatenated into timm's ``attn.qkv``; with registers the cls
token's position embedding is folded into ``cls_token`` and timm's ``no_embed_class`` used (DINOv2 adds the
position embedding before inserting the registers). ``config.json`` gives the heads, the SwiGLU MLP and the image
size. The features are those the upstreams evaluate: the cls token after the final norm for DINOv2 (``pooler_output``),
DINO and MAE (``main_linprobe.py``'s ``global_pool=False``; the HF model's ``pooler`` of ViTModel is an untrained
tanh layer and is dropped), and the mean of the final-norm patch tokens for I-JEPA (no class token).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import torch

from sslhub.checkpoints.hf_files import CONFIG_KEY
from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.readers.base import Match, Reader, StateDict

_PATCH = "embeddings.patch_embeddings.projection.weight"
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_BLOCK_KEYS = {  # transformers -> timm, inside a block
    "attention.output.dense.": "attn.proj.",
    "layernorm_before.": "norm1.",
    "layernorm_after.": "norm2.",
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "intermediate.dense.": "mlp.fc1.",
    "output.dense.": "mlp.fc2.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
    "mlp.weights_in.": "mlp.fc1.",  # DINOv2 SwiGLU: both halves packed, as timm's SwiGLUPacked
    "mlp.weights_out.": "mlp.fc2.",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
}
_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.register_tokens": "reg_token",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_SIZES = {(192, 12, 3): "tiny", (384, 12, 6): "small", (768, 12, 12): "base", (1024, 24, 16): "large",
          (1280, 32, 16): "huge", (1536, 40, 24): "giant"}  # fmt: skip
TIMM_LN_EPS = 1e-6  # timm's ViT LayerNorm eps


def hf_config(extras: Mapping[str, Any]) -> dict[str, Any] | None:
    cfg = extras.get(CONFIG_KEY)
    return cfg if isinstance(cfg, dict) else None


def model_prefix(sd: StateDict, anchor: str) -> str | None:
    """The prefix (``""``, ``"dinov2."``, ``"vit."`` ...) under which ``anchor`` is a key, or None."""
    if anchor in sd:
        return ""
    return next((k[: -len(anchor)] for k in sd if k.endswith("." + anchor) and k.count(".") - anchor.count(".") == 1), None)


def architecture(cfg: Mapping[str, Any]) -> str:
    arch = cfg.get("architectures")
    return str(arch[0]) if isinstance(arch, list) and arch else str(cfg.get("model_type"))


def norm_eps(cfg: Mapping[str, Any], kw: dict[str, Any], timm_eps: float, arg: str = "layer_norm_eps") -> list[str]:
    """Keep transformers' LayerNorm eps where it is not timm's (ViTConfig's default is 1e-12), as the timm
    keyword ``arg`` (sslhub's ``layer_norm_eps`` for ViTs, see :func:`sslhub.backbones.create_backbone`)."""
    eps = cfg.get("layer_norm_eps")
    if isinstance(eps, (int, float)) and not math.isclose(eps, timm_eps, rel_tol=1e-9):
        kw[arg] = float(eps)
        return [f"config.json layer_norm_eps={eps:g} (timm's default is {timm_eps:g})"]
    return []


def _remap(sub: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for k, v in sub.items():
        m = _LAYER.match(k)
        if m is None:
            out[_TOP.get(k, k)] = v
            continue
        i, rest = int(m.group(1)), m.group(2)
        if rest.startswith("attention.attention."):
            which, kind = rest[len("attention.attention.") :].split(".", 1)  # query/key/value, weight/bias
            qkv.setdefault((i, kind), {})[which] = v
            continue
        for old, new in _BLOCK_KEYS.items():
            if rest.startswith(old):
                rest = new + rest[len(old) :]
                break
        out[f"blocks.{i}.{rest}"] = v
    for (i, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(f"block {i}: attention {kind} has only {sorted(parts)} of query/key/value")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    regs = out.get("reg_token")
    if regs is not None:
        if regs.shape[1] == 0:
            del out["reg_token"]
        else:  # DINOv2 adds the position embedding (cls + patches) before inserting the registers: timm's no_embed_class
            pos = out["pos_embed"]
            out["cls_token"] = out["cls_token"] + pos[:, :1]
            out["pos_embed"] = pos[:, 1:]
    return out


class _TransformersViT(Reader):
    """Shared by the transformers ViT families; subclasses name their ``model_type`` values."""

    model_types: tuple[str, ...] = ()
    drop = ("embeddings.mask_token", "pooler.")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        cfg = hf_config(extras)
        if cfg is None or cfg.get("model_type") not in self.model_types:
            return None
        p = model_prefix(sd, _PATCH)
        if p is None:
            return None
        return Match(p, f"transformers {architecture(cfg)} (config.json model_type {cfg['model_type']!r})",
                     why=f"config.json model_type {cfg['model_type']!r}")

    def rename(self, sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _remap(sub)

    def spec_from_config(self, sub: StateDict, extras: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
        import timm

        cfg = hf_config(extras) or {}
        proj = sub["patch_embed.proj.weight"]
        dim, patch = int(proj.shape[0]), int(proj.shape[2])
        depth = len({k.split(".")[1] for k in sub if k.startswith("blocks.")})
        heads = int(cfg.get("num_attention_heads") or 0)
        if heads <= 0 or dim % heads:
            raise CheckpointError(f"config.json: num_attention_heads={cfg.get('num_attention_heads')!r} does not "
                                  f"divide the hidden size {dim}; the config does not belong to these weights")
        swiglu = bool(cfg.get("use_swiglu_ffn"))
        act = cfg.get("hidden_act", "gelu")
        if not swiglu and act != "gelu":
            raise CheckpointError(f"config.json: hidden_act={act!r}; sslhub rebuilds these ViTs with timm's exact GELU only")
        hidden = int(sub["blocks.0.mlp.fc1.weight"].shape[0])
        n_reg = int(sub["reg_token"].shape[1]) if "reg_token" in sub else 0
        has_cls = "cls_token" in sub
        kw: dict[str, Any] = {"embed_dim": dim, "depth": depth, "num_heads": heads, "patch_size": patch,
                              "mlp_ratio": _ratio(hidden, dim), "qkv_bias": "blocks.0.attn.qkv.bias" in sub}  # fmt: skip
        facts = [f"config.json num_attention_heads={heads}"]
        if "blocks.0.ls1.gamma" in sub:
            kw["init_values"] = 1.0  # value irrelevant: the trained gamma is loaded over it
        if n_reg:
            kw.update(reg_tokens=n_reg, no_embed_class=True)
            facts.append(f"{n_reg} register tokens (config.json num_register_tokens), timm no_embed_class")
        if not has_cls:  # I-JEPA: no class token; the evaluation feature is the mean of the final-norm patch tokens
            kw.update(class_token=False, global_pool="avg", fc_norm=False)
            facts.append("no class token: features = mean of the final-norm patch tokens (I-JEPA's evaluation)")
        n_pos = int(sub["pos_embed"].shape[1]) - (1 if has_cls and not n_reg else 0)
        grid = math.isqrt(n_pos)
        if grid * grid != n_pos:
            raise CheckpointError(f"position embedding of {n_pos} patches is not a square grid")
        size = _SIZES.get((dim, depth, heads))
        if self.name == "transformers-dinov2":
            reg = "_reg4" if n_reg else ""
            base = f"vit_giant_patch14{reg}_dinov2" if swiglu else f"vit_{size or 'small'}_patch14{reg}_dinov2"
            if swiglu:
                facts.append("config.json use_swiglu_ffn: SwiGLU MLP (timm SwiGLUPacked, as ViT-g/14)")
        else:
            base = next((n for n in (f"vit_{size}_patch{patch}_224",) if size and timm.is_model(n)), "vit_base_patch16_224")
        facts += norm_eps(cfg, kw, TIMM_LN_EPS)
        return {"family": "timm", "arch": base, "img_size": grid * patch, "timm_kwargs": kw}, facts


def _ratio(hidden: int, dim: int) -> float:
    """An mlp_ratio for which timm's ``int(dim * mlp_ratio)`` gives back ``hidden`` exactly."""
    r = hidden / dim
    return r if int(dim * r) == hidden else (hidden + 0.5) / dim


class TransformersDinov2(_TransformersViT):
    name = "transformers-dinov2"
    method = "dinov2"
    upstream = "huggingface/transformers (Dinov2Model, Dinov2WithRegistersModel)"
    evaluation_copy = "the model: pooler_output (cls token after the final layernorm); mask_token dropped"
    model_types = ("dinov2", "dinov2_with_registers")


class TransformersViT(_TransformersViT):
    name = "transformers-vit"
    upstream = "huggingface/transformers (ViTModel, e.g. facebook/dino-vit*)"
    evaluation_copy = "the model: cls token after the final layernorm (DINO's evaluation); the tanh pooler dropped"
    model_types = ("vit",)


class TransformersViTMAE(_TransformersViT):
    name = "transformers-vit-mae"
    method = "mae"
    upstream = "huggingface/transformers (ViTMAEModel, ViTMAEForPreTraining)"
    evaluation_copy = ("encoder (vit.): cls token after the final layernorm with no masking, as MAE's linear probe "
                       "(global_pool=False); decoder dropped")  # fmt: skip
    model_types = ("vit_mae",)


class TransformersIJepa(_TransformersViT):
    name = "transformers-ijepa"
    method = "ijepa"
    upstream = "huggingface/transformers (IJepaModel)"
    evaluation_copy = "the model as transformers converted it: mean of the final-norm patch tokens (no class token)"
    model_types = ("ijepa",)
