"""Image inputs at dataset scale: folders, file lists / CSV manifests, WebDataset tar shards, synthetic images.

Every source is a map-style dataset with a fixed, deterministic order, so that a run can be split by index
(ranks of ``torchrun``, fixed-size output shards) and resumed. Items are ``(image, label, name)`` with ``image``
an RGB ``uint8`` tensor decoded straight to ``decode_size`` (shorter side resized, center crop), or ``None`` for
an image that cannot be read (skipped and counted, as :class:`~sslhub.data.ImageFolderDataset` does).

The index is kept compact (names in one bytes blob plus an offset array, labels in an ``int64`` array): about
``len(name) + 16`` bytes per image instead of ~200 for a list of ``Path`` objects, and it forks into DataLoader
workers without copy-on-write of millions of Python objects.

WebDataset tars are indexed with the standard library's ``tarfile`` (headers only) and read by offset: the
``webdataset`` package's readers are iterable-only, which would make every rank read every tar to find its share;
random access lets each rank read only its own samples. Samples are grouped by key as ``webdataset`` groups them
(the name up to the first dot of the file name), the image is the first member with an image extension, the label
the ``.cls`` member (an integer) when present.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import logging
import os
import re
import tarfile
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sslhub.data.decode import UnreadableImageError, decode_image_uint8
from sslhub.data.folder import IMG_EXTENSIONS, DatasetError

logger = logging.getLogger(__name__)

__all__ = [
    "FileListSource",
    "FolderSource",
    "ImageSource",
    "NameTable",
    "SyntheticSource",
    "TarSource",
    "open_source",
    "redact_url",
]

LIST_SUFFIXES = (".txt", ".lst", ".csv", ".tsv")
_NAME_COLUMNS = ("filename", "filenames", "path", "file", "url", "image")
_LABEL_COLUMNS = ("label", "labels", "class", "target")


class NameTable:
    """An immutable list of strings stored as one UTF-8 blob plus offsets (compact, fork-friendly)."""

    def __init__(self, names: Iterable[str]) -> None:
        blob, ends = bytearray(), array("q", [0])
        for n in names:  # built incrementally: no list of millions of str objects on the way
            blob += n.encode("utf-8")
            ends.append(len(blob))
        self._blob = bytes(blob)
        self._offsets = np.frombuffer(ends, dtype=np.int64).copy()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        if i < 0:
            i += len(self)
        return self._blob[self._offsets[i] : self._offsets[i + 1]].decode("utf-8")

    def slice(self, start: int, stop: int) -> list[str]:
        return [self[i] for i in range(start, min(stop, len(self)))]

    def digest(self) -> str:
        """sha256 of the names in order (a fingerprint of the input)."""
        h = hashlib.sha256(self._offsets.tobytes())
        h.update(self._blob)
        return h.hexdigest()


def redact_url(text: str) -> str:
    """``text`` with the query string and user info of every URL removed (signed URLs carry tokens there)."""
    text = re.sub(r"(https?://)[^/@\s]*@", r"\1", text)
    return re.sub(r"(https?://[^\s?#]*)[?#][^\s]*", r"\1?<redacted>", text)


class ImageSource(Dataset):
    """Base class: ``names`` and ``labels`` in a fixed order; subclasses implement :meth:`read_bytes`."""

    names: NameTable
    labels: np.ndarray
    classes: list[str]
    description: str

    def __init__(self) -> None:
        self.decode_size: int | None = None
        self.transform: Callable[[Any], Any] | None = None
        self._warned = False

    def __len__(self) -> int:
        return len(self.names)

    def read_bytes(self, index: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> torch.Tensor:
        """The decoded image (``uint8`` ``(3, H, W)``); raises :class:`UnreadableImageError`."""
        name = self.names[index]
        try:
            data = self.read_bytes(index)
        except (OSError, ValueError, KeyError, tarfile.TarError) as e:
            why = redact_url(str(e)) or type(e).__name__
            raise UnreadableImageError(f"{redact_url(name)}: cannot read ({why})") from None
        return decode_image_uint8(data, self.decode_size, name=redact_url(name))

    def __getitem__(self, index: int) -> tuple[Any, int, str] | None:
        try:
            image = self.load(index)
        except UnreadableImageError as e:
            if not self._warned:  # once per process; the run reports the total count
                self._warned = True
                logger.warning("skipping unreadable image(s), first: %s", e)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index]), self.public_name(index)

    def public_name(self, index: int) -> str:
        """The name written to outputs: a URL loses its query string and user info (where tokens live)."""
        name = self.names[index]
        return redact_url(name).replace("?<redacted>", "") if _is_url(name) else name

    def with_decoding(self, decode_size: int, transform: Callable[[Any], Any] | None = None) -> ImageSource:
        """A shallow copy that decodes to ``decode_size`` and then applies ``transform``."""
        import copy

        new = copy.copy(self)
        new.decode_size, new.transform, new._warned = decode_size, transform, False
        return new

    def fingerprint(self) -> str:
        """sha256 over the names and labels, in order: what a resumed run must find again."""
        h = hashlib.sha256(self.names.digest().encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return h.hexdigest()


class FolderSource(ImageSource):
    """An image folder, searched recursively; class subfolders give labels (as :class:`ImageFolderDataset`).

    Files are not opened while indexing (no ``verify``), so that every rank of a large run indexes quickly;
    unreadable images are skipped when loaded.
    """

    def __init__(self, root: str | os.PathLike, *, classes: Sequence[str] | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"image folder {self.root} does not exist or is not a folder")
        labels = array("q")
        self.names = NameTable(self._walk(classes, labels))
        self.labels = np.frombuffer(labels, dtype=np.int64).copy()
        if not len(self.names):
            raise DatasetError(f"no images found in {self.root} (looked for {', '.join(IMG_EXTENSIONS)} files)")
        self.description = f"folder {self.root}"

    def _walk(self, classes: Sequence[str] | None, labels: array) -> Iterator[str]:
        """Relative names in :class:`ImageFolderDataset`'s order (images in the root first, then class folders
        sorted, each walked top-down with sorted names), without holding a ``Path`` per image."""
        top = sorted(os.listdir(self.root))
        for f in top:
            if _is_image_name(f) and (self.root / f).is_file():
                labels.append(-1)
                yield f
        self.classes = list(classes) if classes is not None else []
        for d in top:
            if d.startswith(".") or not (self.root / d).is_dir():
                continue
            found, label = False, -1
            for dirpath, dirnames, filenames in os.walk(self.root / d, followlinks=True):
                dirnames[:] = sorted(x for x in dirnames if not x.startswith("."))
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for f in sorted(filenames):
                    if not _is_image_name(f):
                        continue
                    if not found:
                        found = True
                        if classes is None:
                            self.classes.append(d)
                        elif d not in self.classes:
                            raise DatasetError(
                                f"{self.root} has a class folder {d!r} that is not among the expected classes "
                                f"{self.classes} (the training folder's); use folders with the same class names"
                            )
                        label = self.classes.index(d)
                    labels.append(label)
                    yield f"{rel}/{f}"

    def read_bytes(self, index: int) -> bytes:
        return (self.root / self.names[index]).read_bytes()


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


class FileListSource(ImageSource):
    """A text file with one image per line, or a CSV/TSV manifest with a header.

    A manifest's image column is the first of ``filename, filenames, path, file, url, image``; its label column
    (optional) the first of ``label, labels, class, target``: integers are used as they are, names are mapped
    to indices in sorted order. Relative paths are relative to the list's folder. ``http(s)://`` entries are
    downloaded with ``requests`` (already a dependency; timeouts, three tries with backoff); URLs appear in logs
    and errors without their query string, which is where signed URLs keep their token.
    """

    def __init__(self, path: str | os.PathLike, *, classes: Sequence[str] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.base = self.path.parent
        names, raw_labels = self._read(self.path)
        if not names:
            raise DatasetError(f"the file list {self.path} names no images")
        self.classes, self.labels = _label_indices(raw_labels, classes, self.path, len(names))
        self.names = NameTable(names)
        self.description = f"file list {self.path}"
        self._session: Any = None

    @staticmethod
    def _read(path: Path) -> tuple[list[str], list[str] | None]:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise DatasetError(f"{path} is not a UTF-8 text file; pass a file list or a CSV manifest") from None
        if path.suffix.lower() not in (".csv", ".tsv"):
            return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")], None
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        if not rows:
            return [], None
        header = [h.strip().lower() for h in rows[0]]
        name_col = next((header.index(c) for c in _NAME_COLUMNS if c in header), None)
        if name_col is None:
            raise DatasetError(
                f"{path} has no image column: name one of its header columns {', '.join(_NAME_COLUMNS)}"
            )
        label_col = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
        body = [r for r in rows[1:] if r and any(x.strip() for x in r)]
        bad = next((i for i, r in enumerate(body) if len(r) <= max(name_col, label_col or 0)), None)
        if bad is not None:
            raise DatasetError(f"{path}, line {bad + 2}: too few columns for the header {rows[0]}")
        names = [r[name_col].strip() for r in body]
        labels = [r[label_col].strip() for r in body] if label_col is not None else None
        return names, labels

    def read_bytes(self, index: int) -> bytes:
        name = self.names[index]
        if _is_url(name):
            return self._fetch(name)
        p = Path(name)
        return (p if p.is_absolute() else self.base / p).read_bytes()

    def _fetch(self, url: str, tries: int = 3) -> bytes:
        import requests

        if self._session is None:
            self._session = requests.Session()
        for attempt in range(tries):
            try:
                r = self._session.get(url, timeout=(10, 60))
                if r.status_code == 200:
                    return r.content
                if r.status_code < 500 and r.status_code != 429:
                    raise OSError(f"HTTP {r.status_code}")
                err: Exception = OSError(f"HTTP {r.status_code}")
            except requests.RequestException as e:
                err = OSError(type(e).__name__)
            if attempt + 1 < tries:
                time.sleep(0.5 * 2**attempt)
        raise err

    def __getstate__(self) -> dict[str, Any]:  # a requests.Session must not travel to DataLoader workers
        state = dict(self.__dict__)
        state["_session"] = None
        return state


def _label_indices(
    raw: list[str] | None, classes: Sequence[str] | None, where: Path, n: int
) -> tuple[list[str], np.ndarray]:
    if raw is None:
        return list(classes or []), np.full(n, -1, dtype=np.int64)
    if classes is None and all(re.fullmatch(r"-?\d+", x) for x in raw):
        return [], np.asarray([int(x) for x in raw], dtype=np.int64)
    names = list(classes) if classes is not None else sorted(set(raw))
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted(set(raw) - set(index))
    if unknown:
        raise DatasetError(f"{where} has labels {unknown[:5]} that are not among the classes {names[:10]}")
    return names, np.asarray([index[x] for x in raw], dtype=np.int64)


def _expand_tars(spec: str) -> list[Path]:
    if "{" in spec:
        try:
            from braceexpand import braceexpand
        except ImportError:
            raise DatasetError(
                f"{spec}: brace patterns need the braceexpand package (pip install 'sslhub[webdataset]'), or pass "
                "a glob such as 'shards/*.tar'"
            ) from None
        paths = [Path(p) for p in braceexpand(spec)]
    elif any(c in spec for c in "*?["):
        paths = [Path(p) for p in sorted(glob.glob(spec))]
    else:
        paths = [Path(spec)]
    if not paths:
        raise DatasetError(f"no tar shards match {spec}")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"tar shard {missing[0]} does not exist ({len(missing)} of {len(paths)} missing)")
    return paths


def _wds_key(member: str) -> tuple[str, str] | None:
    """``(key, extension)`` as webdataset's ``base_plus_ext`` splits a member name."""
    m = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", member)
    return (m.group(1), m.group(2)) if m else None


