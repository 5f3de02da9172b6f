"""Image data: a tolerant image-folder dataset and fast decoding to ``uint8`` tensors.

* :class:`ImageFolderDataset`: ``(image, label, filename)`` items from a folder, class subfolders optional,
  corrupt files skipped with one warning.
* :func:`read_image_uint8` / :func:`decode_batch`: decode and resize to fixed-size ``uint8`` tensors, for
  batched augmentation on the device.
* :func:`demo_path`: the embedded CC0 demo dataset (installed with the package).
"""

from __future__ import annotations

from sslhub.data.decode import UnreadableImageError, decode_batch, read_image_uint8
from sslhub.data.demo import DEMO_DATASET, demo_path
from sslhub.data.folder import IMG_EXTENSIONS, AugmentingCollate, DatasetError, ImageFolderDataset, collate_skip_invalid

__all__ = [
    "DEMO_DATASET",
    "IMG_EXTENSIONS",
    "AugmentingCollate",
    "DatasetError",
    "ImageFolderDataset",
    "UnreadableImageError",
    "collate_skip_invalid",
    "decode_batch",
    "demo_path",
    "read_image_uint8",
]
