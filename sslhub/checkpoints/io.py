"""Safe reading and atomic writing of checkpoint files.

* Torch files are read with ``torch.load(weights_only=True)`` only. The exceptions to "tensors and plain
  containers" are the few numpy scalar types that Lightly's LR schedulers leaked into published benchmark
  checkpoints (lightly < 1.5.25) and ``argparse.Namespace`` (DINO/MAE ``args``); they are allowed by name and
  nothing else is. A refusal says which key holds the tensors (:mod:`sslhub.checkpoints.pickle_scan`). The one
  exception is LightlyTrain's ``last.ckpt`` (:mod:`sslhub.checkpoints.inert_pickle`): its pickled models become
  inert placeholders, so its tensors are read and nothing the file names runs.
* Every write goes to a temporary file in the destination folder and is renamed into place, so a crash never
  leaves a half-written file and an existing file is only replaced when the new one is complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from sslhub._files import atomic_path, private_dir_for, sha256_file  # noqa: F401  (part of this module's API)
from sslhub.errors import SslhubError

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "atomic_path",
    "is_safetensors_file",
    "load_torch_file",
    "read_safetensors",
    "save_safetensors",
    "save_torch",
    "sha256_file",
]


class CheckpointError(SslhubError, ValueError):
    """A checkpoint that cannot be read or interpreted. The message names the file and what to do."""


def _numpy_safe_globals() -> list[Any]:
    """The numpy types Lightly's schedulers stored in benchmark checkpoints (``np.float64`` learning rates)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch
        return []
    # numpy 2 renamed numpy.core to numpy._core (1.26 has an empty numpy._core: ask the version, not the module)
    scalar = (np._core if int(np.__version__.split(".")[0]) >= 2 else np.core).multiarray.scalar
    # argparse.Namespace: DINO and MAE store their ``args`` as one (timm allows it the same way); plain data.
    allowed: list[Any] = [scalar, np.dtype, np.dtypes.Float64DType, argparse.Namespace]
    if scalar.__module__ != "numpy.core.multiarray":  # numpy 2: files pickled under numpy 1.x name the old module
        allowed.append(_numpy1_scalar(scalar))
    return allowed


def _numpy1_scalar(scalar: Any) -> Any:
    """numpy 2's ``scalar`` allowed under numpy 1.x's name ``numpy.core.multiarray.scalar``.

    torch >= 2.6 takes an ``(object, name)`` pair for this; torch 2.5 (the floor) matches an allowed object by its
    own ``__module__`` and ``__name__`` only, so there it is a forwarder that carries the old name.
    """
    from sslhub._requirements import release_tuple

    if release_tuple(torch.__version__) >= (2, 6):
        return (scalar, "numpy.core.multiarray.scalar")

    def forward(*args: Any) -> Any:
        return scalar(*args)

    forward.__module__, forward.__name__, forward.__qualname__ = "numpy.core.multiarray", "scalar", "scalar"
    return forward


