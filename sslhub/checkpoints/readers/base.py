"""What a reader of one upstream checkpoint layout declares, and the small helpers readers share.

A reader answers, from the tensors and the wrapper dict only (never the file name):

* ``match``: is this state dict in my layout? If so, which key prefix is the evaluation copy;
* ``drop``: which keys under that prefix are not part of the backbone (projection MLPs, mask tokens);
* ``rename``: the key remap from the upstream's names to the torchvision/timm names sslhub builds;
* ``facts``: what the tensors cannot tell (MoCo v3 ViT-S's 12 heads, solo-learn's CIFAR stem), applied to the
  spec that the tensors give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

__all__ = ["Match", "Reader", "first_prefix", "has_group", "is_resnet", "is_timm_vit"]

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Match:
    """A recognised layout: the evaluation copy's prefix and the variant found (for ``sslhub info``)."""

    prefix: str
    variant: str = ""  # e.g. "training checkpoint", "released backbone"


class Reader:
    """Base class: subclasses set the class attributes and override what their layout needs."""

    name: str = ""  # layout name, as model cards write it in ``source.layout``
    upstream: str = ""  # the project whose code writes this layout
    evaluation_copy: str = ""  # which copy is the evaluation backbone, in the upstream's words
    drop: tuple[str, ...] = ()  # key prefixes (after the evaluation prefix is stripped) that are not backbone
    method: str | None = None  # the SSL method, where the layout implies it

    def unwrap(self, obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """Nested wrappers (VISSL) return (flat state dict, other entries); most layouts use the generic unwrap."""
        return None

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        raise NotImplementedError

    def rename(self, sub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Upstream key names -> torchvision/timm names (``sub`` has the prefix stripped and ``drop`` removed)."""
        return sub

    def spec(self, sub: StateDict) -> Any:
        """The ``BackboneSpec`` for backbones that the generic key anchors do not cover (timm Eva, ConvNeXt,
        SwiGLU ViTs), from the remapped tensors; ``None`` (the default) lets the anchors infer it."""
        return None

    def facts(self, spec: Any, sub: StateDict) -> list[str]:
        """Adjust (in place) the spec inferred from the tensors with what only the upstream's code tells; return
        one line per fact applied (shown by ``sslhub info``)."""
        return []

    def spec_from_config(self, sub: StateDict, extras: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
        """Readers whose file comes with a config (``config.json``) build the spec from it instead of inferring
        it from the tensors: ``(BackboneSpec fields, facts)``, given the remapped backbone ``sub``. None = infer."""
        return None

    def backbone(self, sub: StateDict) -> dict[str, torch.Tensor]:
        """The backbone's tensors from the prefix-stripped state dict."""
        kept = {k: v for k, v in sub.items() if not k.startswith(self.drop)} if self.drop else dict(sub)
        return self.rename(kept)

    def dropped_inside(self, sub: StateDict) -> list[str]:
        """The ``drop`` groups that this file has (for ``sslhub info``)."""
        return sorted({d.rstrip(".") for d in self.drop for k in sub if k.startswith(d)})


def has_group(sd: StateDict, prefix: str) -> bool:
    """Any key under ``prefix``? (A scan: used only after cheaper exact-key anchors matched.)"""
    return any(k.startswith(prefix) for k in sd)


def first_prefix(sd: StateDict, prefixes: tuple[str, ...], anchor: str) -> str | None:
    """The first of ``prefixes`` under which ``anchor`` is a key."""
    return next((p for p in prefixes if p + anchor in sd), None)


def is_resnet(sd: StateDict, prefix: str) -> bool:
    w = sd.get(prefix + "conv1.weight")
    return w is not None and w.ndim == 4 and w.shape[1] == 3 and prefix + "layer1.0.conv1.weight" in sd


def is_timm_vit(sd: StateDict, prefix: str) -> bool:
    return prefix + "patch_embed.proj.weight" in sd and prefix + "blocks.0.attn.qkv.weight" in sd
