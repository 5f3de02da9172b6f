"""Stage 3 of loading, *recognise*: which reader's layout a checkpoint is, and what it holds.

One loop over the one registry, :data:`sslhub.checkpoints.readers.READERS` (its docstring gives the order and
why); the first reader that answers gives the :class:`~sslhub.checkpoints.spec.Detected`: the evaluation copy's
prefix, the spec to build, the heads left out, and which reader matched and why (``sslhub info``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.readers import READERS
from sslhub.checkpoints.spec import Checkpoint, Detected

__all__ = ["detect", "recognise"]


def recognise(ckpt: Checkpoint, where: str, *, prefix: str | None = None, arch: str | None = None) -> Detected:
    """Find the evaluation backbone in a read checkpoint and how to rebuild it.

    Args:
        ckpt: what the read stage returned.
        where: file name for error messages.
        prefix: choose this backbone prefix instead of the layout's evaluation copy.
        arch: architecture the caller expects; used when the tensors alone cannot tell (non-ViT timm models).

    Raises:
        CheckpointError: no reader recognises the file (the message names the key groups it has).
    """
    sd = ckpt.tensors
    if not sd:
        raise CheckpointError(f"{where} holds an empty state dict: there are no weights to load")
    for reader in READERS:
        det = reader.recognise(ckpt, where, prefix=prefix, arch=arch)
        if det is not None:
            return det
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


def detect(
    sd: Mapping[str, torch.Tensor],
    where: str,
    *,
    extras: Mapping[str, Any] | None = None,
    prefix: str | None = None,
    arch: str | None = None,
) -> Detected:
    """:func:`recognise` from the tensors and wrapper alone (no safetensors header): what ``sslhub convert``
    records in the header it writes."""
    return recognise(Checkpoint(dict(sd), dict(extras or {}), {}), where, prefix=prefix, arch=arch)
