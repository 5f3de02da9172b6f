"""Suggestions ("did you mean ...?") for names people type: recipes, registry names, recipe keys and files.

One ranking for every kind of name: candidates are compared after :func:`normalize_name` (case, separators,
known method aliases such as ``mocov2`` -> ``moco``), so ``simclr-resnet18-mini`` finds ``simclr-resnet-18-mini``
and ``mocov2-resnet-18`` finds ``moco-resnet-18``; ties are broken in natural order (``resnet-9`` before
``resnet-50``, see :func:`natural_key`).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["no_such_file", "METHOD_ALIASES", "did_you_mean", "natural_key", "natural_sorted", "normalize_name", "resolve_method_alias",
           "similar", "similar_files"]

# Other spellings of a method name -> the name recipes and the registry use (one naming scheme, see sslhub.recipes).
METHOD_ALIASES = {
    "mocov2": "moco",
    "moco_v2": "moco",
    "moco-v2": "moco",
    "barlow_twins": "barlowtwins",
    "barlow-twins": "barlowtwins",
    "dinov1": "dino",
}

_SPLIT = re.compile(r"(\d+(?:\.\d+)?)")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``resnet-9 < resnet-18 < resnet-50``."""
    parts = _SPLIT.split(str(text).lower())
    return tuple((0, float(p), p) if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))


def natural_sorted(items: Iterable[str]) -> list[str]:
    """``items`` in natural order (see :func:`natural_key`)."""
    return sorted(items, key=natural_key)


def resolve_method_alias(name: str) -> str:
    """``name`` in lower case with a leading method alias replaced (``mocov2-resnet50`` -> ``moco-resnet50``)."""
    s = str(name).strip().lower()
    for alias in sorted(METHOD_ALIASES, key=len, reverse=True):
        if s == alias or s.startswith((alias + "-", alias + "_", alias + ".")):
            return METHOD_ALIASES[alias] + s[len(alias):]
    return s


def normalize_name(name: str) -> str:
    """A spelling-insensitive form: lower case, method aliases resolved, no separators (``-``, ``_``, ``.``, space)."""
    return re.sub(r"[-_.\s]+", "", resolve_method_alias(name))


def similar(name: str, candidates: Iterable[str], n: int = 5, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` of ``candidates`` most like ``name``, best first (natural order among equals).

    An exact match after :func:`normalize_name` ranks first, then difflib similarity of the normalised forms.
    """
    cands = list(dict.fromkeys(str(c) for c in candidates))
    target, raw = normalize_name(name), resolve_method_alias(name)
    scored = []
    for c in cands:
        norm = normalize_name(c)
        ratio = 1.0 if norm == target else difflib.SequenceMatcher(None, target, norm).ratio()
        # a candidate that contains what was typed (or the reverse) is a likely target too
        if ratio < cutoff and target and (target in norm or norm in target) and min(len(target), len(norm)) >= 3:
            ratio = cutoff
        if ratio >= cutoff:
            # among equals, the spelling closest with its separators kept wins (moco-resnet-18 over moco-resnet18)
            tie = difflib.SequenceMatcher(None, raw, resolve_method_alias(c)).ratio()
            scored.append((ratio, tie, c))
    scored.sort(key=lambda rc: (-rc[0], -rc[1], natural_key(rc[2])))
    return [c for _, _, c in scored[:n]]


def did_you_mean(name: str, candidates: Iterable[str], n: int = 5, cutoff: float = 0.6) -> str:
    """``" Did you mean 'a', 'b'?"`` (with a leading space), or ``""`` when nothing is close."""
    close = similar(name, candidates, n=n, cutoff=cutoff)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def similar_files(path: str | os.PathLike, n: int = 5, suffixes: Sequence[str] = ()) -> list[str]:
    """Existing paths that look like the missing ``path``: names like its name in its folder or, when a folder on
    the way is missing, names like that folder in its parent (``runn1/model.safetensors`` -> ``run1/model.safetensors``)."""
    p = Path(path).expanduser()
    parts = p.parts
    # the first component that does not exist is the one to correct
    for i in range(len(parts)):
        head = Path(*parts[: i + 1])
        if not head.exists():
            break
    else:
        return []
    folder = head.parent if str(head.parent) else Path(".")
    rest = parts[i + 1:]
    try:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    except OSError:
        return []
    if suffixes and not rest:
        entries = [e for e in entries if e.is_dir() or e.suffix in suffixes]
    if rest:
        entries = [e for e in entries if e.is_dir()]
    names = similar(head.name, [e.name for e in entries], n=n, cutoff=0.5)
    out = []
    for name in names:
        candidate = (folder / name).joinpath(*rest) if str(folder) not in ("", ".") else Path(name).joinpath(*rest)
        if not rest or candidate.exists():
            out.append(str(candidate))
    return out


# Suffixes that make a string a file name, never a registry name (registry tags look like "lightly-in1k").
FILE_SUFFIXES = (".ckpt", ".pth", ".pt", ".safetensors", ".bin", ".pkl", ".pickle", ".tar", ".npz", ".npy", ".json",
                 ".yaml", ".csv", ".png")


def no_such_file(path: str | os.PathLike, what: str = "file") -> str:
    """``"PATH: no such file. Did you mean 'x.ckpt'?"``, with the closest names in its folder."""
    close = similar_files(path)
    hint = f". Did you mean {', '.join(repr(c) for c in close)}?" if close else "."
    folder = Path(path).expanduser().parent
    if not close and not folder.is_dir():
        hint = f" (the folder {str(folder)!r} does not exist either)."
    elif close and not folder.is_dir():
        hint = f" (the folder {str(folder)!r} does not exist)" + hint
    return f"{path}: no such {what}{hint}"
