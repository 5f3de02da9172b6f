"""Backbones: feature extractors mapping float ``(N, 3, H, W)`` to ``(N, D)``.

Families (``family`` in the metadata, chosen from the architecture name):

* ``resnet_generator``: Lightly's ``ResNetGenerator`` (``resnet-9`` ... ``resnet-152``, any float width).
* ``torchvision_resnet``: ``torchvision.models.resnet18`` ... (``fc`` replaced by ``Identity``).
* ``torchvision_vit``: ``torchvision.models.vit_b_16`` and friends (``heads`` replaced by ``Identity``), optionally
  with other ``VisionTransformer`` sizes (``patch_size``, ``num_layers``, ``num_heads``, ``hidden_dim``, ``mlp_dim``).
* ``timm``: any ``timm`` model by name (``num_classes=0``), e.g. ``vit_small_patch16_224`` at any image size.

Every module returned by :func:`create_backbone` carries ``num_features`` and ``pretrained_cfg`` (a dict with
``arch``, ``family``, ``mean``, ``std``, ``input_size`` and, where it applies, ``width``/``num_ftrs``, plus timm's
data-config keys ``architecture``, ``interpolation``, ``crop_pct``, ``crop_mode``, ``num_features``: see
:mod:`sslhub.backbones.pretrained_cfg`).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import torch
from torch import nn

from sslhub.backbones.pretrained_cfg import complete_pretrained_cfg
from sslhub.backbones.resnet_generator import (
    RESNET_GENERATOR_SPECS,
    ResNetGeneratorBackbone,
    resnet_generator,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESNET_GENERATOR_SPECS",
    "SOLO_CIFAR_STEM",
    "TORCHVISION_RESNETS",
    "TORCHVISION_VITS",
    "TORCHVISION_VIT_SIZES",
    "ResNetGeneratorBackbone",
    "create_backbone",
    "family_of",
    "feature_view",
    "resnet_generator",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# solo-learn's CIFAR variant of the torchvision ResNets: conv1 3x3 stride 1 padding 2, no max-pool
SOLO_CIFAR_STEM = "solo-cifar"
TORCHVISION_VITS = ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14")
# torchvision ViT name -> the ``VisionTransformer`` size arguments its builder passes (torchvision 0.15+).
# ``create_backbone(<name>, **overrides)`` accepts any of these keys as overrides (e.g. CPU-sized test models).
TORCHVISION_VIT_SIZES: dict[str, dict[str, int]] = {
    "vit_b_16": {"patch_size": 16, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072},
    "vit_b_32": {"patch_size": 32, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072},
    "vit_l_16": {"patch_size": 16, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "mlp_dim": 4096},
    "vit_l_32": {"patch_size": 32, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "mlp_dim": 4096},
    "vit_h_14": {"patch_size": 14, "num_layers": 32, "num_heads": 16, "hidden_dim": 1280, "mlp_dim": 5120},
}


def family_of(arch: str) -> str:
    """Return the backbone family for an architecture name (see module docstring)."""
    if arch in RESNET_GENERATOR_SPECS:
        return "resnet_generator"
    if arch in TORCHVISION_RESNETS:
        return "torchvision_resnet"
    if arch in TORCHVISION_VITS:
        return "torchvision_vit"
    return "timm"


_RESET_METHODS = (
    (nn.modules.conv._ConvNd, "reset_parameters"),
    (nn.Linear, "reset_parameters"),
    (nn.modules.batchnorm._NormBase, "reset_parameters"),
    (nn.modules.batchnorm._NormBase, "reset_running_stats"),
)


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    """Construct ResNets without random init (weights are assigned right after, so init is wasted work).

    Cheaper than the meta device for many small modules: the meta device's TorchFunctionMode taxes every
    parameter creation, while uninitialised real storage is only address space until it is replaced.
    """
    saved = [(cls, name, cls.__dict__[name]) for cls, name in _RESET_METHODS]
    for cls, name, _ in saved:
        setattr(cls, name, lambda self: None)
    try:
        yield
    finally:
        for cls, name, fn in saved:
            setattr(cls, name, fn)


@contextlib.contextmanager
def _maybe_meta(meta: bool, family: str) -> Iterator[None]:
    # Skipping random init matters: it dominates load time for large models.
    if not meta:
        yield
    elif family in ("resnet_generator", "torchvision_resnet"):
        with _skip_init():
            yield
    else:
        with torch.device("meta"):
            yield


def _keep_rope_periods(model: nn.Module) -> None:
    """Make timm's DINOv3 RoPE periods part of the state dict, so loaded files keep theirs.

    DINOv3's release files store the periods (bf16 values) and DINOv3's own code uses them; timm recomputes them
    in fp32 (a non-persistent buffer), which moves the features by ~5e-4 relative.
    """
    rope = getattr(model, "rope", None)
    if type(rope).__name__ == "RotaryEmbeddingDinoV3" and "periods" in rope._non_persistent_buffers_set:
        rope._non_persistent_buffers_set.discard("periods")


def build_on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` on the meta device (no memory, no random init), or on the CPU where the builder cannot run on
    meta tensors (older timm, 1.0.3, reads drop-path rates with ``.item()``)."""
    try:
        with torch.device("meta"):
            return build()
    except RuntimeError as e:
        if "meta tensor" not in str(e):
            raise
        with torch.device("cpu"):
            return build()


