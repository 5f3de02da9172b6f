"""Building blocks shared by all augmentation pipelines.

Every pipeline works on a PIL image, a (C, H, W) tensor or a batch (N, C, H, W) of RGB tensors. Batches
get independent random parameters per image but are processed with vectorised operations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from PIL.Image import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sslhub.transforms.batched import apply_batched, to_device

ImageInput = Union[Image, Tensor]
Normalize = Union[None, dict[str, list[float]]]

IMAGENET_NORMALIZE: dict[str, list[float]] = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _to_plain_tensor(image: Any) -> Tensor:
    """PIL or tv_tensor -> plain tensor (uint8 stays uint8)."""
    if isinstance(image, Image):
        image = TF.pil_to_tensor(image)
    return image.as_subclass(Tensor)


class ViewTransform:
    """One augmentation pipeline producing one view: ``ops``, then float conversion and normalisation.

    Args:
        ops: Callables applied in order to a PIL image; for tensors the same op objects configure the
            vectorised batch engine (ops it does not know run per sample on float images in [0, 1]).
        normalize: ``{"mean": [...], "std": [...]}`` or None to skip normalisation.
    """

    def __init__(self, ops: Sequence[Callable[[Any], Any]], normalize: Normalize = IMAGENET_NORMALIZE) -> None:
        self.ops = list(ops)
        self.normalize = normalize
        # v2.Compose rejects an empty list (every op may have been left out at probability 0).
        self.transform = v2.Compose(self.ops) if self.ops else v2.Identity()
        self._norm: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_norm": {}}  # device tensors do not travel to DataLoader workers

    def _normalize_batch(self, x: Tensor) -> Tensor:
        """``TF.normalize`` without its host-device round trips (a copy of mean/std and a check of std per call)."""
        key = (x.device, x.dtype)
        if key not in self._norm:
            mean, std = (torch.tensor(self.normalize[k], dtype=x.dtype).view(-1, 1, 1) for k in ("mean", "std"))
            if (std == 0).any():
                raise ValueError(f"std evaluated to zero after conversion to {x.dtype}, leading to division by zero.")
            self._norm[key] = (to_device(mean, x.device), to_device(std, x.device))
        mean, std = self._norm[key]
        return x.sub(mean).div_(std)

    def __call__(self, image: ImageInput) -> Tensor:
        """Returns a float32 view: (C, h, w) for one image, (N, C, h, w) for a batch.

        PIL images run the torchvision pipeline; tensors (uint8 in 0..255 or float in [0, 1], one image or
        a batch) run the vectorised engine of :mod:`sslhub.transforms.batched` with per-sample randomness.
        """
        if isinstance(image, Tensor):
            batch = image.as_subclass(Tensor)
            single = batch.ndim == 3
            batch = TF.to_dtype(batch.unsqueeze(0) if single else batch, torch.float32, scale=True)
            out = apply_batched(self.ops, batch)
            if self.normalize:
                out = self._normalize_batch(out)
            return out[0] if single else out
        out = TF.to_dtype(_to_plain_tensor(self.transform(image)), torch.float32, scale=True)
        if self.normalize:
            out = TF.normalize(out, mean=self.normalize["mean"], std=self.normalize["std"])
        return out


class ToTensor:
    """PIL image or tensor -> float32 tensor in [0, 1] (uint8 is scaled by 1/255), Lightly's ``ToTensor``.

    It replaces torchvision's deprecated ``ToTensor`` with ``v2.ToImage`` + ``v2.ToDtype(float32, scale=True)``;
    batches (N, C, H, W) pass through unchanged in shape.
    """

    supports_batches = True

    def __init__(self) -> None:
        self.transform = v2.Compose([v2.ToImage(), v2.ToDtype(dtype=torch.float32, scale=True)])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Converts ``args`` (as ``v2.Compose`` does: an image, or a structure of images and masks)."""
        return self.transform(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform})"


class MultiViewTransform:
    """Applies every transform in ``transforms`` to the input; returns the list of views."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: ImageInput) -> list[Tensor]:
        """Returns one view per transform."""
        return [transform(image) for transform in self.transforms]


class MultiViewTransformV2:
    """Like :class:`MultiViewTransform` for transforms v2 inputs: every transform receives all positional
    arguments (images, masks, bounding boxes, ...) and returns one view of them."""

    def __init__(self, transforms: Sequence[Callable[..., Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, *args: Any) -> list[Any]:
        """Returns one transformed copy of ``args`` per transform."""
        return [transform(*args) for transform in self.transforms]


class MultiCropTranform(MultiViewTransform):
    """Multi-crop views: ``crop_counts[i]`` random resized crops of size ``crop_sizes[i]``, each followed
    by ``transforms``. (Lightly's spelling; ``MultiCropTransform`` is an alias.)

    Args:
        crop_sizes: Output size of each crop group.
        crop_counts: Number of crops of each group.
        crop_min_scales: Minimum area fraction of each group.
        crop_max_scales: Maximum area fraction of each group.
        transforms: Augmentation after the crop; a :class:`ViewTransform` keeps batch support.
        interpolation: Resize interpolation of the crops.
    """

    def __init__(
        self,
        crop_sizes: tuple[int, ...],
        crop_counts: tuple[int, ...],
        crop_min_scales: tuple[float, ...],
        crop_max_scales: tuple[float, ...],
        transforms: Callable[[Any], Any],
        interpolation: v2.InterpolationMode = v2.InterpolationMode.BILINEAR,
    ) -> None:
        n = len(crop_sizes)
        for name, seq in (("crop_counts", crop_counts), ("crop_min_scales", crop_min_scales), ("crop_max_scales", crop_max_scales)):
            if len(seq) != n:
                raise ValueError(f"Length of crop_sizes and {name} must be equal but are {n} and {len(seq)}.")
        views: list[Callable[[Any], Any]] = []
        for size, count, lo, hi in zip(crop_sizes, crop_counts, crop_min_scales, crop_max_scales):
            crop = v2.RandomResizedCrop(size, scale=(lo, hi), interpolation=interpolation)
            if isinstance(transforms, ViewTransform):
                view: Callable[[Any], Any] = ViewTransform([crop, *transforms.ops], transforms.normalize)
            else:
                view = ViewTransform([crop, transforms], normalize=None)
            views.extend([view] * count)
        super().__init__(views)


MultiCropTransform = MultiCropTranform
