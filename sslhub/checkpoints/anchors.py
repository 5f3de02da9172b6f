"""What the tensors alone say: where the backbones sit in a state dict, and which architecture each one is.

Shared by every reader (:mod:`sslhub.checkpoints.readers`). A state dict may hold several backbones (Lightly
benchmark files keep teacher/student/momentum copies). Each is found by an *anchor* key of its family under some
prefix (:func:`find_backbones`); the evaluation copy is the first of :data:`PREFERRED_PREFIXES` that the file has
(:func:`choose_prefix`: ``backbone.`` first, as in every Lightly benchmark, then the Worker's ``model.backbone.``,
then ``teacher_backbone.`` for iBOT/DINOv2-style files, then the bare state dict); :func:`infer_spec` reads the
architecture from the chosen copy's tensor shapes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

import torch

from sslhub.backbones import RESNET_GENERATOR_SPECS, TORCHVISION_RESNETS, family_of
from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.spec import BackboneSpec, Detected

__all__ = [
    "FAMILY_ANCHORS",
    "PREFERRED_PREFIXES",
    "anchor_keys",
    "choose_prefix",
    "components",
    "find_backbones",
    "guess_method",
    "infer_spec",
    "out_dim",
    "read_copy",
    "spec_from_header",
    "strip_prefix",
]

# Eval-time prefixes in order of preference. Anything else (student_/key_/momentum copies) is only used when
# it is the sole candidate or when asked for with ``prefix=``.
PREFERRED_PREFIXES = (
    "backbone.",
    "backbone.vit.",
    "model.backbone.",
    "model.features.",
    "teacher_backbone.vit.",
    "teacher_backbone.",
    "",
    "model.",
    "module.",
    "encoder.",
    "features.",
)

_TIMM_VIT_SIZES = {  # (embed_dim, depth) -> timm size name
    (192, 12): "tiny",
    (384, 12): "small",
    (768, 12): "base",
    (1024, 24): "large",
    (1280, 32): "huge",
}
_TV_VITS = {(768, 12, 16): "vit_b_16", (768, 12, 32): "vit_b_32", (1024, 24, 16): "vit_l_16",
            (1024, 24, 32): "vit_l_32", (1280, 32, 14): "vit_h_14"}  # fmt: skip


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys under ``prefix`` with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in sd.items() if k.startswith(prefix)}


def find_backbones(sd: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """prefix -> family for every backbone found in the state dict (by the anchor keys of each family)."""
    found: dict[str, str] = {}
    for k, v in sd.items():
        if k.endswith("0.running_mean") and v.shape == (3,):
            p = k[: -len("0.running_mean")]
            w = sd.get(p + "1.weight")
            if w is not None and w.ndim == 4 and w.shape[1] == 3 and f"{p}3.0.conv1.weight" in sd:
                found[p] = "resnet_generator"
        elif k.endswith("conv1.weight") and v.ndim == 4 and v.shape[1] == 3:
            p = k[: -len("conv1.weight")]
            if f"{p}layer1.0.conv1.weight" in sd:
                found[p] = "torchvision_resnet"
        elif k.endswith("patch_embed.proj.weight"):
            p = k[: -len("patch_embed.proj.weight")]
            if f"{p}blocks.0.attn.qkv.weight" in sd:
                found[p] = "timm"
        elif k.endswith("conv_proj.weight"):
            p = k[: -len("conv_proj.weight")]
            if f"{p}encoder.layers.encoder_layer_0.ln_1.weight" in sd:
                found[p] = "torchvision_vit"
    return found


def _count(sub: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sub if (m := rx.match(k))})


def _infer_resnet_generator(sub: Mapping[str, torch.Tensor], where: str) -> BackboneSpec:
    base = sub["1.weight"].shape[0]
    bottleneck = "3.0.conv3.weight" in sub
    layers = tuple(_count(sub, rf"^{i}\.(\d+)\.") for i in (3, 4, 5, 6))
    name = next((n for n, s in RESNET_GENERATOR_SPECS.items() if s.layers == layers and s.bottleneck == bottleneck), None)
    if name is None:
        raise CheckpointError(
            f"{where}: a Lightly ResNetGenerator backbone with {'bottleneck' if bottleneck else 'basic'} blocks "
            f"{list(layers)} per stage matches no known name ({', '.join(RESNET_GENERATOR_SPECS)})"
        )
    num_ftrs = sub["7.weight"].shape[0] if "7.weight" in sub else None
    return BackboneSpec("resnet_generator", name, width=base / 64, num_ftrs=num_ftrs)


def _infer_torchvision_resnet(sub: Mapping[str, torch.Tensor], where: str) -> BackboneSpec:
    bottleneck = "layer1.0.conv3.weight" in sub
    layers = tuple(_count(sub, rf"^layer{i}\.(\d+)\.") for i in (1, 2, 3, 4))
    table = {(False, (2, 2, 2, 2)): "resnet18", (False, (3, 4, 6, 3)): "resnet34", (True, (3, 4, 6, 3)): "resnet50",
             (True, (3, 4, 23, 3)): "resnet101", (True, (3, 8, 36, 3)): "resnet152"}  # fmt: skip
    name = table.get((bottleneck, layers))
    stem = sub["conv1.weight"].shape[0]
    inner = sub["layer1.0.conv1.weight"].shape[0]
    grouped = sub["layer1.0.conv2.weight"].shape[1] != sub["layer1.0.conv2.weight"].shape[0]
    if name is None or stem != 64 or inner != 64 or grouped:
        raise CheckpointError(
            f"{where}: a torchvision-style ResNet (blocks {list(layers)}, stem {stem} channels, first bottleneck "
            f"width {inner}{', grouped convs' if grouped else ''}) that is not one of {', '.join(TORCHVISION_RESNETS)}; "
            "pass arch= with its timm name (e.g. arch='wide_resnet50_2' or 'resnext50_32x4d')"
        )
    return BackboneSpec("torchvision_resnet", name)


def _infer_timm_vit(sub: Mapping[str, torch.Tensor], where: str) -> BackboneSpec:
    proj = sub["patch_embed.proj.weight"]
    dim, patch = proj.shape[0], proj.shape[2]
    depth = _count(sub, r"^blocks\.(\d+)\.")
    size = _TIMM_VIT_SIZES.get((dim, depth))
    if size is None:
        raise CheckpointError(
            f"{where}: a timm ViT with embed_dim={dim}, depth={depth}, patch {patch} is not a standard size "
            "(tiny/small/base/large/huge), so its number of heads cannot be read from the tensors; "
            "pass arch= with the timm model name"
        )
    kw: dict[str, Any] = {}
    has_cls = "cls_token" in sub
    n_reg = sub["reg_token"].shape[1] if "reg_token" in sub else 0
    if not has_cls:
        kw["class_token"] = False
        kw["global_pool"] = "avg"
    elif "fc_norm.weight" in sub:
        kw["global_pool"] = "avg"
    if kw.get("global_pool") == "avg" and "norm.weight" in sub and "fc_norm.weight" not in sub:
        kw["fc_norm"] = False  # final norm before pooling (AIM), not timm's default fc_norm after it
    if n_reg:
        kw["reg_tokens"] = n_reg
    if "blocks.0.ls1.gamma" in sub:
        kw["init_values"] = 1e-5  # value irrelevant: the trained gamma is loaded over it
    hidden = sub["blocks.0.mlp.fc1.weight"].shape[0]
    if hidden != 4 * dim:
        kw["mlp_ratio"] = hidden / dim
    img_size = None
    if "pos_embed" in sub:
        n_tok = sub["pos_embed"].shape[1]
        # timm includes prefix tokens in pos_embed unless no_embed_class; try both readings.
        for prefix_tokens in (int(has_cls) + n_reg, 0):
            grid = math.isqrt(max(n_tok - prefix_tokens, 0))
            if grid * grid == n_tok - prefix_tokens and grid > 0:
                if prefix_tokens == 0 and (has_cls or n_reg):
                    kw["no_embed_class"] = True
                img_size = grid * patch
                break
    import timm

    # Prefer a registered timm name (so exports and hubs name it plainly); image size and patch size are
    # constructor arguments, so any grid works on top of it.
    names = [f"vit_{size}_patch{patch}_{r}" for r in dict.fromkeys((img_size or 224, 224, 384))]
    arch = next((n for n in names if timm.is_model(n)), None)
    if arch is None:
        arch = f"vit_{size}_patch16_224"
        kw["patch_size"] = patch
    default = int(arch.rsplit("_", 1)[1])
    return BackboneSpec("timm", arch, img_size=img_size if img_size != default else None, timm_kwargs=kw)


def _infer_torchvision_vit(sub: Mapping[str, torch.Tensor], where: str) -> BackboneSpec:
    proj = sub["conv_proj.weight"]
    dim, patch = proj.shape[0], proj.shape[2]
    depth = _count(sub, r"^encoder\.layers\.encoder_layer_(\d+)\.")
    arch = _TV_VITS.get((dim, depth, patch))
    seq = sub["encoder.pos_embedding"].shape[1] - 1
    grid = math.isqrt(seq)
    img = grid * patch if grid * grid == seq else None
    if arch is None:
        mlp = sub["encoder.layers.encoder_layer_0.mlp.0.weight"].shape[0]
        raise CheckpointError(
            f"{where}: a torchvision ViT (hidden {dim}, {depth} layers, patch {patch}, MLP {mlp}) matches none of "
            f"{', '.join(_TV_VITS.values())}, and its number of attention heads is not in the tensors. Build it "
            f"and load the state dict: sslhub.create_backbone('vit_b_16', img_size={img or 224}, patch_size={patch}, "
            f"num_layers={depth}, num_heads=<heads>, hidden_dim={dim}, mlp_dim={mlp}).load_state_dict(...); "
            "sslhub's own .safetensors files record the sizes and load directly"
        )
    return BackboneSpec("torchvision_vit", arch, img_size=img if img != 224 else None)


INFER = {
    "resnet_generator": _infer_resnet_generator,
    "torchvision_resnet": _infer_torchvision_resnet,
    "timm": _infer_timm_vit,
    "torchvision_vit": _infer_torchvision_vit,
}


_ROOT_BACKBONE_GROUPS = {  # top-level names of a backbone saved without prefix
    "resnet_generator": set(),  # numeric groups ("0".."7"), excluded below
    "torchvision_resnet": {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"},
    "timm": {"cls_token", "pos_embed", "patch_embed", "blocks", "norm", "fc_norm", "reg_token", "mask_token"},
    "torchvision_vit": {"class_token", "conv_proj", "encoder"},
}


def components(sd: Mapping[str, Any], prefix: str, family: str | None = None) -> list[str]:
    """Top-level groups of keys other than the chosen backbone (heads, momentum copies, classifiers...)."""
    out: set[str] = set()
    root = _ROOT_BACKBONE_GROUPS.get(family or "", set())
    for k in sd:
        if prefix and k.startswith(prefix):
            continue
        if not prefix and ("." not in k or k.split(".")[0].isdigit() or k.split(".")[0] in root):
            continue
        parts = k.split(".")
        # Worker files carry a one-component prefix (``model.``): report ``model.projection_head``.
        head = ".".join(parts[:2]) if parts[0] in ("model", "module") and len(parts) >= 2 else parts[0]
        out.add(head)
    return sorted(out)


def guess_method(sd: Mapping[str, Any], layout: str, components: list[str]) -> str | None:
    if layout.startswith("lightly-worker"):
        return "simclr"
    tops = {c.split(".")[-1] for c in components} | {k.split(".")[0] for k in sd}
    rules = [
        ("swav", {"prototypes"}),
        ("moco", {"key_backbone"}),
        ("moco", {"query_backbone"}),
        ("tico", {"backbone_momentum"}),
        ("byol", {"teacher_backbone", "prediction_head"}),
        ("byol", {"student_backbone", "student_prediction_head"}),
        ("dino", {"student_backbone", "criterion"}),
        ("ibot", {"teacher_backbone", "student_patch_head"}),
        ("dinov2", {"teacher_head", "student_head"}),
        ("mae", {"decoder"}),
        ("mae", {"decoder_embed"}),
    ]
    for method, needed in rules:
        if needed <= tops:
            return method
    return None


def out_dim(sd: Mapping[str, torch.Tensor], components: list[str]) -> int | None:
    head = next((c for c in components if c.endswith("projection_head")), None)
    if head is None:
        return None
    linears = [(k, v) for k, v in sd.items() if k.startswith(head + ".") and k.endswith("weight") and v.ndim == 2]
    if not linears:
        return None
    idx = lambda kv: [int(p) if p.isdigit() else -1 for p in kv[0].split(".")]  # noqa: E731
    return int(max(linears, key=idx)[1].shape[0])



# the keys find_backbones anchors each family on (relative to its prefix), as ``sslhub info`` names them
FAMILY_ANCHORS = {
    "resnet_generator": ("0.running_mean", "3.0.conv1.weight"),
    "torchvision_resnet": ("conv1.weight", "layer1.0.conv1.weight"),
    "timm": ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight"),
    "torchvision_vit": ("conv_proj.weight", "encoder.layers.encoder_layer_0.ln_1.weight"),
}


def infer_spec(family: str, sub: Mapping[str, torch.Tensor], where: str) -> BackboneSpec:
    """The architecture of a backbone of ``family`` from its (prefix-stripped) tensors' shapes."""
    return INFER[family](sub, where)


