"""``load_pretrained``: any supported checkpoint in, an eval-mode feature extractor out, in five stages.

1. **resolve** (:func:`resolve_path`, here): a registry name, an http(s) URL, ``hf-hub:org/name`` or a path ->
   a local file or folder (and, for a registry name, its card's load hints: arch, width, prefix). The only stage
   that needs :mod:`sslhub.hub`, which is why this module sits above both the hub and the checkpoint layers.
2. **read** (:func:`sslhub.checkpoints.read.read_checkpoint`): file -> tensors, wrapper entries, header; safely.
3. **recognise** (:func:`sslhub.checkpoints.recognise.recognise`): one registry of readers
   (:data:`sslhub.checkpoints.readers.READERS`) -> which copy is the evaluation backbone and how to rebuild it.
4. **remap** (:func:`sslhub.checkpoints.remap.backbone_state`): that copy's tensors in the names sslhub builds.
5. **build** (:mod:`sslhub.checkpoints.build`): the module, strictly, without a random init.

Stages 2-5 take local files only and live in :mod:`sslhub.checkpoints`, which imports nothing above itself.
:func:`convert` and :func:`info` are the same resolve stage in front of the checkpoint layer's converters.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslhub.checkpoints.build import FEATURES, build_from_state, feature_extractor
from sslhub.checkpoints.convert import convert_file
from sslhub.checkpoints.info import info_file
from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.read import read_checkpoint
from sslhub.checkpoints.recognise import recognise
from sslhub.checkpoints.remap import BackboneState, backbone_state
from sslhub.suggest import FILE_SUFFIXES, no_such_file

logger = logging.getLogger(__name__)

__all__ = ["BackboneState", "convert", "info", "load_backbone_state", "load_pretrained", "resolve_path"]


def resolve_path(source: str | os.PathLike) -> Path:
    """Turn a source (path, registry name, URL, ``hf-hub:`` id) into a local file path."""
    if isinstance(source, os.PathLike) or Path(str(source)).exists():
        return Path(source)
    s = str(source)
    looks_like_file = Path(s).suffix.lower() in FILE_SUFFIXES  # "checkpont.ckpt" is a typo, not a registry name
    if s.startswith(("http://", "https://", "hf-hub:")) or (
        "/" not in s and os.sep not in s and "." in s and not looks_like_file
    ):
        from sslhub.hub import (
            resolve_source,  # the hub layer: registry names, URLs, Hugging Face Hub
        )

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


def load_backbone_state(
    source: str | os.PathLike,
    *,
    arch: str | None = None,
    width: float | None = None,
    prefix: str | None = None,
    keep_num_ftrs: bool = False,
    dtype: torch.dtype | None = torch.float32,
) -> BackboneState:
    """Read a checkpoint and return its evaluation backbone's weights (prefix stripped, heads dropped): stages
    1-4 of :func:`load_pretrained`, whose docstring gives the accepted sources and arguments."""
    hints = _card_hints(source)
    arch = arch if arch is not None else hints.get("arch")
    width = width if width is not None else hints.get("width")
    prefix = prefix if prefix is not None else hints.get("prefix")
    path = resolve_path(source)  # 1. resolve
    where = str(path)
    # 2. read; sslhub safetensors name their backbone prefix: unless another copy is asked for, only its tensors
    ckpt = read_checkpoint(path, backbone_only=prefix is None)
    det = recognise(ckpt, where, prefix=prefix, arch=arch)  # 3. recognise
    return backbone_state(ckpt, det, where, arch=arch, width=width, keep_num_ftrs=keep_num_ftrs, dtype=dtype)  # 4.


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
    model = build_from_state(state, keep_num_ftrs=keep, where=state.metadata["source"])  # 5. build
    return feature_extractor(model, state, features, device)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    force: bool = False,
    arch: str | None = None,
    prefix: str | None = None,
) -> Path:
    """Convert a checkpoint to another container without changing any tensor.

    The destination format follows its suffix: ``.safetensors`` (sslhub: every tensor plus a header with layout,
    architecture, width, num_ftrs, out_dim, method, source sha256 and sslhub version), ``.ckpt``
    (``{"state_dict": ...}`` as the Lightly Worker writes it, plus the Lightning bookkeeping that was kept) or
    ``.pth``/``.pt``/``.bin`` (a plain state dict). A bare ResNetGenerator backbone (as published) gets the Worker's
    ``model.backbone.`` prefix in a ``.ckpt`` so that Lightly's loaders accept it.
    ``.ckpt -> .safetensors -> .ckpt`` is bit-identical.

    Args:
        src: anything :func:`load_pretrained` accepts (resolved here; then
            :func:`sslhub.checkpoints.convert.convert_file` converts the local file).
        dst: output path; written atomically. An existing file needs ``force=True``.
        arch: architecture hint recorded in the header when the tensors cannot tell.
        prefix: record this backbone prefix instead of the detected evaluation copy.
    """
    return convert_file(resolve_path(src), dst, force=force, arch=arch, prefix=prefix)


def info(source: str | os.PathLike, *, arch: str | None = None) -> dict[str, Any]:
    """Describe a checkpoint (anything :func:`load_pretrained` accepts): layout, the reader that matched and why,
    architecture, width, feature dim, parameter counts, heads, metadata. See
    :func:`sslhub.checkpoints.info.info_file`."""
    return info_file(resolve_path(source), arch=arch)
