"""``load_pretrained``: any supported checkpoint in, an eval-mode feature extractor out."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from sslhub.backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone, family_of
from sslhub.backbones.pretrained_cfg import complete_pretrained_cfg
from sslhub.checkpoints.io import CheckpointError, is_safetensors_file, load_torch_file, read_safetensors
from sslhub.checkpoints.skeleton import assemble
from sslhub.checkpoints.layouts import BackboneSpec, Detected, backbone_tensors, detect, unwrap_checkpoint
from sslhub.suggest import FILE_SUFFIXES, no_such_file

logger = logging.getLogger(__name__)

__all__ = ["BackboneState", "load_backbone_state", "load_pretrained", "read_checkpoint", "resolve_path"]

FEATURES = ("backbone", "embedding", "tokens")


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


class TokenFeatures(nn.Module):
    """A timm ViT that returns every token (``forward_features``) instead of the pooled feature."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.num_features = vit.num_features
        self.pretrained_cfg = dict(vit.pretrained_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)


def resolve_path(source: str | os.PathLike) -> Path:
    """Turn a source (path, registry name, URL, ``hf-hub:`` id) into a local file path."""
    if isinstance(source, os.PathLike) or Path(str(source)).exists():
        return Path(source)
    s = str(source)
    looks_like_file = Path(s).suffix.lower() in FILE_SUFFIXES  # "checkpont.ckpt" is a typo, not a registry name
    if s.startswith(("http://", "https://", "hf-hub:")) or (
        "/" not in s and os.sep not in s and "." in s and not looks_like_file
    ):
        from sslhub.hub import resolve_source  # the hub layer: registry names, URLs, Hugging Face Hub

        return Path(resolve_source(s))
    hint = ""
    if "/" not in s and os.sep not in s and not looks_like_file:  # a bare word: maybe a registry name without its tag
        from sslhub.hub import canonical_name, registry, resolve_source
        from sslhub.suggest import similar

        if canonical_name(s) in registry():  # resolves to the default tag, as timm does
            return Path(resolve_source(s))

        close = similar(s, registry(), n=3)
        hint = f" Registered weights with a similar name: {', '.join(repr(c) for c in close)}." if close else ""
    raise CheckpointError(
        no_such_file(s) + hint + " Pass a checkpoint path, a registry name (see `sslhub list`), an http(s) URL or "
        "'hf-hub:org/name'"
    )


def _card_hints(source: str | os.PathLike) -> dict[str, Any]:
    """Defaults from a registry card (arch, width, prefix) when ``source`` is a registered weight name."""
    s = str(source)
    if isinstance(source, os.PathLike) or Path(s).exists() or s.startswith(("http://", "https://", "hf-hub:")) or "/" in s:
        return {}
    from sslhub.hub import resolve_card

    try:
        return dict(resolve_card(s).load_kwargs())
    except ValueError:
        return {}  # not a registry name: resolve_path reports what it is


def read_checkpoint(
    path: str | os.PathLike, *, backbone_only: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, str]]:
    """Read any supported file: (state dict, other top-level entries, safetensors metadata).

    With ``backbone_only``, sslhub safetensors have only their backbone's tensors read (the rest is never touched).
    """
    from sslhub.checkpoints.hf_files import CONFIG_KEY, config_beside, read_sharded, weights_in

    path = weights_in(Path(path))  # a published / run / Hugging Face folder: its model.safetensors (or shard index)
    sharded = path.name.endswith(".safetensors.index.json") and path.is_file()
    if sharded or (path.is_file() and is_safetensors_file(path)):
        tensors, meta = read_sharded(path) if sharded else read_safetensors(path, backbone_only=backbone_only)
        extras = json.loads(meta["extras"]) if "extras" in meta else {}
        if not tensors:
            raise CheckpointError(f"{path} holds no tensors")
        if meta.get("format") != "sslhub":  # transformers / timm Hub files: their config.json says the model
            cfg = config_beside(path)
            if cfg is not None:
                extras = {**extras, CONFIG_KEY: cfg}
        return tensors, extras, meta
    obj = load_torch_file(path)
    sd, extras = unwrap_checkpoint(obj, str(path))
    return sd, extras, {}


def _spec_from_metadata(meta: Mapping[str, str]) -> BackboneSpec | None:
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


