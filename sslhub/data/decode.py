"""Fast image decoding to fixed-size ``uint8`` tensors, for batched tensor augmentation on the device.

Measured on the 2-core development machine (one thread, ms per image, decode + resize shorter side + center
crop to the size shown):

======================================  ==============  ================  ==================
images (size)                           PIL             PIL ``draft``     torchvision.io
======================================  ==============  ================  ==================
CIFAR-10 32 px JPEG -> 32               0.16            0.26              **0.11**
clothing 160 px JPEG -> 128             0.72            0.71              **0.37**
hymenoptera 256 px JPEG -> 96           1.17            0.96              **0.56**
2048x1536 JPEG -> 224                   37.2            **6.3**           9.0
PNG 256 px -> 96                        3.0             3.1               **2.5**
======================================  ==============  ================  ==================

So JPEGs are decoded with torchvision.io, except large ones (at least twice the target size), which PIL
decodes at a reduced DCT scale (``Image.draft``) before resizing. Every other format goes through PIL, PNG
included although torchvision.io is a little faster there: torchvision 0.29's ``decode_png`` crashes the
process (SIGSEGV, uncatchable) on PNGs with corrupt compressed data (the first fuzzed PNG of each of three
runs here), whereas its JPEG decoder raised a clean error for all 300 fuzzed JPEGs. One bad file must not
kill a training run. A JPEG that torchvision refuses (CMYK, unusual sampling) is retried with PIL.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sslhub.errors import SslhubError

logger = logging.getLogger(__name__)

__all__ = ["UnreadableImageError", "decode_batch", "decode_image_uint8", "read_image_uint8"]

# Only files above this size pay for a PIL header read to decide on draft decoding: below it decoding takes
# well under a millisecond, and the header read would add ~80% to the cost (measured on CIFAR-10 JPEGs).
_DRAFT_MIN_BYTES = 64 * 1024


class UnreadableImageError(SslhubError, ValueError):
    """An image file that cannot be decoded (truncated, corrupt, or not an image). The message names the file."""


def _is_jpeg(head: bytes) -> bool:
    return head.startswith(b"\xff\xd8\xff")


def _resize_crop(img: torch.Tensor, size: tuple[int, int] | None, crop: bool) -> torch.Tensor:
    if size is None:
        return img
    from torchvision.transforms.v2 import functional as F

    h, w = img.shape[-2:]
    if crop:
        # Resize the shorter side so that the crop fits, then center crop (no aspect distortion). For square
        # outputs this is exactly v2.Resize(size) + v2.CenterCrop(size), rounding of the long side included.
        if size[0] == size[1]:
            if min(h, w) != size[0]:
                img = F.resize(img, [size[0]], antialias=True)
        else:
            scale = max(size[0] / h, size[1] / w)
            new = [max(size[0], round(h * scale)), max(size[1], round(w * scale))]
            if new != [h, w]:
                img = F.resize(img, new, antialias=True)
        return F.center_crop(img, list(size))
    if (h, w) != size:
        img = F.resize(img, list(size), antialias=True)
    return img


def _decode_pil(data: bytes, size: tuple[int, int] | None, crop: bool) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        if size is not None and im.format == "JPEG":
            # DCT-domain downscaling: decodes a 2048 px JPEG several times faster; draft keeps >= the request.
            w, h = im.size
            scale = max(size[0] / h, size[1] / w) if crop else 1.0
            req = (round(w * scale), round(h * scale)) if crop else (size[1], size[0])
            im.draft("RGB", req)
        im = im.convert("RGB")
        arr = np.array(im, dtype=np.uint8)  # copy: PIL's buffer is read-only
    return _resize_crop(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), size, crop)


def _wants_draft(data: bytes, size: tuple[int, int] | None) -> bool:
    if size is None or len(data) < _DRAFT_MIN_BYTES or not _is_jpeg(data[:3]):
        return False
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
    return min(h / size[0], w / size[1]) >= 2


def _check_pixels(data: bytes) -> None:
    """Raise PIL's ``DecompressionBombError`` for an image whose header declares more than twice
    ``Image.MAX_IMAGE_PIXELS`` (PIL's own limit, which ``Image.open`` applies; torchvision's decoder has none)."""
    with Image.open(io.BytesIO(data)) as im:  # reads the header only; raises above the limit
        w, h = im.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > 2 * limit:  # pragma: no cover - Image.open raised already
        raise Image.DecompressionBombError(f"{w}x{h} pixels exceed the limit of {2 * limit}")


def _as_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def read_image_uint8(
    path: str | os.PathLike, size: int | Sequence[int] | None = None, *, crop: bool = True
) -> torch.Tensor:
    """Decode an image file to an RGB ``uint8`` tensor ``(3, H, W)``.

    Args:
        path: image file (JPEG, PNG, GIF, WebP, BMP, TIFF, PPM/PGM; grayscale and palette images become RGB).
        size: output size ``H`` (square) or ``(H, W)``; ``None`` keeps the original size.
        crop: resize the shorter side and center crop (default), or squash to ``size`` when False.

    Raises:
        UnreadableImageError: the file is missing, truncated or not a decodable image.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UnreadableImageError(f"{path}: cannot decode image ({reason})") from None
    return decode_image_uint8(data, size, crop=crop, name=os.fspath(path))


