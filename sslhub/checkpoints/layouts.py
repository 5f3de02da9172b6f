"""Recognise checkpoint layouts and backbone architectures from the tensors themselves.

A state dict may hold several backbones (Lightly benchmark files keep teacher/student/momentum copies). Each is
found by an *anchor* key of its family under some prefix; the prefix that a method evaluates with is chosen by
a fixed preference order (``backbone.`` first, as in every Lightly benchmark, then the Worker's
``model.backbone.``, then ``teacher_backbone.`` for iBOT/DINOv2-style files, then the bare state dict).

Files written by other SSL projects' code (MoCo, DINO, DINOv2, MAE, SwAV, solo-learn, mmpretrain, VISSL...) are
recognised first, by the readers in :mod:`sslhub.checkpoints.readers` (one per layout: anchor keys, evaluation
copy, drops, key remap, and facts the tensors cannot tell); the rules here handle Lightly's layouts and plain
torchvision/timm state dicts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from sslhub.backbones import RESNET_GENERATOR_SPECS, TORCHVISION_RESNETS, family_of
from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.readers import get_reader, match_reader, unwrap_nested

__all__ = ["BackboneSpec", "Detected", "backbone_tensors", "detect", "strip_prefix", "unwrap_checkpoint"]

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


@dataclass
class BackboneSpec:
    """What :func:`sslhub.backbones.create_backbone` needs to rebuild a backbone."""

    family: str
    arch: str
    width: float | None = None
    num_ftrs: int | None = None
    img_size: int | None = None
    timm_kwargs: dict[str, Any] = field(default_factory=dict)

    def kwargs(self, *, keep_num_ftrs: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``create_backbone``."""
        kw: dict[str, Any] = {"arch": self.arch, **self.timm_kwargs}
        if self.family == "resnet_generator":
            kw["width"] = self.width
            if keep_num_ftrs and self.num_ftrs:
                kw["num_ftrs"] = self.num_ftrs
        if self.img_size:
            kw["img_size"] = self.img_size
        return kw

    def describe(self) -> str:
        if self.family == "resnet_generator":
            return f"Lightly ResNetGenerator {self.arch} width={self.width:g}"
        extra = "".join(f", {k}={v}" for k, v in self.timm_kwargs.items())
        size = f", img_size={self.img_size}" if self.img_size else ""
        return f"{self.family} {self.arch}{size}{extra}"


@dataclass
class Detected:
    """A recognised checkpoint: which tensors form the backbone and how to rebuild it."""

    layout: str
    prefix: str
    spec: BackboneSpec
    method: str | None = None
    out_dim: int | None = None
    components: list[str] = field(default_factory=list)
    candidates: dict[str, str] = field(default_factory=dict)
    upstream: str | None = None  # the project that writes this layout (upstream readers only)
    evaluation_copy: str | None = None  # which copy is the evaluation backbone, in the upstream's words
    variant: str | None = None  # e.g. "training checkpoint", "released backbone"
    facts: list[str] = field(default_factory=list)  # what the reader applied that the tensors cannot tell


