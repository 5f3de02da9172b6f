"""Stage 4 of loading, *remap*: the recognised evaluation copy -> the backbone's own state dict and metadata.

The copy's prefix is stripped, its reader's drops and key remap are applied (upstream names -> the
torchvision/timm names sslhub builds), what the feature extractor does not have is dropped (the Worker's
``num_ftrs`` conv unless asked for, classifier heads), ``arch=``/``width=`` are reconciled with the file, and
the tensors are cast to the requested dtype. The result, :class:`BackboneState`, is what the build stage takes
and what ``sslhub export``/``publish`` write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from sslhub.backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone, family_of
from sslhub.checkpoints.anchors import strip_prefix
from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.readers import get_reader
from sslhub.checkpoints.spec import BackboneSpec, Checkpoint, Detected

logger = logging.getLogger(__name__)

__all__ = ["BackboneState", "backbone_state", "backbone_tensors", "non_finite"]


@dataclass
class BackboneState:
    """A backbone's weights with their key prefix removed, and how to rebuild the module."""

    state_dict: dict[str, torch.Tensor]
    spec: BackboneSpec
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        """Feature dimension of the rebuilt backbone (built on the meta device: no weights touched)."""
        if "num_features" not in self.metadata:
            keep = "7.weight" in self.state_dict
            self.metadata["num_features"] = int(create_backbone(meta=True, **self.spec.kwargs(keep_num_ftrs=keep)).num_features)
        return int(self.metadata["num_features"])


def backbone_tensors(sd: Mapping[str, torch.Tensor], layout: str | None, prefix: str) -> dict[str, torch.Tensor]:
    """The backbone's tensors under ``prefix``, with its layout's drops and key remap applied."""
    sub = strip_prefix(sd, prefix)
    reader = get_reader(layout)
    return reader.backbone(sub) if reader is not None else sub


def _check_request(spec: BackboneSpec, where: str, arch: str | None, width: float | None) -> BackboneSpec:
    """Reconcile ``arch=``/``width=`` with what the file holds; contradictions are errors."""
    if arch is not None and arch != spec.arch:
        if family_of(arch) == spec.family == "timm":
            # Same family: the caller may know details (heads, pooling) the tensors cannot show.
            spec = BackboneSpec("timm", arch, img_size=spec.img_size, timm_kwargs=spec.timm_kwargs)
        else:
            raise CheckpointError(
                f"{where} holds a {spec.describe()}, but arch={arch!r} was passed; "
                f"pass arch={spec.arch!r} or leave arch unset to infer it"
            )
    if width is not None:
        if spec.family != "resnet_generator":
            raise CheckpointError(f"{where}: width= applies to Lightly ResNetGenerator models; the file holds a {spec.describe()}")
        if int(64 * width) != int(64 * (spec.width or 1.0)):
            raise CheckpointError(
                f"{where} holds {spec.describe()} ({int(64 * spec.width)} base channels), but width={width:g} "
                f"was passed; pass width={spec.width:g} or leave width unset"
            )
        spec.width = float(width)
    return spec


def _backbone_keys(sub: dict[str, torch.Tensor], spec: BackboneSpec, keep_num_ftrs: bool) -> dict[str, torch.Tensor]:
    """Drop what the feature extractor does not have (Worker 1x1 conv, classifier heads)."""
    if spec.family == "resnet_generator":
        if not keep_num_ftrs:
            sub = {k: v for k, v in sub.items() if not k.startswith("7.")}
    elif spec.family == "torchvision_resnet":
        sub = {k: v for k, v in sub.items() if not k.startswith("fc.")}
    elif spec.family == "torchvision_vit":
        sub = {k: v for k, v in sub.items() if not k.startswith("heads.")}
    else:
        # timm: drop the classifier that timm itself names (``head`` for ViTs, ``head.fc`` for ConvNeXt, ...),
        # but only keys the num_classes=0 model does not have (ConvNeXt keeps ``head.norm``).
        model = create_backbone(meta=True, **spec.kwargs())
        have = set(model.state_dict())
        clf = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier") or "head"
        clfs = (clf,) if isinstance(clf, str) else tuple(clf)
        sub = {k: v for k, v in sub.items()
               if k in have or not (k.startswith(tuple(c + "." for c in clfs)) or k == "mask_token")}  # fmt: skip
    return sub


