"""Image data: a tolerant image-folder dataset and fast decoding to ``uint8`` tensors.

* :class:`ImageFolderDataset`: ``(image, label, filename)`` items from a folder, class subfolders optional,
  corrupt files skipped with one warning.
* :func:`read_image_uint8` / :func:`decode_batch`: decode and resize to fixed-size ``uint8`` tensors, for
  batched augmentation on the device.
"""

from __future__ import annotations

from sslhub.data.decode import UnreadableImageError, decode_batch, read_image_uint8
from sslhub.data.folder import IMG_EXTENSIONS, AugmentingCollate, DatasetError, ImageFolderDataset, collate_skip_invalid

__all__ = [
    "IMG_EXTENSIONS",
    "AugmentingCollate",
    "DatasetError",
    "ImageFolderDataset",
    "UnreadableImageError",
    "collate_skip_invalid",
    "decode_batch",
    "read_image_uint8",
]
