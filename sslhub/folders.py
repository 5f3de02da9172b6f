"""Checks of image-folder arguments that run before torch is imported (the command line calls them first, so a
mistyped folder fails in a second, not after the imports), and that the library repeats as warnings."""

from __future__ import annotations

import os
from pathlib import Path

from sslhub.errors import SslhubError
from sslhub.suggest import no_such_file

__all__ = ["SPLIT_NAMES", "FolderError", "check_image_folder", "split_folders"]

# Folder names that mean "a split of a dataset", not "a class".
SPLIT_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")


class FolderError(SslhubError, ValueError):
    """An image-folder argument that cannot be right (missing, a file, or the parent of split folders)."""


def split_folders(folder: str | os.PathLike) -> list[str]:
    """The subfolders of ``folder`` named like dataset splits (``train``, ``val``, ``test``...), when there are at
    least two of them and one is a training split: then ``folder`` holds splits, not classes."""
    try:
        names = sorted(d.name for d in Path(folder).iterdir() if d.is_dir() and d.name.lower() in SPLIT_NAMES)
    except OSError:
        return []
    has_train = any(n.lower() in ("train", "training") for n in names)
    return names if has_train and len(names) >= 2 else []


def check_image_folder(folder: str | os.PathLike, option: str = "--data") -> Path:
    """``folder`` as a Path, or a :class:`FolderError` that names ``option`` and says what to pass instead.

    Refused: a path that does not exist (with the closest existing names: "did you mean"), a file, and the
    parent of split folders (``clothing10_demo`` holding ``train/`` and ``val/``), which would otherwise be read as
    one dataset whose classes are the splits (training on the validation images).
    """
    p = Path(folder).expanduser()
    if not p.exists():
        raise FolderError(f"{option} {no_such_file(p, 'folder')}")
    if not p.is_dir():
        raise FolderError(f"{option} {p} is a file; pass the folder that holds the images")
    splits = split_folders(p)
    if splits:
        train = next(n for n in splits if n.lower() in ("train", "training"))
        held = next((n for n in splits if n.lower() not in ("train", "training")), None)
        fix = f"{option} {p / train}" if option != "--val" else f"--val {p / held}"
        if option == "--data" and held:
            fix += f" --val {p / held}"
        raise FolderError(f"{option} {p} holds the split folders {', '.join(splits)}, not class folders: its "
                          f"'classes' would be the splits and training would see the held-out images. Pass {fix}")  # fmt: skip
    return p
