"""PIRL's augmentations with Lightly's names, arguments and defaults: :class:`Jigsaw` (``n_grid ** 2`` shuffled
tiles of an image) and :class:`PIRLTransform` (a plain crop and the jigsaw of the image).

Both take a PIL image, a (C, H, W) tensor or a batch (N, C, H, W); the batch gets per-sample tile offsets,
per-tile augmentation and per-sample permutations, vectorised. Randomness comes from torch's generator (Lightly
draws the tile offsets and the permutation from numpy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import torch
from PIL.Image import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sslhub.transforms.base import IMAGENET_NORMALIZE, MultiViewTransform, Normalize, ToTensor, ViewTransform
from sslhub.transforms.batched import to_device
from sslhub.transforms.methods import _augment_ops

__all__ = ["Jigsaw", "PIRLTransform"]


class Jigsaw:
    """Cuts the ``img_size x img_size`` top-left region of an image into an ``n_grid x n_grid`` grid, takes a
    ``crop_size`` tile at a random offset inside every cell, applies ``transform`` to each tile and returns the
    tiles in a random order, stacked: (n_grid ** 2, C, h, w) (for a batch (N, n_grid ** 2, C, h, w)).

    Args:
        n_grid: Cells per side.
        img_size: Side of the region that is cut (images must be at least this large).
        crop_size: Side of each tile (at most ``img_size // n_grid``).
        transform: Applied to every tile; a :class:`~sslhub.transforms.ViewTransform` (or any op with
            ``supports_batches``) runs on all tiles of a batch at once.
    """

    def __init__(
        self, n_grid: int = 3, img_size: int = 255, crop_size: int = 64, transform: Callable[[Any], Tensor] = ToTensor()
    ) -> None:
        self.n_grid = n_grid
        self.img_size = img_size
        self.crop_size = crop_size
        self.grid_size = int(img_size / n_grid)
        self.side = self.grid_size - crop_size
        if self.side < 0:
            raise ValueError(f"Jigsaw: crop_size {crop_size} exceeds the cell size {self.grid_size} "
                             f"(img_size {img_size} / n_grid {n_grid})")  # fmt: skip
        self.transform = transform
        cells = torch.arange(n_grid) * self.grid_size
        # Row-major cells: tile i lies in row i // n_grid, column i % n_grid (as Lightly's meshgrid).
        self.rows = cells.repeat_interleave(n_grid)
        self.cols = cells.repeat(n_grid)

    def _check(self, height: int, width: int) -> None:
        if min(height, width) < self.n_grid * self.grid_size:
            raise ValueError(f"Jigsaw: images must be at least {self.n_grid * self.grid_size} px per side "
                             f"(n_grid {self.n_grid} x cell {self.grid_size}), got {height}x{width}; resize them first")  # fmt: skip

    def __call__(self, img: Union[Image, Tensor]) -> Tensor:
        """Returns the shuffled, transformed tiles of ``img``."""
        k = self.n_grid**2
        if isinstance(img, Tensor) and img.ndim == 4:
            return self._batch(img.as_subclass(Tensor))
        width, height = img.size if isinstance(img, Image) else (img.shape[-1], img.shape[-2])
        self._check(height, width)
        top = self.rows + torch.randint(0, self.side + 1, (k,))
        left = self.cols + torch.randint(0, self.side + 1, (k,))
        c = self.crop_size
        tiles = [TF.crop(img, int(t), int(l), c, c) for t, l in zip(top, left)]
        out = torch.stack([torch.as_tensor(self.transform(tile)).as_subclass(Tensor) for tile in tiles])
        return out[torch.randperm(k)]

    def _batch(self, images: Tensor) -> Tensor:
        n, channels, height, width = images.shape
        self._check(height, width)
        k, c = self.n_grid**2, self.crop_size
        top = self.rows + torch.randint(0, self.side + 1, (n, k))  # (N, k) tile corners
        left = self.cols + torch.randint(0, self.side + 1, (n, k))
        offsets = torch.arange(c)
        rows = to_device(top[..., None] + offsets, images.device)  # (N, k, c)
        cols = to_device(left[..., None] + offsets, images.device)
        b = torch.arange(n, device=images.device).view(n, 1, 1, 1, 1)
        ch = torch.arange(channels, device=images.device).view(1, 1, channels, 1, 1)
        tiles = images[b, ch, rows[:, :, None, :, None], cols[:, :, None, None, :]]  # (N, k, C, c, c)
        flat = tiles.reshape(n * k, channels, c, c)
        if isinstance(self.transform, ViewTransform) or getattr(self.transform, "supports_batches", False):
            out = self.transform(flat)
        else:
            out = torch.stack([torch.as_tensor(self.transform(t)).as_subclass(Tensor) for t in flat])
        out = out.reshape(n, k, *out.shape[1:])
        perm = to_device(torch.rand(n, k).argsort(dim=1), out.device)
        return out[torch.arange(n, device=out.device)[:, None], perm]


class PIRLTransform(MultiViewTransform):
    """PIRL's two views: a random resized crop of the image, and the :class:`Jigsaw` of the image whose tiles get
    a horizontal flip, colour jitter and grayscale (the jigsaw cuts the image itself, not the crop; images should
    be ``input_size`` large).

    Args:
        input_size: Crop size and jigsaw region (the larger side if a tuple).
        cj_prob: Probability of colour jitter.
        cj_strength: Multiplies ``cj_bright``, ``cj_contrast``, ``cj_sat`` and ``cj_hue``.
        cj_bright: Brightness jitter.
        cj_contrast: Contrast jitter.
        cj_sat: Saturation jitter.
        cj_hue: Hue jitter.
        min_scale: Minimum crop area relative to the image.
        random_gray_scale: Probability of grayscale.
        hf_prob: Probability of a horizontal flip (of each tile).
        n_grid: Jigsaw cells per side.
        normalize: ``{"mean": [...], "std": [...]}`` or None to skip normalisation.
    """

    def __init__(
        self,
        input_size: Union[int, tuple[int, int]] = 64,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.4,
        cj_contrast: float = 0.4,
        cj_sat: float = 0.4,
        cj_hue: float = 0.4,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        hf_prob: float = 0.5,
        n_grid: int = 3,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        side = max(input_size) if isinstance(input_size, tuple) else input_size
        crop = ViewTransform([v2.RandomResizedCrop(size=input_size, scale=(min_scale, 1.0))], normalize)
        tile_ops = _augment_ops(
            crop=None, hf_prob=hf_prob, vf_prob=0.0, rr_prob=0.0, rr_degrees=None, cj_prob=cj_prob,
            cj_strength=cj_strength, cj_bright=cj_bright, cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue,
            random_gray_scale=random_gray_scale, gaussian_blur=0.0, sigmas=(0.1, 2),
        )  # fmt: skip
        jigsaw = Jigsaw(n_grid=n_grid, img_size=side, crop_size=int(side // n_grid),
                        transform=ViewTransform(tile_ops, normalize))  # fmt: skip
        super().__init__([crop, jigsaw])