class TarSource(ImageSource):
    """WebDataset tar shards (uncompressed ``.tar``), indexed once, read by offset.

    Args:
        spec: one tar, a glob (``'shards/*.tar'``) or a brace pattern (``'shards/train-{000..099}.tar'``).
    """

    def __init__(self, spec: str | os.PathLike, *, classes: Sequence[str] | None = None) -> None:
        super().__init__()
        self.tars = _expand_tars(os.fspath(spec))
        names: list[str] = []
        where: list[tuple[int, int, int]] = []
        labels: list[int] = []
        for t, path in enumerate(self.tars):
            try:
                tf = tarfile.open(path, mode="r:")  # plain tar only: compressed streams have no random access
            except tarfile.ReadError as e:
                raise DatasetError(
                    f"{path} is not an uncompressed tar ({e}); decompress it first (gunzip) for random access"
                ) from None
            with tf:
                key, image, label = None, None, -1

                def flush() -> None:
                    if key is not None and image is not None:
                        names.append(f"{path.name}/{key}")
                        where.append((t, *image))
                        labels.append(label)

                for m in tf:
                    if not m.isfile():
                        continue
                    split = _wds_key(m.name)
                    if split is None:
                        continue
                    k, ext = split
                    if k != key:
                        flush()
                        key, image, label = k, None, -1
                    ext = ext.lower()
                    if image is None and ("." + ext.rsplit(".", 1)[-1]) in IMG_EXTENSIONS:
                        image = (m.offset_data, m.size)
                    elif ext == "cls":
                        raw = tf.extractfile(m).read().decode().strip()  # type: ignore[union-attr]
                        label = int(raw) if re.fullmatch(r"-?\d+", raw) else -1
                flush()
        if not names:
            raise DatasetError(f"no images found in the tar shards {spec}")
        self.names = NameTable(names)
        self._where = np.asarray(where, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes or [])
        self.description = f"tar shards {spec}"

    def read_bytes(self, index: int) -> bytes:
        t, offset, size = (int(x) for x in self._where[index])
        with open(self.tars[t], "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise OSError(f"{self.tars[t]} is truncated")
        return data


class SyntheticSource(ImageSource):
    """``n`` generated images (deterministic in the index), for benchmarks and memory tests: no files at all.

    Image ``i`` is smooth noise seeded by ``i``, encoded nowhere; ``decode_size`` resizes it like a decoded file.
    """

    def __init__(self, n: int, *, size: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.n, self.size = int(n), int(size)
        self.names = _RangeNames(self.n)  # type: ignore[assignment]
        self.labels = np.arange(self.n, dtype=np.int64) % num_classes
        self.classes = [str(c) for c in range(num_classes)]
        self.description = f"{self.n} synthetic {size}x{size} images"

    def load(self, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(index)
        img = torch.randint(0, 256, (3, self.size, self.size), generator=g, dtype=torch.uint8)
        if self.decode_size is not None and self.decode_size != self.size:
            from torchvision.transforms.v2.functional import center_crop, resize

            img = center_crop(resize(img, [self.decode_size], antialias=True), [self.decode_size])
        return img


class _RangeNames:
    """Names ``"000000012.png"`` computed from the index (a synthetic source holds no table)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> str:
        return f"{i:09d}.png"

    def slice(self, start: int, stop: int) -> list[str]:
        return [self[i] for i in range(start, min(stop, self.n))]

    def digest(self) -> str:
        return hashlib.sha256(f"synthetic:{self.n}".encode()).hexdigest()


def open_source(spec: str | os.PathLike | ImageSource, *, classes: Sequence[str] | None = None) -> ImageSource:
    """The :class:`ImageSource` for ``spec``: a folder, a file list (``.txt``/``.lst``), a CSV/TSV manifest, or
    WebDataset tar shards (a ``.tar`` file, glob or brace pattern).

    Raises:
        DatasetError: ``spec`` is none of these, or names no image.
    """
    if isinstance(spec, ImageSource):
        return spec
    s = os.fspath(spec)
    p = Path(s)
    if p.is_dir():
        return FolderSource(p, classes=classes)
    if s.lower().endswith(".tar") or (".tar" in s.lower() and any(c in s for c in "*?[{")):
        return TarSource(s, classes=classes)
    if p.suffix.lower() in LIST_SUFFIXES:
        if not p.is_file():
            raise DatasetError(f"file list {p} does not exist")
        return FileListSource(p, classes=classes)
    if not p.exists():
        raise DatasetError(f"image folder {p} does not exist")
    raise DatasetError(
        f"cannot tell what {p} holds: pass an image folder, a file list (.txt, .lst), a CSV/TSV manifest "
        "(.csv, .tsv) or WebDataset tar shards (.tar, a glob or a {000..009} pattern)"
    )