def unwrap_checkpoint(obj: Any, path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a loaded torch object into (state dict, other top-level entries)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    nested = unwrap_nested(obj)
    if nested is not None:
        return nested
    for key in ("state_dict", "model", "teacher", "module"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            extras = {k: v for k, v in obj.items() if k != key}
            return dict(inner), extras
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), {}
    if not obj or (isinstance(obj.get("state_dict"), Mapping) and not obj["state_dict"]):
        raise CheckpointError(f"{path} holds an empty state dict: there are no weights to load")
    raise CheckpointError(
        f"{path} has no state dict of tensors; its top-level keys are {sorted(map(str, obj))[:12]}. "
        "Expected a Lightly/Lightning checkpoint ({'state_dict': ...}) or a plain state dict."
    )


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys under ``prefix`` with the prefix removed."""
    n = len(prefix)
    return {k[n:]: v for k, v in sd.items() if k.startswith(prefix)}


def backbone_tensors(sd: Mapping[str, torch.Tensor], layout: str | None, prefix: str) -> dict[str, torch.Tensor]:
    """The backbone's tensors under ``prefix``, with an upstream layout's drops and key remap applied."""
    sub = strip_prefix(sd, prefix)
    reader = get_reader(layout)
    return reader.backbone(sub) if reader is not None else sub


def _anchors(sd: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """prefix -> family for every backbone found in the state dict."""
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


_INFER = {
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


def _components(sd: Mapping[str, Any], prefix: str, family: str | None = None) -> list[str]:
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


def _guess_method(sd: Mapping[str, Any], layout: str, components: list[str]) -> str | None:
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


def _out_dim(sd: Mapping[str, torch.Tensor], components: list[str]) -> int | None:
    head = next((c for c in components if c.endswith("projection_head")), None)
    if head is None:
        return None
    linears = [(k, v) for k, v in sd.items() if k.startswith(head + ".") and k.endswith("weight") and v.ndim == 2]
    if not linears:
        return None
    idx = lambda kv: [int(p) if p.isdigit() else -1 for p in kv[0].split(".")]  # noqa: E731
    return int(max(linears, key=idx)[1].shape[0])


def detect(
    sd: Mapping[str, torch.Tensor],
    where: str,
    *,
    extras: Mapping[str, Any] | None = None,
    prefix: str | None = None,
    arch: str | None = None,
) -> Detected:
    """Find the evaluation backbone in ``sd`` and infer how to rebuild it.

    Args:
        sd: the full state dict.
        where: file name for error messages.
        extras: the checkpoint's other top-level entries (Lightning metadata).
        prefix: choose this backbone prefix instead of the preferred one.
        arch: architecture the caller expects; used when the tensors alone cannot tell (non-ViT timm models).
    """
    extras = extras or {}
    if not sd:
        raise CheckpointError(f"{where} holds an empty state dict: there are no weights to load")
    upstream = _detect_upstream(sd, where, extras, prefix)
    if upstream is not None:
        return upstream
    found = _anchors(sd)
    if prefix is not None:
        if prefix and not prefix.endswith("."):
            prefix += "."
        if prefix not in found and not arch:
            raise CheckpointError(
                f"{where}: no backbone under prefix {prefix!r}; backbones found: "
                + (", ".join(f"{p or '<root>'} ({f})" for p, f in found.items()) or "none")
            )
        chosen = prefix
    elif found:
        preferred = [p for p in PREFERRED_PREFIXES if p in found]
        others = [p for p in found if p not in PREFERRED_PREFIXES]
        if preferred:
            chosen = preferred[0]
        elif len(others) == 1:
            chosen = others[0]
        else:
            raise CheckpointError(
                f"{where} holds several backbones ({', '.join(others)}) and none is the usual evaluation copy; "
                "pass prefix= with the one you want"
            )
    elif arch:
        # Not a family we recognise from anchors (e.g. a timm ConvNeXt): trust arch= and a common prefix.
        chosen = next((p for p in PREFERRED_PREFIXES if p and any(k.startswith(p) for k in sd)), "")
    else:
        tops = sorted({k.split(".")[0] for k in sd})[:10]
        if any("embeddings.patch_embeddings" in k for k in sd):  # transformers key names, but no config.json read
            raise CheckpointError(
                f"{where}: a Hugging Face transformers model (key groups {tops}) without its config.json, which says "
                "the architecture (heads, registers, eps). Put the repo's config.json next to the weights file, or "
                "load the whole folder or 'hf-hub:org/name'"
            )
        raise CheckpointError(
            f"{where}: could not recognise a backbone (looked for Lightly ResNetGenerator, torchvision ResNet/ViT "
            f"and timm ViT keys; top-level key groups are {tops}). Pass arch= with the architecture "
            "(e.g. arch='convnext_tiny' for a timm model) and, if the weights sit under a prefix, prefix="
        )
    family = found.get(chosen)
    if family is not None:
        spec = _INFER[family](strip_prefix(sd, chosen), f"{where} [{chosen or '<root>'}]")
    else:
        assert arch is not None
        spec = BackboneSpec(family_of(arch), arch)
    if chosen.startswith("model.backbone.") or chosen.startswith("model.features."):
        layout = "lightly-worker-legacy" if chosen.startswith("model.features.") else "lightly-worker"
    elif "pytorch-lightning_version" in extras:
        layout = "lightly-benchmark"
    else:
        layout = "state-dict"
    components = _components(sd, chosen, found.get(chosen))
    return Detected(
        layout=layout,
        prefix=chosen,
        spec=spec,
        method=_guess_method(sd, layout, components),
        out_dim=_out_dim(sd, components),
        components=components,
        candidates=found,
    )


def _detect_upstream(
    sd: Mapping[str, torch.Tensor], where: str, extras: Mapping[str, Any], prefix: str | None
) -> Detected | None:
    """A layout of another SSL project (see :mod:`sslhub.checkpoints.readers`), or None."""
    hit = match_reader(sd, extras)
    if hit is None:
        return None
    reader, m = hit
    if prefix is not None and (prefix if not prefix or prefix.endswith(".") else prefix + ".") != m.prefix:
        return None  # another copy asked for: the generic rules pick it
    stripped = strip_prefix(sd, m.prefix)
    sub = reader.backbone(stripped)
    here = f"{where} [{reader.name}: {m.prefix or '<root>'}]"
    given = reader.spec_from_config(sub, extras)
    if given is not None:  # the file's config.json says the architecture
        fields, facts = given
        outside = sorted({k.split(".")[0] for k in sd if not k.startswith(m.prefix)}) if m.prefix else []
        return Detected(
            layout=reader.name, prefix=m.prefix, spec=BackboneSpec(**fields), method=reader.method,
            components=sorted(outside + [m.prefix + d for d in reader.dropped_inside(stripped)]),
            upstream=reader.upstream, evaluation_copy=reader.evaluation_copy, variant=m.variant or None, facts=facts,
        )  # fmt: skip
    spec = reader.spec(sub)
    spec_given = spec is not None
    family = spec.family if spec is not None else _anchors(sub).get("")
    if family is None:
        groups = sorted({k.split(".")[0] for k in sub})[:12]
        raise CheckpointError(
            f"{here}: a {reader.upstream} file whose backbone is not a torchvision ResNet or timm ViT "
            f"(key groups under {m.prefix!r}: {groups}); sslhub cannot rebuild it"
        )
    if spec is None:
        spec = _INFER[family](sub, here)
    facts = reader.facts(spec, sub)
    # a reader's own spec: the backbone's groups are not the generic family's, so only name what lies outside it
    outside = [] if spec_given and not m.prefix else _components(sd, m.prefix, family)
    components = outside + [m.prefix + d for d in reader.dropped_inside(stripped)]
    return Detected(
        layout=reader.name,
        prefix=m.prefix,
        spec=spec,
        method=reader.method,
        components=sorted(components),
        upstream=reader.upstream,
        evaluation_copy=reader.evaluation_copy,
        variant=m.variant or None,
        facts=facts,
    )
