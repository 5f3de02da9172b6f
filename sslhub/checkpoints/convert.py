"""Lossless conversion between Lightly ``.ckpt`` files, plain state dicts and sslhub ``.safetensors``.

:func:`convert_file` converts a local file; :func:`sslhub.convert` (in :mod:`sslhub.loading`) resolves a registry
name, URL or ``hf-hub:`` id first.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from sslhub._files import OutputPathError, check_output_path
from sslhub._version import __version__
from sslhub.checkpoints.io import CheckpointError, save_safetensors, save_torch, sha256_file
from sslhub.checkpoints.hf_files import weights_in
from sslhub.checkpoints.read import read_checkpoint
from sslhub.checkpoints.recognise import detect

logger = logging.getLogger(__name__)

__all__ = ["convert_file", "sslhub_metadata"]

TORCH_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")


def _jsonable_extras(extras: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Lightning bookkeeping worth keeping (epoch, global_step, versions, hyper_parameters); optimizer state,
    loops and callbacks are training state, not weights, and are dropped."""
    kept: dict[str, Any] = {}
    for k, v in extras.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            logger.info("%s: not carried over: %r (training state, not weights)", where, k)
            continue
        kept[k] = v
    return kept


def sslhub_metadata(
    sd: Mapping[str, torch.Tensor],
    where: str,
    *,
    extras: Mapping[str, Any] | None = None,
    arch: str | None = None,
    prefix: str | None = None,
    source_sha256: str | None = None,
) -> dict[str, Any]:
    """The safetensors header sslhub writes: everything ``load_pretrained`` needs, so it needs no flags."""
    extras = dict(extras or {})
    meta: dict[str, Any] = {"format": "sslhub", "sslhub_version": __version__}
    try:
        det = detect(sd, where, extras=extras, prefix=prefix, arch=arch)
    except CheckpointError as e:
        logger.warning("%s; writing the tensors without backbone metadata", e)
    else:
        spec = det.spec
        meta.update(
            layout=det.layout,
            family=spec.family,
            arch=spec.arch,
            width=f"{spec.width:g}" if spec.width is not None else None,
            num_ftrs=str(spec.num_ftrs) if spec.num_ftrs else None,
            img_size=str(spec.img_size) if spec.img_size else None,
            timm_kwargs=json.dumps(spec.timm_kwargs),
            backbone_prefix=det.prefix,
            method=det.method,
            out_dim=str(det.out_dim) if det.out_dim else None,
        )
    if extras:
        meta["extras"] = json.dumps(extras)
    if source_sha256:
        meta["source_sha256"] = source_sha256
    return meta


def _worker_keys(sd: dict[str, torch.Tensor], meta: Mapping[str, str], where: str) -> dict[str, torch.Tensor]:
    """A bare ResNetGenerator backbone (``0.weight``..., e.g. a published folder) goes into a ``.ckpt`` under the
    Worker's ``model.backbone.`` prefix, so that Lightly's loaders read it; everything else is kept as it is."""
    if meta.get("format") == "sslhub" and "backbone_prefix" in meta:
        family, prefix = meta.get("family"), meta["backbone_prefix"]
    else:
        try:
            det = detect(sd, where)
        except CheckpointError:
            return sd
        family, prefix = det.spec.family, det.prefix
    if family == "resnet_generator" and prefix == "":
        return {f"model.backbone.{k}": v for k, v in sd.items()}
    return sd


def convert_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    force: bool = False,
    arch: str | None = None,
    prefix: str | None = None,
) -> Path:
    """Convert a local checkpoint file to another container without changing any tensor: the formats and the
    header are :func:`sslhub.convert`'s (which also resolves registry names, URLs and ``hf-hub:`` ids first).

    Args:
        src: a local checkpoint file or folder (:func:`sslhub.convert` also takes registry names, URLs, ``hf-hub:``).
        dst: output path; written atomically. An existing file needs ``force=True``.
        arch: architecture hint recorded in the header when the tensors cannot tell.
        prefix: record this backbone prefix instead of the detected evaluation copy.
    """
    src_path = weights_in(Path(src))  # a folder: the weights file it holds (hashed and named in the header)
    dst = Path(dst)
    if dst.exists() and dst.resolve() == src_path.resolve():
        raise CheckpointError(f"{dst}: source and destination are the same file; the input is never overwritten")
    try:
        check_output_path(dst, force, option="--force (force=True)")
    except OutputPathError as e:  # convert's documented error stays CheckpointError
        raise CheckpointError(str(e)) from None
    suffix = dst.suffix.lower()
    if suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise CheckpointError(f"{dst}: unknown output format {suffix!r}; use .safetensors, .ckpt or .pth")
    sd, extras, meta = read_checkpoint(src_path)
    where = str(src_path)
    if meta.get("format") == "sslhub":
        extras = json.loads(meta.get("extras", "{}"))
        order = json.loads(meta.get("key_order", "[]"))
        if sorted(order) == sorted(sd):
            sd = {k: sd[k] for k in order}
    kept = _jsonable_extras(extras, where)
    if suffix == ".safetensors":
        if meta.get("format") == "sslhub" and arch is None and prefix is None:
            header = dict(meta)  # already ours: keep the header as it is
        else:
            header = sslhub_metadata(
                sd, where, extras=kept, arch=arch, prefix=prefix, source_sha256=sha256_file(src_path)
            )
            header["source_name"] = src_path.name
            # safetensors stores keys sorted; remember the original order so the way back restores it
            header["key_order"] = json.dumps(list(sd))
        save_safetensors(sd, dst, header)
    elif suffix == ".ckpt":
        save_torch({"state_dict": {k: v.contiguous() for k, v in _worker_keys(sd, meta, where).items()}, **kept}, dst)
    else:
        save_torch({k: v.contiguous() for k, v in sd.items()}, dst)
    logger.debug("wrote %s (%d tensors)", dst, len(sd))
    return dst


def __getattr__(name: str) -> Any:
    # ``sslhub.checkpoints.convert.convert`` (the old documented path) resolves sources, which is the layer above
    # this one: looked up on first use, never imported by this module.
    if name == "convert":
        return importlib.import_module("sslhub.loading").convert
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