def _preprocessing(spec: BackboneSpec, layout: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    if layout == "lightly-benchmark":
        cfg.update(input_size=(3, 224, 224), crop_pct=0.875)  # Resize(256) + CenterCrop(224)
    return cfg


def load_backbone_state(
    source: str | os.PathLike,
    *,
    arch: str | None = None,
    width: float | None = None,
    prefix: str | None = None,
    keep_num_ftrs: bool = False,
    dtype: torch.dtype | None = torch.float32,
) -> BackboneState:
    """Read a checkpoint and return its evaluation backbone's weights (prefix stripped, heads dropped).

    See :func:`load_pretrained` for the accepted sources and arguments.
    """
    hints = _card_hints(source)
    arch = arch if arch is not None else hints.get("arch")
    width = width if width is not None else hints.get("width")
    prefix = prefix if prefix is not None else hints.get("prefix")
    path = resolve_path(source)
    where = str(path)
    # sslhub safetensors name their backbone prefix: unless another copy is asked for, read only those tensors.
    sd, extras, meta = read_checkpoint(path, backbone_only=prefix is None)
    spec = _spec_from_metadata(meta) if prefix is None else None
    if spec is not None:
        chosen = meta.get("backbone_prefix", "")
        det = Detected(layout=meta.get("layout", "sslhub"), prefix=chosen, spec=spec, method=meta.get("method") or None,
                       out_dim=int(meta["out_dim"]) if meta.get("out_dim") else None)  # fmt: skip
    else:
        det = detect(sd, where, extras=extras, prefix=prefix, arch=arch)
        spec = det.spec
    spec = _check_request(spec, where, arch, width)
    if keep_num_ftrs and not (spec.family == "resnet_generator" and spec.num_ftrs):
        raise CheckpointError(
            f"{where}: features='embedding' needs a Lightly Worker checkpoint with the num_ftrs conv (backbone.7); "
            f"this file holds a {spec.describe()} without it. Use features='backbone'."
        )
    sub = _backbone_keys(backbone_tensors(sd, det.layout, det.prefix), spec, keep_num_ftrs)
    file_dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in sub.values() if t.is_floating_point()})
    if dtype is not None:  # fp16/bf16 files become float32 models, which take float32 images like any other
        sub = {k: t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t for k, t in sub.items()}
    bad = [k for k, t in sub.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
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
        **{k: v for k, v in meta.items() if k.startswith("source_")},
        **_preprocessing(spec, det.layout),
    }
    if det.layout == "timm-hub":  # the file's own pretrained_cfg (mean/std, input size)
        from sslhub.checkpoints.readers.timm_hub import preprocessing

        metadata.update(preprocessing(extras))
    if meta.get("input_size", "").isdigit():  # sslhub runs record the size they trained at
        size = int(meta["input_size"])
        metadata["input_size"] = (3, size, size)
    state = BackboneState(sub, spec, metadata)
    return state


def build_from_state(state: BackboneState, *, keep_num_ftrs: bool = False, where: str = "checkpoint") -> nn.Module:
    """Build the eval-mode module without random init and give it the tensors (no copies), strictly."""
    kwargs = state.spec.kwargs(keep_num_ftrs=keep_num_ftrs)
    model = assemble(kwargs, state.state_dict)  # cached skeleton: the fast path
    if model is not None:
        return model
    model = create_backbone(meta=True, **kwargs)
    try:
        model.load_state_dict(state.state_dict, strict=True, assign=True)
    except RuntimeError:
        have = set(model.state_dict())
        missing = sorted(have - set(state.state_dict))
        unexpected = sorted(set(state.state_dict) - have)
        shapes = [k for k in have & set(state.state_dict) if model.state_dict()[k].shape != state.state_dict[k].shape]
        detail = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", sorted(shapes)))
            if keys
        )
        groups = sorted({k.split(".")[0] for k in unexpected})
        hint = (
            "(for the Lightly Worker: lightly.model.name and lightly.model.width in output_dir/config/config.yaml)"
            if str(state.metadata.get("layout", "")).startswith("lightly-worker")
            else f"(unexpected key groups: {groups})" if groups else ""
        )
        raise CheckpointError(
            f"{where}: the weights do not fit a {state.spec.describe()} ({detail}). Pass arch=/width= matching "
            f"the run that made the file {hint}".rstrip()
        ) from None
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:  # buffers that are not in state dicts (none for supported families); initialise them for real
        model = create_backbone(**kwargs)
        model.load_state_dict(state.state_dict, strict=True)
    return model.eval()


