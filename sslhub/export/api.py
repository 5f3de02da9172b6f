"""Export backbone weights to the native layouts of torchvision, timm and Detectron2.

Every export is checked before it is written: the converted state dict is loaded strictly into the target
library's own model (built on the meta device, so the check costs no memory or init time). Only the classifier
head may be missing. Nothing is written when the check fails.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from sslhub._files import is_special_file
from sslhub._version import __version__
from sslhub.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_RESNETS,
    TORCHVISION_VIT_SIZES,
    create_backbone,
    family_of,
)
from sslhub.checkpoints.io import atomic_path, save_safetensors, save_torch
from sslhub.errors import SslhubError
from sslhub.export.detectron2 import detectron2_config, detectron2_config_yaml, write_detectron2_pkl
from sslhub.export.keys import (
    KeyMappingError,
    timm_vit_to_torchvision,
    torchvision_resnet_to_detectron2,
    torchvision_vit_to_timm,
)

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_TARGETS", "ExportError", "ExportResult", "export", "export_checkpoint"]

EXPORT_TARGETS = ("torchvision", "timm", "detectron2", "onnx")

# torchvision ViT name -> the timm model with the same shapes (sizes: sslhub.backbones.TORCHVISION_VIT_SIZES)
_TIMM_NAMES = {"vit_b_16": "vit_base_patch16_224", "vit_b_32": "vit_base_patch32_224", "vit_l_16": "vit_large_patch16_224",
               "vit_l_32": "vit_large_patch32_224", "vit_h_14": "vit_huge_patch14_224"}  # fmt: skip
_TV_VIT_CLASS = "VisionTransformer"  # torchvision.models.VisionTransformer: any other size

_GENERATOR_REFUSAL = (
    "{arch} is a Lightly ResNetGenerator backbone (3x3 stride-1 stem, trained input BatchNorm, no max-pool, "
    "'shortcut' blocks). torchvision's resnet, timm's ResNet and Detectron2's ResNet all have a 7x7 stem with "
    "max-pool and no input BatchNorm, so none of --to torchvision, timm or detectron2 can hold these weights "
    "without changing the network. What works with this file: `sslhub convert {src} backbone.safetensors` "
    "(lossless; sslhub.load_pretrained reads it with no flags), `sslhub eval knn {src} ...` and `sslhub embed "
    "{src} ...`, `sslhub publish {src} --repo-id ORG/NAME` (a Hub repo that sslhub and torch.hub load), "
    "`sslhub export {src} --to onnx model.onnx` (a graph needs no twin); for "
    "{target} weights, train a torchvision-family recipe instead (e.g. simclr-resnet18, see `sslhub recipes`)."
)

_STEM_REFUSAL = (
    "{arch} with stem={stem!r} is solo-learn's CIFAR ResNet (conv1 3x3 stride 1 padding 2, no max-pool). "
    "{target}'s ResNet has the 7x7 stride-2 stem with max-pool; the same tensors in it give other features "
    "without any error, so sslhub does not write that file. Load it as it is with sslhub.load_pretrained(...), "
    "or convert it to sslhub .safetensors (`sslhub convert`), which records the stem."
)


class ExportError(SslhubError, ValueError):
    """An export that cannot be done; the message names the file and what to do instead."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote and how to use it."""

    path: Path
    target: str
    arch: str  # architecture name in the target library
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments the weights need
    config_path: Path | None = None  # Detectron2 YAML written next to the .pkl
    config: dict[str, Any] | None = None
    usage: str = ""  # a Python snippet that loads the file


@dataclass(frozen=True)
class _Source:
    """The parts of a backbone spec that the export needs (duck-typed from the loader's spec)."""

    family: str
    arch: str
    img_size: int | None = None
    timm_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: Any) -> _Source:
        arch = str(spec.arch)
        return cls(
            family=str(getattr(spec, "family", None) or family_of(arch)),
            arch=arch,
            img_size=getattr(spec, "img_size", None),
            timm_kwargs=dict(getattr(spec, "timm_kwargs", None) or {}),
        )

    def backbone(self) -> nn.Module:
        return create_backbone(self.arch, img_size=self.img_size, meta=True, **self.timm_kwargs)


