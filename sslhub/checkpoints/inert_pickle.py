"""Read the tensors of a LightlyTrain ``checkpoints/last.ckpt`` without running anything the file names.

LightlyTrain's ``ModelCheckpoint`` adds ``checkpoint["lightly_train"] = {version, date, models: {model,
wrapped_model, embedding_model}, normalize_args, ...}`` to an otherwise plain Lightning checkpoint: the ``models``
are pickled ``nn.Module`` objects, so ``torch.load(weights_only=True)`` refuses the file although every weight sits
as a plain tensor under ``state_dict``.

This module unpickles such a file with :func:`torch.load` and a pickle module whose ``find_class`` gives the real
object only for the globals that ``weights_only=True`` allows (tensor rebuilds, storages, dtypes,
``OrderedDict``...); every other global (``lightly_train`` classes, ``torch.nn`` modules, ``copyreg``,
``os.system``...) becomes an *inert placeholder*: a class of this module whose construction, ``__setstate__`` and
item assignment only store their arguments. So ``REDUCE``/``NEWOBJ``/``BUILD`` on a name from the file run only
this module's code, nothing the file names is imported or called, and the placeholders are dropped before the
result is returned: only tensors and plain containers come out.

It is used only for the recognised case (:func:`is_lightly_train_checkpoint`, decided from a symbolic scan of the
pickle that runs nothing): code or classes only under ``lightly_train``, weights under ``state_dict``. Every other
file that pickles code is still refused.
"""

from __future__ import annotations

import os
import pickle
import types
from typing import Any

import torch

__all__ = ["is_lightly_train_checkpoint", "load_inert"]

_MAX_DEPTH = 6


class _Inert:
    """Stands in for a class or function named by the file. Never imports or calls it."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_inert_args"] = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_inert_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


def _allowed_globals() -> dict[str, Any]:
    """What ``torch.load(weights_only=True)`` may unpickle, by qualified name, plus sslhub's numpy/argparse extras."""
    from torch import _weights_only_unpickler as wou

    from sslhub.checkpoints.io import _numpy_safe_globals

    allowed = dict(wou._get_allowed_globals())
    for g in _numpy_safe_globals():
        obj, name = g if isinstance(g, tuple) else (g, f"{g.__module__}.{g.__qualname__}")
        allowed[name] = obj
    return allowed


class _InertUnpickler(pickle.Unpickler):
    _allowed: dict[str, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get(f"{module}.{name}")
        if obj is not None:
            return obj
        return type(f"Inert[{module}.{name}]", (_Inert,), {"qualname": f"{module}.{name}"})


def _pickle_module() -> types.ModuleType:
    """A module object with the two names ``torch.load`` uses (``Unpickler`` and ``load``)."""
    mod = types.ModuleType("sslhub_inert_pickle")
    _InertUnpickler._allowed = _allowed_globals()

    def load(f: Any, **kwargs: Any) -> Any:
        return _InertUnpickler(f, **kwargs).load()

    mod.Unpickler = _InertUnpickler  # type: ignore[attr-defined]
    mod.load = load  # type: ignore[attr-defined]
    return mod


def _has_inert(x: Any, depth: int = 0) -> bool:
    if isinstance(x, _Inert) or (isinstance(x, type) and issubclass(x, _Inert)):
        return True
    if depth > _MAX_DEPTH:
        return True  # not worth keeping
    if isinstance(x, dict):
        return any(_has_inert(k, depth + 1) or _has_inert(v, depth + 1) for k, v in x.items())
    if isinstance(x, (list, tuple, set, frozenset)):
        return any(_has_inert(v, depth + 1) for v in x)
    return False


def is_lightly_train_checkpoint(path: str | os.PathLike) -> bool:
    """A Lightning checkpoint whose only non-data globals sit under ``lightly_train`` and whose weights are plain
    tensors under ``state_dict`` (decided from the pickle's opcodes, nothing is unpickled)."""
    from sslhub.checkpoints.pickle_scan import scan

    try:
        s = scan(path)
    except Exception:
        return False
    return (
        "state_dict" in s.top_keys
        and "lightly_train" in s.top_keys
        and set(s.code) == {"lightly_train"}
        and s.tensors_key == "state_dict"
    )


def load_inert(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Unpickle ``path`` with placeholders for every non-allowed global; return its top-level entries that hold
    only tensors and plain data (``lightly_train``'s pickled models are dropped)."""
    obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module(), mmap=mmap)
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"{path}: not a checkpoint dict")
    return {k: v for k, v in obj.items() if isinstance(k, str) and not _has_inert(v)}
