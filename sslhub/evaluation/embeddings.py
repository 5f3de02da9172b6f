"""Embeddings of an image folder, written as Lightly CSV, safetensors or npy (chosen by the file suffix)."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sslhub.checkpoints.io import atomic_path, save_safetensors
from sslhub.data import ImageFolderDataset
from sslhub.evaluation.finite import check_finite
from sslhub.evaluation.features import Features, extract_features

logger = logging.getLogger(__name__)

__all__ = ["EMBEDDING_SUFFIXES", "embed", "save_embeddings", "write_lightly_csv"]

EMBEDDING_SUFFIXES = (".csv", ".safetensors", ".npy")


def write_lightly_csv(
    path: str | os.PathLike, embeddings: np.ndarray, labels: Sequence[int], filenames: Sequence[str]
) -> None:
    """Atomically write embeddings exactly as ``lightly.utils.io.save_embeddings`` does.

    Header ``filenames,embedding_0,...,embedding_{D-1},labels``, one row per image, values written with
    ``str()`` of the array elements (so float32 arrays give the same text as Lightly's ``embed``), read back by
    ``lightly.utils.io.load_embeddings`` and accepted by the Lightly Platform.
    """
    if not (len(embeddings) == len(labels) == len(filenames)):
        raise ValueError(
            f"embeddings, labels and filenames differ in length: ({len(embeddings)}, {len(labels)}, {len(filenames)})"
        )
    header = ["filenames", *(f"embedding_{i}" for i in range(embeddings.shape[-1])), "labels"]
    with atomic_path(path) as tmp:
        # surrogateescape: a file name that is not UTF-8 (os.fsdecode keeps its bytes as surrogates) is written back
        # as the same bytes, losslessly, instead of failing after all the work
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            writer = csv.writer(f, delimiter=",")
            writer.writerow(header)
            for filename, embedding, label in zip(filenames, embeddings, labels, strict=True):
                writer.writerow([filename, *list(embedding), str(label)])


def save_embeddings(features: Features, out: str | os.PathLike, *, metadata: Mapping[str, Any] | None = None,
                    allow_non_finite: bool = False) -> Path:
    """Write :class:`~sslhub.evaluation.Features` to ``out``, format by suffix, atomically.

    * ``.csv``: Lightly's embedding CSV (:func:`write_lightly_csv`).
    * ``.safetensors``: tensors ``embeddings`` ``(N, D)`` float32 and ``labels`` ``(N,)`` int64; metadata
      ``filenames`` (JSON list) plus ``metadata``.
    * ``.npy``: the ``(N, D)`` float32 array only, rows in the order of ``ImageFolderDataset(dir).filenames``.

    Raises:
        ValueError: any other suffix.
        NonFiniteError: embeddings that are NaN/Inf (unless ``allow_non_finite``): nothing is written.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    emb = features.features.detach().to(torch.float32).cpu()
    check_finite(emb, f"the embeddings for {out}", allow=allow_non_finite)
    if suffix == ".csv":
        write_lightly_csv(out, emb.numpy(), features.labels.tolist(), features.filenames)
    elif suffix == ".safetensors":
        meta = {"format": "sslhub-embeddings", "filenames": json.dumps(features.filenames), **(metadata or {})}
        save_safetensors({"embeddings": emb, "labels": features.labels.to(torch.int64)}, out, meta)
    elif suffix == ".npy":
        with atomic_path(out) as tmp:
            # A file object, because np.save(path) appends ".npy" to the temporary name.
            with open(tmp, "wb") as f:
                np.save(f, emb.numpy())
        logger.info("%s holds embeddings only; rows follow the sorted file names of the folder", out)
    else:
        raise ValueError(
            f"cannot tell the embedding format of {out}: use a file name ending in {', '.join(EMBEDDING_SUFFIXES)}"
        )
    return out


def embed(
    model: nn.Module,
    data_dir: str | os.PathLike | ImageFolderDataset,
    out: str | os.PathLike | None = None,
    *,
    input_size: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    crop_pct: float | None = None,
    num_workers: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    allow_non_finite: bool = False,
) -> Features:
    """Embed every image of ``data_dir`` with ``model`` and (if ``out`` is given) save them by suffix.

    ``data_dir`` may also be a file list, CSV manifest or WebDataset tars (see
    :func:`sslhub.data.sources.open_source`). Everything is held in memory: for large sets use
    :func:`~sslhub.evaluation.embed_to_shards`.

    Embeddings are the model's raw (unnormalized) outputs, as ``lightly-embed`` writes them; labels are class
    indices for class subfolders, else -1. Preprocessing as :func:`~sslhub.evaluation.extract_features`.
    The output suffix is checked before any image is processed; embeddings that are not finite are not written
    unless ``allow_non_finite``.
    """
    if out is not None and Path(out).suffix.lower() not in EMBEDDING_SUFFIXES:
        raise ValueError(
            f"cannot tell the embedding format of {out}: use a file name ending in {', '.join(EMBEDDING_SUFFIXES)}"
        )
    data: Any = data_dir
    if not (isinstance(data_dir, ImageFolderDataset) or Path(data_dir).is_dir()):
        # a file list, CSV manifest or WebDataset tars: decoded to the model's crops as a folder would be
        from sslhub.evaluation.features import model_input_size
        from sslhub.evaluation.streaming import prepare_source

        data = prepare_source(data_dir, model, model_input_size(model, input_size), crop_pct)
    feats = extract_features(
        model,
        data,
        input_size=input_size,
        batch_size=batch_size,
        device=device,
        crop_pct=crop_pct,
        num_workers=num_workers,
        desc="embed",
    )
    if out is not None:
        save_embeddings(feats, out, metadata=metadata, allow_non_finite=allow_non_finite)
        logger.debug("wrote %d embeddings of dimension %d to %s", len(feats), feats.features.shape[1], out)
    return feats