# --- public entry point -------------------------------------------------------------------------------------------


def export(
    src: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    *,
    arch: str | None = None,
    width: float | None = None,
    force: bool = False,
    image_size: int | None = None,
) -> Path:
    """Export the backbone of a checkpoint for use in another library.

    Args:
        src: any checkpoint that :func:`sslhub.loading.load_backbone_state` reads.
        to: ``"torchvision"`` (state dict for ``torchvision.models.<arch>()``; only ``fc``/``heads`` missing),
            ``"timm"`` (state dict for ``timm.create_model(arch, num_classes=0)``) or ``"detectron2"`` (``.pkl``
            for ``DetectionCheckpointer`` plus the config it needs as ``<out>.yaml``; ResNet-18..152 only) or
            ``"onnx"`` (the features graph with a dynamic batch, any architecture; see :mod:`sslhub.export.onnx`).
        out: output file. For torchvision/timm a ``.safetensors`` suffix writes safetensors, anything else
            ``torch.save`` (tensors only). Detectron2 needs ``.pkl``.
        arch: architecture hint for sources that do not record it (passed to the loader).
        width: ResNetGenerator width hint, likewise.
        force: replace an existing ``out``. The source is never overwritten.
        image_size: ONNX only: the input size fixed in the graph (default the model's input size, else 224).

    Returns:
        The path written.

    Raises:
        ExportError: the target cannot express the source architecture (e.g. Lightly ResNetGenerator), ``out``
            exists without ``force``, or ``out`` is the source.
    """
    return export_checkpoint(src, to, out, arch=arch, width=width, force=force, image_size=image_size).path


def export_checkpoint(
    src: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    *,
    arch: str | None = None,
    width: float | None = None,
    force: bool = False,
    image_size: int | None = None,
) -> ExportResult:
    """Like :func:`export`, returning an :class:`ExportResult` (target arch, constructor kwargs, usage, config)."""
    src_path = Path(src)
    _check_target(to)
    if to == "onnx":
        return _to_onnx(src_path, out, arch=arch, width=width, force=force, image_size=image_size)
    if image_size is not None:
        raise ExportError(f"image_size applies to --to onnx only; {to} weights carry no input size")
    _check_outputs(to, Path(out), force=force, src=src_path)
    from sslhub.loading import load_backbone_state

    state = load_backbone_state(src_path, arch=arch, width=width, dtype=None)  # an export keeps the file's dtype
    mean, std = _metadata_norm(getattr(state, "metadata", None) or {})
    return _export_state(state.state_dict, state.spec, to, out, force=force, src=src_path, mean=mean, std=std)


def _to_onnx(src: Path, out: str | os.PathLike, *, arch: str | None, width: float | None, force: bool,
             image_size: int | None) -> ExportResult:  # fmt: skip
    from sslhub.export.onnx import INPUT_NAME, export_onnx

    path, diff = export_onnx(src, out, arch=arch, width=width, image_size=image_size, force=force)
    import onnx

    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    checked = f"  # checked with onnxruntime: max |diff| {diff:.1e}" if diff is not None else ""
    usage = (
        f"s = onnxruntime.InferenceSession({str(path)!r}); feats = s.run(None, {{{INPUT_NAME!r}: "
        f"images_nchw_float32_normalised}})[0]{checked}"
    )
    return ExportResult(path=path, target="onnx", arch=props.get("arch", ""),
                        kwargs={"input_size": props.get("input_size"), "mean": props.get("mean"),
                                "std": props.get("std")}, usage=usage)  # fmt: skip


# --- the conversion, independent of where the weights came from ---------------------------------------------------


