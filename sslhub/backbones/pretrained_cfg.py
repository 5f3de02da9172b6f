"""The preprocessing a backbone declares, in timm's ``pretrained_cfg`` keys.

Every sslhub model carries ``pretrained_cfg`` with timm's keys (``architecture``, ``input_size``, ``interpolation``,
``crop_pct``, ``crop_mode``, ``mean``, ``std``, ``num_features``) next to sslhub's own (``arch``, ``family``,
``width``, source metadata, ...), so that ``timm.data.resolve_data_config(model=m)`` gives exactly the
preprocessing sslhub's evaluation uses (:func:`sslhub.eval_transform`, :func:`sslhub.data_config`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["DEFAULT_CROP_PCT", "DEFAULT_INTERPOLATION", "SMALL_INPUT", "complete_pretrained_cfg", "default_crop_pct"]

# torchvision's Resize default, which Lightly's and solo-learn's evaluation transforms use, and which sslhub's
# fast decoder (sslhub.data.decode) applies. timm's own published weights say "bicubic": those are not ours.
DEFAULT_INTERPOLATION = "bilinear"
# Small-image benchmarks (CIFAR, STL at 64) evaluate on the full image; larger inputs use the usual
# resize-to-1/0.875-then-center-crop (ImageNet: 256 -> 224).
SMALL_INPUT = 64
DEFAULT_CROP_PCT = 0.875


def default_crop_pct(input_size: int) -> float:
    """sslhub's center-crop fraction for a square input of ``input_size`` px: 1.0 up to 64 px, else 0.875."""
    return 1.0 if input_size <= SMALL_INPUT else DEFAULT_CROP_PCT


def complete_pretrained_cfg(cfg: MutableMapping[str, Any], num_features: int | None) -> MutableMapping[str, Any]:
    """Add timm's data-config keys to ``cfg`` in place and return it.

    ``crop_pct``, ``mean`` and ``std`` already there win; ``interpolation`` is always sslhub's (what a freshly
    built timm model carries describes timm's own weights, see :data:`DEFAULT_INTERPOLATION`).

    ``crop_pct`` is declared only where the input size is known: a Lightly ResNetGenerator has none, and its
    crop then follows the size chosen at evaluation (:func:`default_crop_pct`).
    """
    if cfg.get("arch"):
        cfg["architecture"] = cfg["arch"]
    cfg["interpolation"] = DEFAULT_INTERPOLATION
    cfg.setdefault("crop_mode", "center")
    size = cfg.get("input_size")
    if size and not cfg.get("crop_pct"):
        cfg["crop_pct"] = default_crop_pct(int(size[-1]))
    if num_features is not None:
        cfg["num_features"] = int(num_features)
    return cfg
