"""What a reader of one checkpoint layout declares, and the small helpers readers share.

The recognise stage asks each reader of :data:`sslhub.checkpoints.readers.READERS` in turn,
``reader.recognise(checkpoint, where, prefix=, arch=)``; the first that returns a :class:`Detected` wins. Most
readers (the upstream layouts) only declare, from the tensors and the wrapper dict (never the file name):

* ``match``: is this state dict in my layout? If so, which key prefix is the evaluation copy;
* ``drop``: which keys under that prefix are not part of the backbone (projection MLPs, mask tokens);
* ``rename``: the key remap from the upstream's names to the torchvision/timm names sslhub builds;
* ``facts``: what the tensors cannot tell (MoCo v3 ViT-S's 12 heads, solo-learn's CIFAR stem), applied to the
  spec that the tensors give;
* ``signature``: the keys it matches on, which ``sslhub info`` names as the reason it matched.

and the default :meth:`Reader.recognise` turns those into a :class:`Detected`. Readers whose evidence is not a
key pattern (an sslhub header, Lightly's prefix rules) override :meth:`Reader.recognise` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from sslhub.checkpoints.anchors import (
    components,
    find_backbones,
    infer_spec,
    strip_prefix,
)
from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.spec import BackboneSpec, Checkpoint, Detected

__all__ = ["Match", "Reader", "first_prefix", "has_group", "is_resnet", "is_timm_vit", "normalise_prefix"]

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Match:
    """A recognised layout: the evaluation copy's prefix and the variant found (for ``sslhub info``)."""

    prefix: str
    variant: str = ""  # e.g. "training checkpoint", "released backbone"
    why: str = ""  # what matched, when the reader's ``signature`` does not say it (e.g. a config.json field)


class Reader:
    """Base class: subclasses set the class attributes and override what their layout needs."""

    name: str = ""  # layout name, as model cards write it in ``source.layout``
    upstream: str = ""  # the project whose code writes this layout
    evaluation_copy: str = ""  # which copy is the evaluation backbone, in the upstream's words
    drop: tuple[str, ...] = ()  # key prefixes (after the evaluation prefix is stripped) that are not backbone
    method: str | None = None  # the SSL method, where the layout implies it
    # keys this layout is recognised by, as they appear in the file ("x." = any key under x.); ``sslhub info`` names
    # the ones a file has, relative to the evaluation prefix when they are not found as written
    signature: tuple[str, ...] = ()

    def recognise(self, ckpt: Checkpoint, where: str, *, prefix: str | None, arch: str | None) -> Detected | None:
        """This layout's reading of ``ckpt``, or None when it is not this layout (or ``prefix=`` asks for another
        copy than the one this layout evaluates, which the generic Lightly/plain readers then pick)."""
        sd, extras = ckpt.tensors, ckpt.extras
        m = self.match(sd, extras)
        if m is None:
            return None
        if prefix is not None and normalise_prefix(prefix) != m.prefix:
            return None
        stripped = strip_prefix(sd, m.prefix)
        sub = self.backbone(stripped)
        why = m.why or self.evidence(sd, m.prefix) or m.variant
        common = dict(layout=self.name, prefix=m.prefix, method=self.method, upstream=self.upstream,
                      evaluation_copy=self.evaluation_copy, variant=m.variant or None, reader=self.name, why=why)  # fmt: skip
        given = self.spec_from_config(sub, extras)
        if given is not None:  # the file's config.json says the architecture
            fields, facts = given
            outside = sorted({k.split(".")[0] for k in sd if not k.startswith(m.prefix)}) if m.prefix else []
            dropped = sorted(outside + [m.prefix + d for d in self.dropped_inside(stripped)])
            return Detected(spec=BackboneSpec(**fields), components=dropped, facts=facts, **common)
        spec = self.spec(sub)
        family = spec.family if spec is not None else find_backbones(sub).get("")
        if family is None:
            groups = sorted({k.split(".")[0] for k in sub})[:12]
            raise CheckpointError(
                f"{where} [{self.name}: {m.prefix or '<root>'}]: a {self.upstream} file whose backbone is not a "
                f"torchvision ResNet or timm ViT (key groups under {m.prefix!r}: {groups}); sslhub cannot rebuild it"
            )
        own_spec = spec is not None
        if spec is None:
            spec = infer_spec(family, sub, f"{where} [{self.name}: {m.prefix or '<root>'}]")
        facts = self.facts(spec, sub)
        # a reader's own spec: the backbone's groups are not the generic family's, so only name what lies outside it
        outside = [] if own_spec and not m.prefix else components(sd, m.prefix, family)
        dropped = sorted(outside + [m.prefix + d for d in self.dropped_inside(stripped)])
        return Detected(spec=spec, components=dropped, facts=facts, **common)

    def evidence(self, sd: StateDict, prefix: str) -> str:
        """``keys 'a', 'b'``: the ``signature`` keys this file has (for ``sslhub info``), or "" if none."""
        found = []
        for key in self.signature:
            for k in (key, prefix + key):
                if (k in sd) if not k.endswith(".") else has_group(sd, k):
                    found.append(k + ("*" if k.endswith(".") else ""))
                    break
        return "keys " + ", ".join(repr(k) for k in found) if found else ""

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


def normalise_prefix(prefix: str) -> str:
    """``"backbone"`` -> ``"backbone."`` (``prefix=`` may be given without its dot); ``""`` stays the root."""
    return prefix if not prefix or prefix.endswith(".") else prefix + "."


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