def decode_image_uint8(
    data: bytes, size: int | Sequence[int] | None = None, *, crop: bool = True, name: str = "image"
) -> torch.Tensor:
    """Decode the bytes of an image (a tar member, a download) as :func:`read_image_uint8` decodes a file.

    Raises:
        UnreadableImageError: not a decodable image; the message starts with ``name``.
    """
    target = _as_size(size)
    try:
        if _is_jpeg(data[:3]):
            _check_pixels(data)  # a few hundred bytes can declare gigapixels: read the header before decoding
        if _is_jpeg(data[:3]) and not _wants_draft(data, target):
            from torchvision.io import ImageReadMode, decode_jpeg

            try:
                img = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
                return _resize_crop(img, target, crop)
            except RuntimeError:
                pass  # PIL decodes some JPEGs libjpeg-turbo's fast path refuses; truly broken ones fail there too
        return _decode_pil(data, target, crop)
    except (OSError, RuntimeError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # torchvision raises RuntimeError, PIL raises OSError/SyntaxError/ValueError for broken files.
        if isinstance(e, UnidentifiedImageError):  # its message names the in-memory buffer, not the file
            reason = "not an image, or an unknown or corrupt format"
        else:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UnreadableImageError(f"{name}: cannot decode image ({reason})") from None


def decode_batch(
    paths: Sequence[str | os.PathLike], size: int | Sequence[int], *, crop: bool = True
) -> tuple[torch.Tensor, list[int]]:
    """Decode images into one ``uint8`` batch ``(N, 3, H, W)``, skipping unreadable files.

    Meant for batched tensor augmentation: decode on the CPU here (or in DataLoader workers), move the batch
    to the device, augment there. Unreadable files are left out with one warning for the whole batch.

    Args:
        paths: image files.
        size: output size ``H`` or ``(H, W)``; every image is resized to it (see :func:`read_image_uint8`).
        crop: resize shorter side + center crop (default) or squash.

    Returns:
        ``(images, kept)``: the batch and, for each of its rows, the index into ``paths`` it came from.
    """
    target = _as_size(size)
    assert target is not None
    images: list[torch.Tensor] = []
    kept: list[int] = []
    failed: list[str] = []
    for i, p in enumerate(paths):
        try:
            images.append(read_image_uint8(p, target, crop=crop))
            kept.append(i)
        except UnreadableImageError as e:
            failed.append(str(e))
    if failed:
        logger.warning("skipped %d unreadable image(s) of %d; first: %s", len(failed), len(paths), failed[0])
    if not images:
        return torch.empty((0, 3, *target), dtype=torch.uint8), kept
    return torch.stack(images), kept