def _export_state(
    state_dict: Mapping[str, torch.Tensor],
    spec: Any,
    to: str,
    out: str | os.PathLike,
    *,
    force: bool = False,
    src: Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ExportResult:
    """Convert a backbone state dict (keys as :func:`create_backbone` names them) described by ``spec``.

    ``spec`` needs ``arch`` and may have ``family``, ``img_size`` and ``timm_kwargs`` (the loader's spec has them).
    """
    _check_target(to)
    out = Path(out)
    _check_outputs(to, out, force=force, src=src)
    source = _Source.of(spec)
    where = f"{src}: " if src is not None else ""
    if source.family == "resnet_generator":
        raise ExportError(where + _GENERATOR_REFUSAL.format(arch=source.arch, target=to, src=src or "SRC"))
    if source.family == "torchvision_resnet" and source.timm_kwargs.get("stem"):
        raise ExportError(where + _STEM_REFUSAL.format(arch=source.arch, stem=source.timm_kwargs["stem"], target=to))
    try:
        if to == "detectron2":
            return _to_detectron2(state_dict, source, out, src=src, mean=mean, std=std)
        if to == "torchvision":
            arch, kwargs, sd = _to_torchvision(state_dict, source)
        else:
            arch, kwargs, sd = _to_timm(state_dict, source)
    except KeyMappingError as e:
        raise ExportError(f"{where}cannot export {source.arch} to {to}: {e}") from None
    except ExportError as e:
        raise ExportError(f"{where}{e}") from None
    _write_state_dict(sd, out, target=to, arch=arch, kwargs=kwargs, source=source, src=src)
    result = ExportResult(path=out, target=to, arch=arch, kwargs=kwargs, usage=_usage(to, arch, kwargs, out))
    logger.debug("wrote %s (%s %s)", out, to, arch)
    return result


def _to_torchvision(
    sd: Mapping[str, torch.Tensor], source: _Source
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    if source.family == "torchvision_resnet" or _is_plain_timm_resnet(source):
        _check_loads_torchvision(source.arch, {}, sd, head="fc.")
        return source.arch, {}, dict(sd)
    if source.family == "torchvision_vit":
        tv_arch, kwargs = _tv_vit_target(source, sd)
        _check_loads_torchvision(tv_arch, kwargs, sd, head="heads.")
        return tv_arch, kwargs, dict(sd)
    if source.family == "timm":
        tv_arch, kwargs = _timm_vit_as_torchvision(source)
        converted = timm_vit_to_torchvision(sd)
        _check_loads_torchvision(tv_arch, kwargs, converted, head="heads.")
        return tv_arch, kwargs, converted
    raise ExportError(f"no torchvision layout for backbone family {source.family!r} ({source.arch})")


def _to_timm(sd: Mapping[str, torch.Tensor], source: _Source) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    if source.family == "timm":
        kwargs = dict(source.timm_kwargs)
        kwargs.pop("keep_rope_periods", None)  # sslhub's own switch; timm never stores the periods
        eps = kwargs.pop("layer_norm_eps", None)
        if eps is not None:  # timm's config.json cannot carry a LayerNorm eps: timm's own 1e-6 is used
            logger.warning("%s: LayerNorm eps %g (from transformers' config) becomes timm's default 1e-6 in the "
                           "export; features move by about eps/variance of the normalised activations", source.arch, eps)
        if source.img_size:
            kwargs["img_size"] = source.img_size
        # timm's DINOv3 RoPE periods are not in its state dicts (it recomputes them in fp32): leave them out
        sd = {k: v for k, v in sd.items() if k != "rope.periods"}
        _check_loads_timm(source.arch, kwargs, sd)
        return source.arch, kwargs, dict(sd)
    if source.family == "torchvision_resnet":
        # timm's ResNet uses torchvision's names and the same v1.5 block (stride in the 3x3 conv); the strict
        # load below is what guarantees it.
        _check_loads_timm(source.arch, {}, sd)
        return source.arch, {}, dict(sd)
    if source.family == "torchvision_vit":
        timm_arch = _TIMM_NAMES[source.arch]
        size = {**TORCHVISION_VIT_SIZES[source.arch], **source.timm_kwargs}
        image_size = _tv_vit_image_size(size["patch_size"], sd)
        kwargs: dict[str, Any] = {"img_size": image_size} if image_size != 224 else {}
        if source.timm_kwargs:  # other sizes than the named model: timm takes them as overrides of its arguments
            kwargs.update(patch_size=size["patch_size"], embed_dim=size["hidden_dim"], depth=size["num_layers"],
                          num_heads=size["num_heads"], mlp_ratio=size["mlp_dim"] / size["hidden_dim"])  # fmt: skip
        converted = torchvision_vit_to_timm(sd)
        _check_loads_timm(timm_arch, kwargs, converted)
        return timm_arch, kwargs, converted
    raise ExportError(f"no timm layout for backbone family {source.family!r} ({source.arch})")


def _to_detectron2(
    sd: Mapping[str, torch.Tensor],
    source: _Source,
    out: Path,
    *,
    src: Path | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> ExportResult:
    if not (source.family == "torchvision_resnet" or _is_plain_timm_resnet(source)):
        raise ExportError(
            f"Detectron2 export supports ResNet-18/34/50/101/152 with torchvision layout; {source.arch} "
            f"({source.family}) has no Detectron2 ResNet equivalent. Export it to timm or torchvision instead"
        )
    # Proving the torchvision layout first makes the renaming below total and the block structure right.
    _check_loads_torchvision(source.arch, {}, sd, head="fc.")
    converted = torchvision_resnet_to_detectron2(sd)
    if mean is None or std is None:
        cfg = source.backbone().pretrained_cfg
        mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    depth = int(source.arch.removeprefix("resnet"))
    config = detectron2_config(depth, mean, std, weights=str(out.resolve()))
    header = (
        f"Detectron2 config for {out.name} (exported by sslhub {__version__} from "
        f"{src.name if src else source.arch}, {source.arch}).\n"
        "Merge after your base config: cfg.merge_from_file('<this file>'), or copy the entries.\n"
        "PIXEL_MEAN/PIXEL_STD are the model's normalisation on 0-255 pixels."
    )
    config_path = _config_path(out)
    write_detectron2_pkl(converted, out)
    text = detectron2_config_yaml(config, header=header)
    with atomic_path(config_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    logger.debug("wrote %s and %s (Detectron2 R-%d)", out, config_path, depth)
    usage = (
        f"cfg.merge_from_file({str(config_path)!r})  # sets MODEL.WEIGHTS; "
        "then DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)"
    )
    return ExportResult(
        path=out, target="detectron2", arch=f"R-{depth}", config_path=config_path, config=config, usage=usage
    )


# --- checks ---------------------------------------------------------------------------------------------------------


def _check_target(to: str) -> None:
    if to not in EXPORT_TARGETS:
        raise ExportError(f"unknown export target {to!r}; choose one of {', '.join(EXPORT_TARGETS)}")


def _config_path(out: Path) -> Path:
    return out.with_suffix(".yaml")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _check_outputs(to: str, out: Path, *, force: bool, src: Path | None) -> None:
    outputs = [out]
    if to == "detectron2":
        if out.suffix != ".pkl":
            raise ExportError(
                f"{out}: Detectron2 weights must be a .pkl file (DetectionCheckpointer picks the pickle reader "
                "by that suffix); name the output e.g. model_d2.pkl"
            )
        outputs.append(_config_path(out))
    sources = [src] if src is not None else []
    if src is not None and src.is_dir():  # a run/published folder is read through its model.safetensors
        sources.append(src / "model.safetensors")
    for path in outputs:
        if any(_same_file(path, s) for s in sources):
            raise ExportError(
                f"{path} is the source checkpoint; choose another output path (inputs are never overwritten)"
            )
        if path.is_dir():
            raise ExportError(f"{path} is a directory; give a file name for the export")
        if path.exists() and not force and not is_special_file(path):
            raise ExportError(f"{path} already exists; pass force=True (CLI: --force) to replace it")


def _load_report(model: nn.Module, sd: Mapping[str, torch.Tensor], head: str, what: str) -> None:
    """Strict load into a meta-device ``model``, allowing only keys under ``head`` (the classifier) to be missing."""
    try:
        result = model.load_state_dict(dict(sd), strict=False, assign=True)
    except RuntimeError as e:  # size mismatches
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:4])
        raise ExportError(f"the weights do not fit {what}: {detail}") from None
    missing = [k for k in result.missing_keys if not (head and k.startswith(head))]
    if missing or result.unexpected_keys:
        raise ExportError(
            f"the weights do not fit {what}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}"
        )


def _meta(build: Callable[[], nn.Module]) -> nn.Module:
    from sslhub.backbones import build_on_meta

    return build_on_meta(build)


def _check_loads_torchvision(
    arch: str, kwargs: Mapping[str, Any], sd: Mapping[str, torch.Tensor], head: str
) -> None:
    import torchvision

    build = getattr(torchvision.models, arch)
    model = _meta(lambda: build(**kwargs) if arch == _TV_VIT_CLASS else build(weights=None, **kwargs))
    _load_report(model, sd, head, f"torchvision.models.{arch}({_fmt_kwargs(kwargs)})")


def _check_loads_timm(arch: str, kwargs: Mapping[str, Any], sd: Mapping[str, torch.Tensor]) -> None:
    import timm

    try:
        model = _meta(lambda: timm.create_model(arch, pretrained=False, num_classes=0, **kwargs))
    except RuntimeError as e:
        raise ExportError(f"timm cannot build {arch!r}: {e}") from None
    extra = f", {_fmt_kwargs(kwargs)}" if kwargs else ""
    _load_report(model, sd, "", f"timm.create_model({arch!r}, num_classes=0{extra})")


def _is_plain_timm_resnet(source: _Source) -> bool:
    # timm's resnet18..152 without options are torchvision's networks under the same key names.
    return source.family == "timm" and source.arch in TORCHVISION_RESNETS and not source.timm_kwargs


def _tv_vit_image_size(patch: int, sd: Mapping[str, torch.Tensor]) -> int:
    """A torchvision ViT's image size, read from its position embedding (224 when it has none)."""
    pos = sd.get("encoder.pos_embedding")
    return 224 if pos is None else math.isqrt(pos.shape[1] - 1) * patch


def _tv_vit_target(source: _Source, sd: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """The named torchvision builder (``image_size`` only when not 224), or ``VisionTransformer`` with every size
    argument when the model was built with other sizes than its named architecture."""
    size = {**TORCHVISION_VIT_SIZES[source.arch], **source.timm_kwargs}
    image_size = _tv_vit_image_size(size["patch_size"], sd)
    if source.timm_kwargs:
        return _TV_VIT_CLASS, {"image_size": image_size, **size}
    return source.arch, ({"image_size": image_size} if image_size != 224 else {})


def _timm_vit_as_torchvision(source: _Source) -> tuple[str, dict[str, Any]]:
    """The torchvision ViT that computes exactly what this timm model computes, or an error saying what differs."""
    from timm.layers import Mlp, PatchEmbed
    from timm.models.vision_transformer import Block, VisionTransformer

    model = source.backbone()
    if not isinstance(model, VisionTransformer):
        raise ExportError(
            f"{source.arch} has no torchvision equivalent (only timm ResNets resnet18..152 and plain ViTs "
            "do); export it to timm instead"
        )
    reasons: list[str] = []

    def need(cond: bool, why: str) -> None:
        if not cond:
            reasons.append(why)

    need(model.has_class_token and model.num_prefix_tokens == 1, "needs exactly one class token, no register tokens")
    need(not model.no_embed_class and model.pos_embed is not None, "needs a pos. embedding covering the class token")
    need(model.global_pool == "token", f"global_pool={model.global_pool!r} (torchvision pools the class token)")
    need(isinstance(model.norm_pre, nn.Identity) and isinstance(model.fc_norm, nn.Identity), "has norm_pre or fc_norm")
    need(isinstance(model.norm, nn.LayerNorm) and model.norm.eps == 1e-6, "final norm is not LayerNorm(eps=1e-6)")
    pe = model.patch_embed
    if not (isinstance(pe, PatchEmbed) and isinstance(pe.proj, nn.Conv2d) and pe.img_size is not None):
        raise ExportError(f"{source.arch} cannot be expressed as a torchvision ViT: its patch embedding differs")
    patch, img = pe.patch_size, pe.img_size
    need(isinstance(pe.norm, nn.Identity) and pe.proj.bias is not None, "patch embedding has a norm or no bias")
    need(patch[0] == patch[1] and img[0] == img[1], "needs square patches and images")
    dims = None
    for i, blk in enumerate(model.blocks):
        ok = (
            type(blk) is Block
            and isinstance(blk.ls1, nn.Identity)
            and isinstance(blk.ls2, nn.Identity)
            and all(isinstance(n, nn.LayerNorm) and n.eps == 1e-6 for n in (blk.norm1, blk.norm2))
            and isinstance(blk.attn.q_norm, nn.Identity)
            and isinstance(blk.attn.k_norm, nn.Identity)
            and isinstance(getattr(blk.attn, "norm", nn.Identity()), nn.Identity)
            and getattr(blk.attn, "gate", None) is None
            and blk.attn.qkv.bias is not None
            and isinstance(blk.mlp, Mlp)
            and isinstance(blk.mlp.act, nn.GELU)
            and blk.mlp.act.approximate == "none"
            and isinstance(blk.mlp.norm, nn.Identity)
        )
        if not ok:
            reasons.append(f"block {i} differs from a plain pre-norm ViT block (layer scale, qk-norm, activation...)")
            break
        dims = (blk.attn.num_heads, blk.mlp.fc1.out_features)
    if not reasons and dims is not None:
        size = dict(patch_size=patch[0], num_layers=len(model.blocks), num_heads=dims[0], hidden_dim=model.embed_dim,
                    mlp_dim=dims[1])  # fmt: skip
        image_size = int(img[0])
        for tv_arch, tv_size in TORCHVISION_VIT_SIZES.items():
            if tv_size == size:
                return tv_arch, ({"image_size": image_size} if image_size != 224 else {})
        return _TV_VIT_CLASS, {"image_size": image_size, **size}  # a size torchvision has no builder for
    raise ExportError(
        f"{source.arch} cannot be expressed as a torchvision ViT: " + "; ".join(reasons) + ". Export it to timm instead"
    )


# --- writing ----------------------------------------------------------------------------------------------------


def _own_storage(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # torch.save writes whole storages: a view into a larger checkpoint (mmap, aliased heads) would drag the
    # whole source file into the export, so such tensors are copied.
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for k, t in sd.items():
        t = t.detach().cpu()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if (
            not t.is_contiguous()
            or t.storage_offset() != 0
            or storage.nbytes() != t.numel() * t.element_size()
            or (ptr in seen and t.numel())
        ):
            t = t.clone(memory_format=torch.contiguous_format)
        seen.add(ptr)
        out[k] = t
    return out


def _write_state_dict(
    sd: Mapping[str, torch.Tensor],
    out: Path,
    *,
    target: str,
    arch: str,
    kwargs: Mapping[str, Any],
    source: _Source,
    src: Path | None,
) -> None:
    if out.suffix == ".safetensors":
        metadata = {
            "format": "pt",
            "sslhub_version": __version__,
            "sslhub_export": target,
            "arch": arch,
            "kwargs": dict(kwargs),
            "source_arch": source.arch,
            "source_family": source.family,
            "source_file": src.name if src is not None else None,
        }
        save_safetensors(sd, out, metadata)
    else:
        save_torch(_own_storage(sd), out)


def _fmt_kwargs(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _usage(to: str, arch: str, kwargs: Mapping[str, Any], out: Path) -> str:
    reader = (
        f"safetensors.torch.load_file({str(out)!r})"
        if out.suffix == ".safetensors"
        else f"torch.load({str(out)!r}, weights_only=True)"
    )
    if to == "torchvision":
        head = "heads" if arch.startswith("vit") or arch == _TV_VIT_CLASS else "fc"
        return (
            f"m = torchvision.models.{arch}({_fmt_kwargs(kwargs)}); m.load_state_dict({reader}, strict=False)"
            f"  # only {head}.* missing; set m.{head} = torch.nn.Identity() for features"
        )
    extra = f", {_fmt_kwargs(kwargs)}" if kwargs else ""
    return f"m = timm.create_model({arch!r}, num_classes=0{extra}, checkpoint_path={str(out)!r})"


def _metadata_norm(metadata: Mapping[str, Any]) -> tuple[list[float] | None, list[float] | None]:
    """mean/std recorded in a checkpoint's metadata, if they are three numbers each (else None: use the arch's)."""

    def three(v: Any) -> list[float] | None:
        if isinstance(v, str):
            import json

            try:
                v = json.loads(v)
            except ValueError:
                return None
        if isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v):
            return [float(x) for x in v]
        return None

    mean, std = three(metadata.get("mean")), three(metadata.get("std"))
    return (mean, std) if mean and std else (None, None)
