"""A folder of images, with optional class subfolders, that tolerates corrupt files."""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from sslhub.data.decode import UnreadableImageError, read_image_uint8
from sslhub.errors import SslhubError

logger = logging.getLogger(__name__)

__all__ = ["IMG_EXTENSIONS", "AugmentingCollate", "DatasetError", "ImageFolderDataset", "collate_skip_invalid"]

# Same list as lightly.data._helpers.IMG_EXTENSIONS, so that both see the same files in a folder.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# Below this many files the index check is over before a progress bar would be worth drawing.
_PROGRESS_MIN_FILES = 5000


class DatasetError(SslhubError, ValueError):
    """A dataset folder that cannot be used (missing, empty, classes that do not match). Names the folder."""


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _images_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of the folders walked: a symlink loop is followed once
    # followlinks: datasets are often assembled from symlinked class folders (torchvision does the same).
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
            real = os.path.realpath(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            logger.warning("%s is a folder already indexed (a symlink loop?); it is not indexed again", dirpath)
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            target = os.path.realpath(os.path.join(dirpath, d))
            if target == real or real.startswith(target.rstrip(os.sep) + os.sep):  # a link to itself or above
                logger.warning("%s links to %s, a folder above it (a symlink loop); it is not followed",
                               os.path.join(dirpath, d), target)  # fmt: skip
                continue
            keep.append(d)
        dirnames[:] = keep
        found.extend(Path(dirpath) / f for f in sorted(filenames) if _is_image(f))
    return found


def _verify(path: Path) -> str | None:
    """Cheap structural check (header, and chunk CRCs for PNG) without decoding pixels; the reason on failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.verify()
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, struct.error, ...) for broken files
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


class ImageFolderDataset(Dataset):
    """Images in ``root``, optionally sorted into class subfolders (``root/<class>/**/<image>``).

    Items are ``(image, label, filename)``: ``label`` is the class index when ``root`` has class subfolders and
    ``-1`` for images directly in ``root`` (labels are for monitoring only); ``filename`` is the path relative
    to ``root`` with ``/`` separators, as Lightly writes it in embedding files.

    Unreadable files are found cheaply while indexing (PIL ``verify``: header and PNG checksums, no pixel
    decoding) and left out, with one warning and a count in :attr:`skipped`. A file that still fails to decode
    when loaded (for example a truncated JPEG, which ``verify`` cannot see) makes ``__getitem__`` return
    ``None``; use :func:`collate_skip_invalid` as the DataLoader's ``collate_fn`` to drop those.

    Args:
        root: the image folder.
        transform: applied to the image (a PIL RGB image, or a ``uint8`` tensor when ``decode_size`` is set).
        classes: class names defining the label indices (pass ``train.classes`` to a validation folder so
            both use the same indices). Default: the sorted subfolders that contain images.
        decode_size: decode straight to an RGB ``uint8`` tensor ``(3, H, W)`` of this size (shorter side
            resized, center crop) with the fast decoder of :mod:`sslhub.data.decode`, instead of PIL.
        verify: run the index-time check (disable for trusted, very large folders).

    Raises:
        DatasetError: ``root`` is missing, not a folder, has no images, or has subfolders not in ``classes``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Any], Any] | None = None,
        *,
        classes: Sequence[str] | None = None,
        decode_size: int | Sequence[int] | None = None,
        verify: bool = True,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        self.decode_size = decode_size
        if not self.root.exists():
            raise DatasetError(f"image folder {self.root} does not exist")
        if not self.root.is_dir():
            raise DatasetError(f"{self.root} is not a folder; pass the folder that holds the images")

        subdirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        per_class = {d.name: _images_under(d) for d in subdirs}
        found_classes = [name for name, files in per_class.items() if files]
        if classes is None:
            self.classes = found_classes
        else:
            self.classes = list(classes)
            unknown = [c for c in found_classes if c not in self.classes]
            if unknown:
                raise DatasetError(
                    f"{self.root} has class folders {unknown} that are not among the expected classes "
                    f"{self.classes} (the training folder's); use folders with the same class names"
                )
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        candidates: list[tuple[Path, int]] = [
            (self.root / f, -1) for f in sorted(os.listdir(self.root)) if _is_image(f) and (self.root / f).is_file()
        ]
        for name in found_classes:
            candidates.extend((p, self.class_to_idx[name]) for p in per_class[name])
        if not candidates:
            raise DatasetError(
                f"no images found in {self.root} (looked for {', '.join(IMG_EXTENSIONS)} files directly in it "
                "and in its subfolders)"
            )

        self.skipped_files: list[str] = []
        samples: list[tuple[Path, int]] = []
        it = tqdm(
            candidates, desc=f"checking {self.root.name}", unit="img", disable=len(candidates) < _PROGRESS_MIN_FILES
        )
        for path, label in it:
            reason = _verify(path) if verify else None
            if reason is None:
                samples.append((path, label))
            else:
                self.skipped_files.append(f"{path}: {reason}")
        if self.skipped_files:
            logger.warning(
                "skipped %d unreadable image(s) in %s (first: %s)",
                len(self.skipped_files),
                self.root,
                self.skipped_files[0],
            )
        if not samples:
            raise DatasetError(f"none of the {len(candidates)} image files in {self.root} can be read")
        self.samples = samples
        self._warned_at_load = False

    @property
    def skipped(self) -> int:
        """Number of files left out as unreadable (at index time, plus at load time in this process)."""
        return len(self.skipped_files)

    @property
    def has_labels(self) -> bool:
        """True when the folder has class subfolders."""
        return bool(self.classes)

    @property
    def targets(self) -> list[int]:
        """Label of every sample (``-1`` where there is no class folder)."""
        return [label for _, label in self.samples]

    @property
    def filenames(self) -> list[str]:
        """Path of every sample relative to ``root``, with ``/`` separators."""
        return [p.relative_to(self.root).as_posix() for p, _ in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: Path) -> Any:
        if self.decode_size is not None:
            return read_image_uint8(path, self.decode_size)
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise UnreadableImageError(f"{path}: cannot decode image ({e})") from None

    def __getitem__(self, index: int) -> tuple[Any, int, str] | None:
        """``(image, label, filename)``, or ``None`` when the file cannot be decoded."""
        path, label = self.samples[index]
        try:
            image = self._load(path)
        except UnreadableImageError as e:
            self.skipped_files.append(str(e))
            # One warning per dataset and process; the count tells the rest (DataLoader workers each warn once).
            if not self._warned_at_load:
                self._warned_at_load = True
                logger.warning("skipping unreadable image(s) while loading, first: %s", e)
            else:
                logger.debug("skipping unreadable image: %s", e)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, label, path.relative_to(self.root).as_posix()

    def copy(self, **changes: Any) -> ImageFolderDataset:
        """A copy sharing the file index, with attributes changed (``transform``, ``decode_size``)."""
        unknown = set(changes) - {"transform", "decode_size"}
        if unknown:
            raise TypeError(f"ImageFolderDataset.copy() accepts transform and decode_size, not {sorted(unknown)}")
        new = copy.copy(self)
        new.skipped_files = list(self.skipped_files)
        new._warned_at_load = False
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(root={str(self.root)!r}, images={len(self)}, classes={len(self.classes)}, "
            f"skipped={self.skipped})"
        )


def collate_skip_invalid(batch: Sequence[Any]) -> Any:
    """``default_collate`` without the ``None`` items that :class:`ImageFolderDataset` returns for unreadable
    files. Returns ``None`` if every item of the batch was unreadable."""
    from torch.utils.data import default_collate

    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    return default_collate(kept)


class AugmentingCollate:
    """``collate_fn`` that augments the whole batch where it is collated: :func:`collate_skip_invalid`, then
    ``transform`` on the ``uint8`` image batch (sslhub transforms accept batches and draw per-sample randomness).

    With DataLoader workers this moves the batched augmentation off the training process, so it runs in
    parallel with the model step instead of before it. Returns ``(views, labels, filenames)``, ``views`` being
    the transform's output, or ``None`` when no item of the batch could be read.
    """

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.transform = transform

    def __call__(self, batch: Sequence[Any]) -> Any:
        collated = collate_skip_invalid(batch)
        if collated is None:
            return None
        images, *rest = collated
        with torch.no_grad():
            return (self.transform(images), *rest)