def anchor_keys(family: str | None, prefix: str) -> str:
    """``keys 'p.conv1.weight', 'p.layer1.0.conv1.weight'`` for a backbone of ``family`` under ``prefix``."""
    keys = FAMILY_ANCHORS.get(family or "", ())
    return "keys " + ", ".join(repr(prefix + k) for k in keys) if keys else f"prefix {prefix or '<root>'!r}"


def choose_prefix(
    sd: Mapping[str, torch.Tensor], where: str, found: Mapping[str, str], *, prefix: str | None, arch: str | None
) -> str | None:
    """The evaluation copy's key prefix among the backbones ``found``: ``prefix`` when given, else the first of
    :data:`PREFERRED_PREFIXES`, else the only other one. With no backbone found, ``arch=`` trusts a common prefix
    (a family without anchors, e.g. a timm ConvNeXt); without it, None (nothing here to read).

    Raises:
        CheckpointError: ``prefix`` holds no backbone, or several copies and none is the usual evaluation one.
    """
    if prefix is not None:
        if prefix and not prefix.endswith("."):
            prefix += "."
        if prefix not in found and not arch:
            raise CheckpointError(
                f"{where}: no backbone under prefix {prefix!r}; backbones found: "
                + (", ".join(f"{p or '<root>'} ({f})" for p, f in found.items()) or "none")
            )
        return prefix
    if found:
        preferred = [p for p in PREFERRED_PREFIXES if p in found]
        others = [p for p in found if p not in PREFERRED_PREFIXES]
        if preferred:
            return preferred[0]
        if len(others) == 1:
            return others[0]
        raise CheckpointError(
            f"{where} holds several backbones ({', '.join(others)}) and none is the usual evaluation copy; "
            "pass prefix= with the one you want"
        )
    if arch:
        return next((p for p in PREFERRED_PREFIXES if p and any(k.startswith(p) for k in sd)), "")
    return None