# timm releases that added the architectures sslhub's readers build (DINOv3 ViT/ConvNeXt: timm 1.0.20)
_TIMM_ADDED = {"dinov3": "1.0.20"}


def _timm_too_old(arch: str) -> str:
    """A hint naming the timm release that has ``arch`` when the installed one is older (a version gap, not a typo)."""
    import timm

    for key, version in _TIMM_ADDED.items():
        if key in arch:
            have = tuple(int(x) for x in timm.__version__.split(".")[:3] if x.isdigit())
            if have < tuple(int(x) for x in version.split(".")):
                return f". {arch} needs timm >= {version} (installed: {timm.__version__}): pip install -U 'timm>={version}'"
    return ""


def _torchvision_vit(arch: str, img_size: int | None, overrides: dict[str, Any]) -> nn.Module:
    """torchvision's ``arch`` (weights=None), or a ``VisionTransformer`` with some of its size arguments replaced."""
    import torchvision

    defaults = TORCHVISION_VIT_SIZES[arch]
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(
            f"{arch} is a torchvision ViT: it takes img_size and the size overrides {', '.join(defaults)}, "
            f"not {', '.join(unknown)}"
        )
    if not overrides:
        kwargs = {"image_size": img_size} if img_size else {}
        return getattr(torchvision.models, arch)(weights=None, **kwargs)
    size = {**defaults, **{k: int(v) for k, v in overrides.items()}}
    image_size = img_size or 224
    # torchvision checks these with bare asserts; say which argument to change instead
    if image_size % size["patch_size"]:
        raise ValueError(f"{arch}: img_size={image_size} is not a multiple of patch_size={size['patch_size']}")
    if size["hidden_dim"] % size["num_heads"]:
        raise ValueError(f"{arch}: hidden_dim={size['hidden_dim']} is not divisible by num_heads={size['num_heads']}")
    return torchvision.models.VisionTransformer(image_size=image_size, **size)