def load_pretrained(
    source: str | os.PathLike,
    *,
    arch: str | None = None,
    width: float | None = None,
    features: str = "backbone",
    device: str | torch.device | None = None,
    prefix: str | None = None,
    dtype: torch.dtype | None = torch.float32,
) -> nn.Module:
    """Load a pretrained SSL backbone from any supported checkpoint.

    Args:
        source: a path to a Lightly Worker/CLI ``.ckpt`` (also legacy ``features`` layouts), a Lightly benchmark
            (Lightning) ``.ckpt``, an sslhub ``.safetensors``, or a plain torchvision/timm state dict
            (``.pth``); another SSL project's file (see :mod:`sslhub.checkpoints.readers`); a Hugging Face folder
            (``transformers``' ``save_pretrained`` or timm's ``save_for_hf``: ``config.json`` beside
            ``model.safetensors`` or a sharded ``model.safetensors.index.json``); a registry name, an http(s) URL
            or ``hf-hub:org/name[@rev]`` (see :mod:`sslhub.hub`).
        arch: architecture, only needed when the tensors cannot tell (``resnet-18`` = Lightly ResNetGenerator,
            ``resnet18`` = torchvision, ``vit_b_16`` = torchvision ViT, else a timm name). Contradicting the
            file is an error.
        width: Lightly ResNetGenerator width; inferred from the tensors when omitted.
        features: ``"backbone"`` (pooled backbone features, 512/2048-d x width for ResNets; the cls token or the
            token mean for ViTs, as the method defines), ``"embedding"`` (Worker checkpoints: keep the
            ``num_ftrs`` 1x1 conv, ``backbone.7``, and return the num_ftrs-d embeddings that ``lightly-embed``
            produces) or ``"tokens"`` (timm ViTs: all tokens after the final norm, ``(N, T, D)``).
        device: where to put the model (default CPU).
        prefix: pick a specific backbone copy (e.g. ``"student_backbone."``) instead of the evaluation one.
        dtype: the floating-point type of the model's weights: float32 by default, so that a float16/bfloat16
            file gives a model that works wherever a float32 one does; ``None`` keeps the file's own dtype.
            (Weights that are not finite are reported with a warning naming the tensors.)

    Returns:
        An eval-mode ``nn.Module`` mapping float ``(N, 3, H, W)`` to ``(N, D)``, with ``num_features`` and a
        ``pretrained_cfg`` dict: timm's data-config keys (``architecture``, ``input_size`` where known,
        ``interpolation``, ``crop_pct``, ``mean``, ``std``, ``num_features``; see :func:`sslhub.eval_transform`)
        and sslhub's own (``arch``, ``family``, source metadata).
    """
    if features not in FEATURES:
        raise ValueError(f"features={features!r}; choose one of {FEATURES}")
    keep = features == "embedding"
    state = load_backbone_state(source, arch=arch, width=width, prefix=prefix, keep_num_ftrs=keep, dtype=dtype)
    model = build_from_state(state, keep_num_ftrs=keep, where=state.metadata["source"])
    if features == "tokens":
        if not hasattr(model, "forward_features") or state.spec.family != "timm":
            raise CheckpointError(
                f"{state.metadata['source']}: features='tokens' needs a timm ViT; this file holds a "
                f"{state.spec.describe()}. Use features='backbone'."
            )
        model = TokenFeatures(model)
    cfg = dict(model.pretrained_cfg)
    if state.spec.family != "timm":  # sslhub's size-based default, to be re-derived at the size the file says
        cfg.pop("crop_pct", None)
    cfg.update({k: v for k, v in state.metadata.items() if v is not None and k not in ("components",)})
    cfg["features"] = features
    model.pretrained_cfg = complete_pretrained_cfg(cfg, getattr(model, "num_features", None))
    if model.training:  # backbones come built in eval mode; the TokenFeatures wrapper does not
        model.eval()
    if device is not None:
        model.to(device)
    logger.debug("loaded %s from %s (%s)", state.spec.describe(), state.metadata["source"], state.metadata["layout"])
    return model