def _preprocessing(det: Detected, extras: Mapping[str, Any], meta: Mapping[str, str]) -> dict[str, Any]:
    """mean/std/input size/crop the layout implies (ImageNet's unless the file or its layout says otherwise)."""
    cfg: dict[str, Any] = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    if det.layout == "lightly-benchmark":
        cfg.update(input_size=(3, 224, 224), crop_pct=0.875)  # Resize(256) + CenterCrop(224)
    elif det.layout == "timm-hub":  # the file's own pretrained_cfg (mean/std, input size)
        from sslhub.checkpoints.readers.timm_hub import preprocessing

        cfg.update(preprocessing(extras))
    if meta.get("input_size", "").isdigit():  # sslhub runs record the size they trained at
        size = int(meta["input_size"])
        cfg["input_size"] = (3, size, size)
    return cfg


def non_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an Inf.

    One sum per tensor screens them (~8x cheaper than ``isfinite(t).all()`` on a ResNet-50, which dominated the load):
    a NaN or Inf anywhere makes the sum NaN or Inf, so nothing is missed; a finite tensor whose sum overflows gets the
    exact check."""
    floats = {k: t for k, t in tensors.items() if t.is_floating_point()}
    if not floats:
        return []
    sums = torch.stack([t.sum().float() for t in floats.values()])
    suspects = [k for k, ok in zip(floats, torch.isfinite(sums).tolist()) if not ok]
    return [k for k in suspects if not bool(torch.isfinite(floats[k]).all())]


def backbone_state(
    ckpt: Checkpoint,
    det: Detected,
    where: str,
    *,
    arch: str | None = None,
    width: float | None = None,
    keep_num_ftrs: bool = False,
    dtype: torch.dtype | None = torch.float32,
) -> BackboneState:
    """The evaluation backbone's weights (prefix stripped, remapped, heads dropped, cast to ``dtype``)."""
    spec = _check_request(det.spec, where, arch, width)
    if keep_num_ftrs and not (spec.family == "resnet_generator" and spec.num_ftrs):
        raise CheckpointError(
            f"{where}: features='embedding' needs a Lightly Worker checkpoint with the num_ftrs conv (backbone.7); "
            f"this file holds a {spec.describe()} without it. Use features='backbone'."
        )
    sub = _backbone_keys(backbone_tensors(ckpt.tensors, det.layout, det.prefix), spec, keep_num_ftrs)
    file_dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in sub.values() if t.is_floating_point()})
    if dtype is not None:  # fp16/bf16 files become float32 models, which take float32 images like any other
        sub = {k: t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t for k, t in sub.items()}
    bad = non_finite(sub)
    if bad:
        logger.warning("%s: %d weight tensor(s) are not finite (NaN or Inf): %s%s. Its outputs will not be either; "
                       "embed and eval refuse such a model unless --allow-non-finite is given", where, len(bad),
                       ", ".join(bad[:5]), " ..." if len(bad) > 5 else "")  # fmt: skip
    metadata: dict[str, Any] = {
        "layout": det.layout,
        "family": spec.family,
        "arch": spec.arch,
        "width": spec.width,
        "num_ftrs": spec.num_ftrs,
        "img_size": spec.img_size,
        "timm_kwargs": spec.timm_kwargs,
        "backbone_prefix": det.prefix,
        "method": det.method,
        "out_dim": det.out_dim,
        "components": det.components,
        "upstream": det.upstream,
        "source": where,
        "file_dtype": ",".join(file_dtypes) or None,
        "non_finite": bad or None,
        **{k: v for k, v in ckpt.meta.items() if k.startswith("source_")},
        **_preprocessing(det, ckpt.extras, ckpt.meta),
    }
    return BackboneState(sub, spec, metadata)
