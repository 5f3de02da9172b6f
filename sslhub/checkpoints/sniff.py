"""Tell files apart by their first bytes, to say what a file that is not a readable checkpoint really is.

Used on the error paths of :mod:`sslhub.checkpoints.io` (a file that failed to load gets a message for what it
is: an HTML error page, a Git LFS pointer, an S3/GCS XML error, text, a truncated archive, ...) and by the
downloader (an HTML page is never cached as weights; a file whose length the server did not send is checked for
completeness where its format allows). Torch-free.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

__all__ = ["describe", "is_complete", "safetensors_problem", "sniff"]

_HEAD = 4096
# torch.save's legacy (non-zip) format starts with a pickled magic number (protocol 2, LONG1 of 10 bytes)
_LEGACY_TORCH = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def _head(path: Path, n: int = _HEAD) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def sniff(path: str | os.PathLike) -> str:
    """The kind of file, from its first bytes.

    One of ``empty``, ``safetensors`` (u64 length + JSON), ``zip`` (torch.save's format), ``torch-legacy``,
    ``pickle``, ``numpy``, ``gzip``, ``html``, ``lfs-pointer``, ``xml``, ``json``, ``text`` or ``unknown``.
    """
    head = _head(Path(path))
    if not head:
        return "empty"
    if len(head) >= 10 and head[8:9] == b"{" and head[9:10] in (b'"', b"}"):
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(_LEGACY_TORCH):
        return "torch-legacy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a multi-byte character cut at the end of the sample
            return "unknown"
        text = head[: e.start].decode("utf-8")
    if "\x00" in text:
        return "unknown"
    low = text.lstrip("\ufeff \t\r\n").lower()
    if low.startswith("version https://git-lfs"):
        return "lfs-pointer"
    if low.startswith(("<!doctype html", "<html")) or ("<html" in low[:512] and "<body" in low):
        return "html"
    if low.startswith("<?xml") or low.startswith("<error>"):
        return "xml"
    if low.startswith(("{", "[")):
        return "json"
    return "text"


def _first_line(path: Path) -> str:
    line = _head(path, 200).decode("utf-8", "replace").strip().splitlines()
    return (line[0][:80] if line else "").strip()


def describe(path: str | os.PathLike) -> str | None:
    """A message for a file that is not a checkpoint at all (``None`` for the checkpoint formats themselves)."""
    path = Path(path)
    kind = sniff(path)
    if kind == "empty":
        return f"{path} is empty (0 bytes); the download or copy did not finish: fetch or copy it again"
    if kind == "lfs-pointer":
        return (f"{path} is a Git LFS pointer, not the weights (a clone without git-lfs): run `git lfs pull` in its "
                "repository, or download the file itself")
    if kind == "html":
        return (f"{path} is an HTML page, not a checkpoint (a login, error or download page saved in place of the "
                "weights): download the file itself, e.g. with its direct link and `sslhub fetch URL`")
    if kind == "xml":
        text = _head(path).decode("utf-8", "replace")
        code = re.search(r"<Code>([^<]{1,100})</Code>", text)
        msg = re.search(r"<Message>([^<]{1,300})</Message>", text)
        detail = f" ({code.group(1)}" + (f": {msg.group(1)}" if msg else "") + ")" if code else ""
        return (f"{path} is an XML document{detail}, not a checkpoint: most likely a storage server's error (an "
                "expired presigned link, a missing object) saved in place of the weights. Download it again")
    if kind == "json":
        return f"{path} is a JSON file, not a checkpoint: pass the weights file (.safetensors, .ckpt, .pth)"
    if kind == "text":
        return (f"{path} is a text file, not a checkpoint (it starts with {_first_line(path)!r}): pass the weights "
                "file (.safetensors, .ckpt, .pth)")
    if kind == "numpy":
        return f"{path} is a NumPy array (.npy), not a checkpoint"
    if kind == "gzip":
        return f"{path} is gzip-compressed: unpack it (gunzip / tar -xzf) and pass the checkpoint inside"
    if kind == "zip" and not zipfile.is_zipfile(path):
        return (f"{path} is a truncated zip archive (torch.save's format without its end): the download or copy did "
                "not finish; fetch or copy it again")
    if kind == "safetensors":
        return safetensors_problem(path)
    return None


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with a file that starts like safetensors (header length, JSON, size), or ``None``."""
    path = Path(path)
    size = path.stat().st_size
    head = _head(path, 8)
    if len(head) < 8:
        return f"{path} is too short ({size} bytes) to be a safetensors file; it is truncated: fetch or copy it again"
    n = int.from_bytes(head, "little")
    if n > _MAX_HEADER:
        return (f"{path} declares a safetensors header of {n} bytes, more than any real one ({_MAX_HEADER}); the file "
                "is corrupt or not a safetensors file. Fetch or copy it again")
    if 8 + n > size:
        return (f"{path} declares a safetensors header of {n} bytes but has only {size} bytes: it is truncated. "
                "Fetch or copy it again")
    with open(path, "rb") as f:
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw)
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return f"{path}: the safetensors header is not valid JSON; the file is corrupt. Fetch or copy it again"
    expected = 8 + n + max(ends, default=0)
    if size < expected:
        return (f"{path} has {size} bytes but its safetensors header describes {expected}: it is truncated. "
                "Fetch or copy it again")
    if size > expected:
        return f"{path} has {size - expected} bytes after the tensors its header describes; the file is corrupt"
    return None


def is_complete(path: str | os.PathLike) -> bool | None:
    """Whether the file's own structure says it is whole: ``True``/``False`` for safetensors and zip (torch.save),
    ``None`` when its format cannot tell (used for downloads whose server sent no length)."""
    kind = sniff(path)
    if kind == "safetensors":
        return safetensors_problem(path) is None
    if kind == "zip":
        return zipfile.is_zipfile(path)
    return None