def create_backbone(
    arch: str,
    *,
    width: float | None = None,
    num_ftrs: int | None = None,
    img_size: int | None = None,
    meta: bool = False,
    **timm_kwargs: Any,
) -> nn.Module:
    """Build an untrained feature extractor.

    Args:
        arch: ``resnet-18`` style (Lightly ResNetGenerator), ``resnet18`` style (torchvision),
            ``vit_b_16`` style (torchvision ViT) or any timm model name.
        width: ResNetGenerator width (default 1.0). Rejected for other families.
        num_ftrs: ResNetGenerator only: keep the Worker's 1x1 ``num_ftrs`` conv (``backbone.7``).
        img_size: input size for ViTs (timm ``img_size``; torchvision ``image_size``).
        meta: skip random init (uninitialised or meta-device tensors); load weights with ``assign=True`` next.
        timm_kwargs: passed to ``timm.create_model`` (e.g. ``init_values=1e-5``, ``global_pool="avg"``); for
            torchvision ViTs, overrides of the named architecture's ``VisionTransformer`` sizes (``patch_size``,
            ``num_layers``, ``num_heads``, ``hidden_dim``, ``mlp_dim``), recorded in ``pretrained_cfg["timm_kwargs"]``.
            ``layer_norm_eps`` (timm models with a ``norm_layer`` argument that is a LayerNorm: ViT, EVA) sets that
            LayerNorm's eps, e.g. the 1e-12 of transformers' ViT configs, where timm's default is 1e-6.
    """
    family = family_of(arch)
    if family != "resnet_generator" and (width not in (None, 1, 1.0) or num_ftrs is not None):
        raise ValueError(
            f"width/num_ftrs apply only to Lightly ResNetGenerator architectures (resnet-18 style), not {arch!r}"
        )
    cfg: dict[str, Any] = {
        "arch": arch,
        "family": family,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "input_size": None,
    }
    with _maybe_meta(meta, family):
        if family == "resnet_generator":
            model: nn.Module = ResNetGeneratorBackbone(arch, width=1.0 if width is None else width, num_ftrs=num_ftrs)
            cfg.update(width=model.width, num_ftrs=num_ftrs)
        elif family == "torchvision_resnet":
            import torchvision

            stem = timm_kwargs.pop("stem", None)
            if stem not in (None, SOLO_CIFAR_STEM):
                raise ValueError(f"{arch}: unknown stem={stem!r}; torchvision ResNets take stem={SOLO_CIFAR_STEM!r} or none")
            model = getattr(torchvision.models, arch)(weights=None)
            model.num_features = model.fc.in_features
            model.fc = nn.Identity()
            cfg["input_size"] = (3, 224, 224)
            if stem == SOLO_CIFAR_STEM:
                # solo-learn's CIFAR ResNets (solo/methods/base.py): 3x3 stride-1 conv with padding 2, no max-pool
                model.conv1 = nn.Conv2d(3, model.conv1.out_channels, kernel_size=3, stride=1, padding=2, bias=False)
                model.maxpool = nn.Identity()
                cfg.update(input_size=(3, 32, 32), timm_kwargs={"stem": stem})
        elif family == "torchvision_vit":
            model = _torchvision_vit(arch, img_size, timm_kwargs)
            model.num_features = model.hidden_dim
            model.heads = nn.Identity()
            size = img_size or 224
            cfg["input_size"] = (3, size, size)
            # The size overrides travel in the same metadata field as timm's kwargs, so checkpoints rebuild it.
            cfg["timm_kwargs"] = dict(timm_kwargs)
        else:
            import timm

            kwargs = dict(timm_kwargs)
            if img_size:
                kwargs["img_size"] = img_size
            if "layer_norm_eps" in kwargs:  # JSON-able stand-in for norm_layer=partial(LayerNorm, eps=...)
                from timm.layers import LayerNorm

                kwargs["norm_layer"] = functools.partial(LayerNorm, eps=float(kwargs.pop("layer_norm_eps")))
            # files that store no RoPE periods (transformers' DINOv3 recomputes them in fp32, as timm does) say so
            keep_periods = bool(kwargs.pop("keep_rope_periods", True))
            try:
                try:
                    model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
                except RuntimeError as e:
                    if not (meta and "meta tensor" in str(e)):
                        raise
                    # older timm (1.0.3) reads drop-path rates with .item(), which meta tensors refuse: build on the CPU
                    with torch.device("cpu"):
                        model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
            except RuntimeError as e:  # timm raises RuntimeError for unknown names
                raise ValueError(
                    f"unknown architecture {arch!r}: not a Lightly ResNetGenerator name "
                    f"({', '.join(RESNET_GENERATOR_SPECS)}), not a torchvision ResNet/ViT, and timm says: {e}"
                    f"{_timm_too_old(arch)}"
                ) from None
            if keep_periods:
                _keep_rope_periods(model)
            tcfg = getattr(model, "pretrained_cfg", {}) or {}
            cfg["mean"] = tuple(tcfg.get("mean", IMAGENET_MEAN))
            cfg["std"] = tuple(tcfg.get("std", IMAGENET_STD))
            if img_size:
                cfg["input_size"] = (3, img_size, img_size)
            else:
                cfg["input_size"] = tuple(tcfg["input_size"]) if "input_size" in tcfg else None
            for k, v in timm_kwargs.items():  # what it takes to rebuild this exact model
                cfg[k] = v
            cfg["timm_kwargs"] = dict(timm_kwargs)
    # timm reads pretrained_cfg itself, so merge rather than replace for timm models.
    old = getattr(model, "pretrained_cfg", None)
    if isinstance(old, dict):
        # These describe timm's own published weights, not ours (built with pretrained=False): drop them.
        old = {k: v for k, v in old.items() if k not in ("url", "hf_hub_id", "hf_hub_filename", "tag", "license",
                                                         "file", "source", "paper_ids", "paper_name", "origin_url")}  # fmt: skip
    model.pretrained_cfg = {**old, **cfg} if isinstance(old, dict) else cfg
    complete_pretrained_cfg(model.pretrained_cfg, getattr(model, "num_features", None))
    return model


def feature_view(backbone: nn.Module) -> nn.Module:
    """What :func:`sslhub.load_pretrained` rebuilds from ``backbone``'s saved weights (``features="backbone"``),
    sharing its parameters: a Lightly Worker ResNetGenerator without its ``num_ftrs`` 1x1 conv (``backbone.7``,
    kept only by ``features="embedding"``), any other backbone as it is.

    The training monitor evaluates this view, so that its kNN is the one ``sslhub eval knn`` measures on the
    run's ``model.safetensors``.
    """
    if not (isinstance(backbone, ResNetGeneratorBackbone) and backbone.num_ftrs is not None):
        return backbone
    view = nn.Sequential(*(m for i, m in enumerate(backbone) if i != 7))
    view.num_features = backbone.feature_dim
    view.pretrained_cfg = {**getattr(backbone, "pretrained_cfg", {}), "num_ftrs": None}
    return view