def is_safetensors_file(path: str | os.PathLike) -> bool:
    """True if the file starts with a safetensors header (u64 length followed by a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n < (1 << 31)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a directory; pass the checkpoint file inside it (for example model.safetensors, "
            "checkpoint.ckpt or checkpoints/last.ckpt)"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); the download or copy did not finish")


def _raise_if_not_a_checkpoint(path: Path) -> None:
    """On a failed read: raise the message for what the file really is (HTML, LFS pointer, truncated...), if known."""
    from sslhub.checkpoints.sniff import describe, safetensors_problem, sniff

    try:
        kind = sniff(path)
        problem = describe(path)
        if problem is None and kind == "unknown":
            problem = safetensors_problem(path) if path.suffix == ".safetensors" else None
            problem = problem or (f"{path} is not a checkpoint: its first bytes match no known format (safetensors, "
                                  "torch.save zip or pickle); check that it is the weights file and is not corrupt")
    except OSError:
        problem = None
    if problem:
        raise CheckpointError(problem) from None


def load_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True, map_location='cpu')`` with clear errors.

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a torch file, or needs arbitrary pickled
            objects (which are never unpickled).
    """
    path = Path(path)
    _check_file(path)
    mmap = zipfile.is_zipfile(path)  # mmap works only for the zip format and avoids copying large files
    if not hasattr(torch.serialization, "safe_globals"):  # a version gap, not a bad file: say so
        from sslhub._requirements import require

        require("torch", "2.5", f"reading {path} safely (torch.serialization.safe_globals)")
    allowed = _numpy_safe_globals()  # outside the try: a problem here is not the file's
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        _raise_if_not_a_checkpoint(path)
        msg = str(e)
        if "Weights only load failed" in msg or "Unsupported global" in msg or "unsupported" in msg.lower():
            from sslhub.checkpoints.inert_pickle import is_lightly_train_checkpoint, load_inert
            from sslhub.checkpoints.pickle_scan import refusal_message  # names the key holding the tensors

            if is_lightly_train_checkpoint(path):  # LightlyTrain last.ckpt: tensors read, its pickled models never run
                try:
                    return load_inert(path, mmap=mmap)
                except Exception as e2:
                    raise CheckpointError(f"{path}: a LightlyTrain checkpoint whose tensors could not be read ({e2})") from None

            detail = next((line.strip() for line in msg.splitlines() if "GLOBAL" in line or "global" in line), "")
            raise CheckpointError(refusal_message(path, detail)) from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({msg.splitlines()[0]})") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied; check the permissions of the file") from None
    except Exception as e:  # torch.load raises many types (IndexError, EOFError, RuntimeError...) for bad bytes
        _raise_if_not_a_checkpoint(path)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint: it may be truncated or of another format ({first}). "
            "Download it again, or check that it is a .ckpt/.pth/.safetensors file."
        ) from None


def read_safetensors(
    path: str | os.PathLike, *, backbone_only: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read the tensors and the metadata of a safetensors file.

    With ``backbone_only``, an sslhub file that names its ``backbone_prefix`` has only those tensors read (heads
    and momentum copies are never touched); other files are read whole.
    """
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            prefix = meta.get("backbone_prefix") if backbone_only and meta.get("format") == "sslhub" else None
            keys = [k for k in f.keys() if not prefix or k.startswith(prefix)]
            tensors = {k: f.get_tensor(k) for k in keys}
    except CheckpointError:
        raise
    except Exception as e:
        _raise_if_not_a_checkpoint(path)
        raise CheckpointError(f"{path} is not a valid safetensors file ({e}); it may be truncated") from None
    return tensors, meta


def _untie(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (Lightly's iBOT heads alias each other; views of one buffer,
    # overlapping or not, in a torch.save file): every tensor after the first of a storage, and every view that
    # does not span its whole storage, is copied into its own.
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for k, t in tensors.items():
        t = t.detach()
        if t.numel():
            storage = t.untyped_storage()
            whole = t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
            if storage.data_ptr() in seen or not whole or not t.is_contiguous():
                t = t.clone(memory_format=torch.contiguous_format)
            seen.add(storage.data_ptr())
            seen.add(t.untyped_storage().data_ptr())
        out[k] = t.cpu()
    return out


def save_safetensors(tensors: Mapping[str, torch.Tensor], dst: str | os.PathLike, metadata: Mapping[str, Any]) -> None:
    """Atomically write ``tensors`` with string ``metadata`` (non-strings are JSON-encoded)."""
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items() if v is not None}
    with atomic_path(dst) as tmp, private_dir_for(tmp) as private:
        # save_file makes its own temporary file next to its target: inside our private folder, so that a kill -9
        # leaves nothing the next write into this folder does not remove
        save_file(_untie(tensors), str(private / "w.safetensors"), metadata=meta)
        os.replace(private / "w.safetensors", tmp)


def save_torch(obj: Any, dst: str | os.PathLike) -> None:
    """Atomically ``torch.save`` an object (tensors and plain containers only, so it reads back safely)."""
    with atomic_path(dst) as tmp:
        torch.save(obj, tmp)
