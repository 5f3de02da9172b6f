"""The data that flows through the loading pipeline: a read checkpoint, what was recognised in it, how to build it.

:class:`Checkpoint` is what the *read* stage returns, :class:`Detected` what the *recognise* stage returns (which
reader matched, why, which key prefix is the evaluation copy) and :class:`BackboneSpec` what the *build* stage
needs to rebuild the module. Plain data only: every stage module imports this one, and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

__all__ = ["BackboneSpec", "Checkpoint", "Detected"]


class Checkpoint(NamedTuple):
    """A checkpoint file as read: its tensors, the wrapper's other entries, and the safetensors header."""

    tensors: dict[str, torch.Tensor]
    extras: dict[str, Any]  # Lightning bookkeeping, a transformers/timm ``config.json`` (key "config.json"), ...
    meta: dict[str, str]  # safetensors ``__metadata__`` ({} for torch files)


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

    layout: str  # the layout whose key remap applies (an sslhub file records the one it was converted from)
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
    reader: str = ""  # the reader that matched (see :data:`sslhub.checkpoints.readers.READERS`)
    why: str = ""  # what it matched on, e.g. "keys 'storage_tokens', 'rope_embed.periods'" (``sslhub info``)