def spec_from_header(meta: Mapping[str, str]) -> BackboneSpec | None:
    """The spec an sslhub safetensors header records, or None for any other file."""
    if meta.get("format") != "sslhub" or "arch" not in meta:
        return None
    return BackboneSpec(
        family=meta.get("family") or family_of(meta["arch"]),
        arch=meta["arch"],
        width=float(meta["width"]) if meta.get("width") else None,
        num_ftrs=int(meta["num_ftrs"]) if meta.get("num_ftrs") else None,
        img_size=int(meta["img_size"]) if meta.get("img_size") else None,
        timm_kwargs=json.loads(meta.get("timm_kwargs") or "{}"),
    )


def read_copy(
    sd: Mapping[str, torch.Tensor], where: str, chosen: str, found: Mapping[str, str], arch: str | None, layout: str
) -> Detected:
    """The backbone under ``chosen`` as the tensors say it: its spec (from its shapes, else ``arch=``), the
    groups beside it (heads, other copies), the method they suggest and the projection's output size."""
    family = found.get(chosen)
    if family is not None:
        spec = infer_spec(family, strip_prefix(sd, chosen), f"{where} [{chosen or '<root>'}]")
    else:
        assert arch is not None  # choose_prefix returns a prefix without a backbone only for arch=
        spec = BackboneSpec(family_of(arch), arch)
    groups = components(sd, chosen, family)
    return Detected(
        layout=layout,
        prefix=chosen,
        spec=spec,
        method=guess_method(sd, layout, groups),
        out_dim=out_dim(sd, groups),
        components=groups,
        candidates=dict(found),
        why=anchor_keys(family, chosen) if family else f"arch={arch!r} given, prefix {chosen or '<root>'!r}",
    )
