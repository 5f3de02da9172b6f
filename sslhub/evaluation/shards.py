"""The embedding shard folder: fixed-size safetensors shards plus ``manifest.json``, and its reader.

Why safetensors rather than Parquet: no new dependency (sslhub already reads and writes it), the vectors lie
uncompressed at a known offset so they can be memory-mapped without copying (a Parquet vector column is a
list column that readers materialise), and any safetensors reader (``safetensors.numpy.load_file``, the Rust,
JS and C++ readers) opens a shard. Each shard holds

* ``embeddings``: ``(rows, D)`` float32 (or float16 with ``dtype="float16"``),
* ``labels``: ``(rows,)`` int64 (``-1`` where unlabelled),
* metadata ``filenames``: the JSON list of the rows' image names (the only metadata key: safetensors writes its
  metadata map in hash order, and a shard must be byte-for-byte reproducible). Unreadable images are left out, so
  a shard may have fewer rows than input items; the manifest says which items (``first_item``, ``items``).

``manifest.json`` records the run's settings (the input's fingerprint included), and once the run is complete
``"complete": true`` and, per shard, its file name, rows, skipped images and sha256. Shard ``i`` always holds
input items ``[i * shard_size, (i + 1) * shard_size)``, whatever the number of processes, which is why a
distributed run writes the same files as a single process and a resumed run the same files as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sslhub.errors import SslhubError

__all__ = [
    "MANIFEST",
    "Embeddings",
    "EmbeddingsError",
    "ShardedArray",
    "export_embeddings",
    "is_shard_dir",
    "load_embeddings",
    "read_manifest",
    "shard_name",
]

MANIFEST = "manifest.json"
FORMAT = "sslhub-embedding-shards"
PROGRESS_DIR = ".progress"
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "BF16": None}


class EmbeddingsError(SslhubError, ValueError):
    """An embedding folder that cannot be read or written as asked. Names the folder and what to do."""


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard-{index:06d}.safetensors"


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's manifest, or ``None`` when it has none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmbeddingsError(f"{path} is not valid JSON ({e}); remove the folder or pass --force") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EmbeddingsError(f"{path} is not an sslhub embedding manifest")
    return manifest


def is_shard_dir(path: str | os.PathLike) -> bool:
    """True for a folder with an embedding manifest."""
    return (Path(path) / MANIFEST).is_file()


def _header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header of ``path`` and where its data starts (the file format, read directly)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise EmbeddingsError(f"{path} is truncated; re-run the embedding to rewrite it")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise EmbeddingsError(f"{path} is not a safetensors shard")
        raw = f.read(n)
    try:
        return json.loads(raw), 8 + n
    except json.JSONDecodeError:
        raise EmbeddingsError(f"{path} is not a safetensors shard (bad header)") from None


def _mapped(path: Path, header: dict[str, Any], start: int, key: str) -> np.ndarray:
    info = header.get(key)
    if not isinstance(info, dict):
        raise EmbeddingsError(f"{path} has no tensor {key!r}; it is not an sslhub embedding shard")
    dtype = _DTYPES.get(info["dtype"])
    if dtype is None:
        raise EmbeddingsError(f"{path}: tensor {key!r} has dtype {info['dtype']}, expected F32, F16 or I64")
    shape = tuple(int(s) for s in info["shape"])
    a, b = (int(x) for x in info["data_offsets"])
    if int(np.prod(shape)) * np.dtype(dtype).itemsize != b - a:
        raise EmbeddingsError(f"{path}: tensor {key!r} has a size that does not match its shape")
    if b == a:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=start + a, shape=shape)


class ShardedArray:
    """A read-only ``(N, D)`` array made of memory-mapped shards; indexing reads only the rows asked for.

    Supports ``len``, ``shape``, ``dtype``, integer and slice indexing (``a[i]``, ``a[i:j]``), ``np.asarray(a)``
    (which copies everything into memory) and :meth:`chunks` for bounded-memory passes.
    """

    def __init__(self, parts: list[np.ndarray], dim: int, dtype: np.dtype) -> None:
        self.parts = [p for p in parts if len(p)]
        self.dtype = np.dtype(dtype)
        self._starts = np.cumsum([0, *(len(p) for p in self.parts)])
        self.shape = (int(self._starts[-1]), int(dim))

    def __len__(self) -> int:
        return self.shape[0]

    def _locate(self, i: int) -> tuple[int, int]:
        s = int(np.searchsorted(self._starts, i, side="right")) - 1
        return s, i - int(self._starts[s])

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {index} out of range for {len(self)} embeddings")
            s, r = self._locate(i)
            return np.asarray(self.parts[s][r])
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return np.asarray(self[start:stop])[::step]
            return self._rows(start, stop)
        raise TypeError("index embeddings with an int or a slice (use .chunks() to stream them)")

    def _rows(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.zeros((0, self.shape[1]), dtype=self.dtype)
        out = []
        s, r = self._locate(start)
        remaining = stop - start
        while remaining > 0:
            take = min(remaining, len(self.parts[s]) - r)
            out.append(np.asarray(self.parts[s][r : r + take]))
            remaining -= take
            s, r = s + 1, 0
        return out[0] if len(out) == 1 else np.concatenate(out)

    def chunks(self, rows: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_row, block)`` pairs of at most ``rows`` rows, in order."""
        for start in range(0, len(self), rows):
            yield start, self._rows(start, min(start + rows, len(self)))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self._rows(0, len(self))
        return whole.astype(dtype) if dtype is not None else whole


class Embeddings:
    """Embeddings read from a shard folder: ``vectors`` memory-mapped, ``labels`` and ``filenames`` in order."""

    def __init__(self, folder: Path, manifest: dict[str, Any], vectors: ShardedArray, labels: np.ndarray,
                 filename_parts: list[list[str]]) -> None:  # fmt: skip
        self.folder = folder
        self.manifest = manifest
        self.vectors = vectors
        self.labels = labels
        self._filename_parts = filename_parts

    @property
    def filenames(self) -> list[str]:
        """The image name of every row, in order."""
        return [n for part in self._filename_parts for n in part]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.vectors)

    def __repr__(self) -> str:
        return f"Embeddings({str(self.folder)!r}, rows={len(self)}, dim={self.dim}, dtype={self.vectors.dtype})"


def load_embeddings(folder: str | os.PathLike, *, verify: bool = False) -> Embeddings:
    """Open an embedding shard folder written by ``sslhub embed MODEL DATA --out DIR/``.

    The vectors are memory-mapped (nothing is read until used); labels and file names are read from the shards'
    small tensors and headers.

    Args:
        folder: the shard folder.
        verify: check every shard's sha256 against the manifest first (reads every byte).

    Raises:
        EmbeddingsError: no manifest, an unfinished run, a missing, changed or unreadable shard.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise EmbeddingsError(f"{folder} has no {MANIFEST}; pass a folder written by `sslhub embed ... --out DIR/`")
    if not manifest.get("complete"):
        raise EmbeddingsError(
            f"{folder} holds an unfinished embedding run; run the same `sslhub embed` command again to finish it"
        )
    from sslhub._files import sha256_file

    parts, labels, names = [], [], []
    dim = int(manifest["dim"])
    dtype = np.dtype(manifest["dtype"])
    for entry in manifest["shards"]:
        path = folder / entry["file"]
        if not path.is_file():
            raise EmbeddingsError(f"{path} is missing; re-run the embedding command to rewrite it")
        if verify and sha256_file(path) != entry["sha256"]:
            raise EmbeddingsError(f"{path} does not match its checksum in {folder / MANIFEST}; it was changed")
        header, start = _header(path)
        vec = _mapped(path, header, start, "embeddings")
        if len(vec) != int(entry["rows"]):
            raise EmbeddingsError(f"{path} has {len(vec)} rows, the manifest says {entry['rows']}")
        if len(vec) and vec.shape[1] != dim:
            raise EmbeddingsError(f"{path} has dimension {vec.shape[1]}, the manifest says {dim}")
        parts.append(vec)
        labels.append(np.asarray(_mapped(path, header, start, "labels")))
        names.append(json.loads(header.get("__metadata__", {}).get("filenames", "[]")))
    vectors = ShardedArray(parts, dim, dtype)
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return Embeddings(folder, manifest, vectors, all_labels, names)


def export_embeddings(folder: str | os.PathLike, out: str | os.PathLike, *, chunk_rows: int = 65536) -> Path:
    """Write a shard folder as one file: Lightly's CSV (streamed, any size), ``.safetensors`` or ``.npy``.

    The CSV is written row block by row block, so memory stays bounded; ``.safetensors`` and ``.npy`` hold the
    whole array in memory once.
    """
    import csv

    from sslhub._files import atomic_path

    emb = load_embeddings(folder)
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        header = ["filenames", *(f"embedding_{i}" for i in range(emb.dim)), "labels"]
        with atomic_path(out) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f, delimiter=",")
                writer.writerow(header)
                row = 0
                for part in emb._filename_parts:
                    if not part:
                        continue
                    block = emb.vectors[row : row + len(part)].astype(np.float32)
                    for name, vec, label in zip(part, block, emb.labels[row : row + len(part)], strict=True):
                        writer.writerow([name, *list(vec), str(int(label))])
                    row += len(part)
        return out
    import torch

    from sslhub.evaluation.embeddings import EMBEDDING_SUFFIXES, save_embeddings
    from sslhub.evaluation.features import Features

    if suffix not in EMBEDDING_SUFFIXES:
        raise EmbeddingsError(f"cannot tell the format of {out}: use a name ending in {', '.join(EMBEDDING_SUFFIXES)}")
    feats = Features(torch.from_numpy(np.asarray(emb.vectors, dtype=np.float32)),
                     torch.from_numpy(emb.labels.astype(np.int64)), emb.filenames)  # fmt: skip
    return save_embeddings(feats, out, metadata={"source": str(folder)})
