"""Augmentations of the dense (region/location-aware) methods with Lightly's names, arguments and defaults.

* VICRegL: ``VICRegLTransform`` returns the views followed by one location grid per view, built by
  :class:`RandomResizedCropAndFlip` (crop and flips that record where each grid cell came from) and
  :class:`VICRegLViewTransform` (the photometric part). PIL images run per image; uint8/float batches
  (N, 3, H, W) run vectorised with per-sample crops, flips and grids.
* DetCon-S: ``DetConSTransform`` / ``DetConSViewTransform`` transform an image together with its segmentation
  ``Mask`` (torchvision transforms v2 structures: the mask gets the same crop and flips as the image);
  :class:`AddGridTransform` replaces masks and boxes by a regular grid. These run per image (in the DataLoader
  workers): the structures they take have no batched form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional, Union

import torch
from PIL.Image import Image
from torch import Tensor
from torchvision import transforms as tv1
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from torchvision.tv_tensors import BoundingBoxes, Mask

from sslhub.transforms.base import IMAGENET_NORMALIZE, MultiViewTransformV2, Normalize, ToTensor, ViewTransform
from sslhub.transforms.batched import crop_boxes, random_crop_boxes, to_device
from sslhub.transforms.methods import _augment_ops

__all__ = [
    "AddGridTransform",
    "ImageGridTransform",
    "DetConSTransform",
    "DetConSViewTransform",
    "RandomResizedCropAndFlip",
    "VICRegLTransform",
    "VICRegLViewTransform",
]

Size = Union[int, tuple[int, int]]


# ------------------------------------------------------------------------------------------------- VICRegL


def _grid(x: Tensor, y: Tensor, hflip: Tensor, vflip: Tensor) -> Tensor:
    """(B, n, n, 2) grids from the cell-centre coordinates ``x``, ``y`` (B, n): ``grid[b, i, j] = (x[b, j], y[b, i])``,
    reversed along flipped axes (Lightly's ``location_to_NxN_grid``)."""
    n = x.shape[1]
    x = torch.where(hflip[:, None], x.flip(1), x)
    y = torch.where(vflip[:, None], y.flip(1), y)
    return torch.stack([x[:, None, :].expand(-1, n, -1), y[:, :, None].expand(-1, -1, n)], dim=-1)


class RandomResizedCropAndFlip:
    """Random resized crop, then random horizontal and vertical flips; returns the view and an
    ``(grid_size, grid_size, 2)`` grid with the ``(x, y)`` position in the input image of each grid cell's centre
    (Lightly's class of the same name).

    Args:
        grid_size: Cells per side of the grid.
        crop_size: Output size in pixels.
        crop_min_scale: Minimum crop area relative to the image.
        crop_max_scale: Maximum crop area relative to the image.
        hf_prob: Probability of a horizontal flip.
        vf_prob: Probability of a vertical flip.
    """

    def __init__(
        self,
        grid_size: int = 7,
        crop_size: int = 224,
        crop_min_scale: float = 0.05,
        crop_max_scale: float = 0.2,
        hf_prob: float = 0.5,
        vf_prob: float = 0.5,
    ) -> None:
        self.grid_size = grid_size
        self.crop_size = crop_size
        self.crop_min_scale = crop_min_scale
        self.crop_max_scale = crop_max_scale
        self.hf_prob = hf_prob
        self.vf_prob = vf_prob
        self.resized_crop = v2.RandomResizedCrop(size=crop_size, scale=(crop_min_scale, crop_max_scale))

    def __call__(self, img: Union[Image, Tensor]) -> tuple[Any, Tensor]:
        """Returns ``(view, grid)``; for a batch (N, C, H, W) a float view batch and (N, g, g, 2) grids."""
        if isinstance(img, Tensor):
            return self._batch(img)
        crop = self.resized_crop
        top, left, height, width = tv1.RandomResizedCrop.get_params(img, list(crop.scale), list(crop.ratio))
        img = TF.resized_crop(img, top, left, height, width, list(crop.size), crop.interpolation)
        # Lightly draws both coins whatever the probability, so seeded runs agree.
        hflip = bool(torch.rand(1) < self.hf_prob)
        if hflip:
            img = TF.horizontal_flip(img)
        vflip = bool(torch.rand(1) < self.vf_prob)
        if vflip:
            img = TF.vertical_flip(img)
        g = self.grid_size
        x = torch.linspace(left, left + width, g) + width / g / 2  # Lightly's float32 arithmetic, for equal grids
        y = torch.linspace(top, top + height, g) + height / g / 2
        return img, _grid(x[None], y[None], torch.tensor([hflip]), torch.tensor([vflip]))[0]

    def _batch(self, images: Tensor) -> tuple[Tensor, Tensor]:
        single = images.ndim == 3
        x = images.as_subclass(Tensor)
        x = TF.to_dtype(x.unsqueeze(0) if single else x, torch.float32, scale=True)
        n = x.shape[0]
        boxes = random_crop_boxes(x, self.resized_crop)
        x = crop_boxes(x, boxes, tuple(self.resized_crop.size))
        hflip, vflip = torch.rand(n) < self.hf_prob, torch.rand(n) < self.vf_prob
        x = torch.where(to_device(hflip, x.device).view(-1, 1, 1, 1), x.flip(-1), x)
        x = torch.where(to_device(vflip, x.device).view(-1, 1, 1, 1), x.flip(-2), x)
        left, top, right, bottom = (b[:, None] for b in boxes.unbind(1))
        steps = torch.linspace(0, 1, self.grid_size)
        cx = left + (right - left) * steps + (right - left) / self.grid_size / 2
        cy = top + (bottom - top) * steps + (bottom - top) / self.grid_size / 2
        grid = to_device(_grid(cx, cy, hflip, vflip), x.device)
        return (x[0], grid[0]) if single else (x, grid)


class VICRegLViewTransform(ViewTransform):
    """The photometric part of a VICRegL view (crop and flips come from :class:`RandomResizedCropAndFlip`):
    colour jitter, grayscale, blur, solarization, normalisation.

    Args:
        gaussian_blur_prob: Probability of blurring.
        gaussian_blur_sigmas: ``(min, max)`` standard deviation of the blur.
        solarize_prob: Probability of solarization.
        cj_prob: Probability of colour jitter.
        cj_strength: Multiplies ``cj_bright``, ``cj_contrast``, ``cj_sat`` and ``cj_hue``.
        cj_bright: Brightness jitter.
        cj_contrast: Contrast jitter.
        cj_sat: Saturation jitter.
        cj_hue: Hue jitter.
        random_gray_scale: Probability of grayscale.
        normalize: ``{"mean": [...], "std": [...]}`` or None to skip normalisation.
    """

    def __init__(
        self,
        gaussian_blur_prob: float = 0.5,
        gaussian_blur_sigmas: tuple[float, float] = (0.1, 2),
        solarize_prob: float = 0.0,
        cj_prob: float = 1.0,
        cj_strength: float = 0.5,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.4,
        cj_hue: float = 0.2,
        random_gray_scale: float = 0.2,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        ops = _augment_ops(
            crop=None, hf_prob=0.0, vf_prob=0.0, rr_prob=0.0, rr_degrees=None, cj_prob=cj_prob,
            cj_strength=cj_strength, cj_bright=cj_bright, cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue,
            random_gray_scale=random_gray_scale, gaussian_blur=gaussian_blur_prob, sigmas=gaussian_blur_sigmas,
            solarize_prob=solarize_prob,
        )  # fmt: skip
        super().__init__(ops, normalize)


class VICRegLTransform:
    """VICRegL views: ``n_global_views`` global and ``n_local_views`` local views, followed by their location
    grids (``[views..., grids...]``, 8 + 8 entries by default; grids are (grid_size, grid_size, 2)).

    Unlike Lightly 1.6.0, ``vf_prob`` and the ``cj_bright``/``cj_contrast``/``cj_sat``/``cj_hue`` arguments also
    reach the local views (Lightly gives them a vertical flip with probability 0.5 and the default jitter).

    Args:
        global_crop_size: Size of the global views.
        local_crop_size: Size of the local views.
        n_global_views: Number of global views.
        n_local_views: Number of local views (0 is recommended for ResNets).
        global_crop_scale: Crop area range of the global views.
        local_crop_scale: Crop area range of the local views.
        global_grid_size: Grid size of the global views.
        local_grid_size: Grid size of the local views.
        global_gaussian_blur_prob: Blur probability of the global views.
        local_gaussian_blur_prob: Blur probability of the local views.
        global_gaussian_blur_sigmas: Blur standard deviation range of the global views.
        local_gaussian_blur_sigmas: Blur standard deviation range of the local views.
        global_solarize_prob: Solarization probability of the global views.
        local_solarize_prob: Solarization probability of the local views.
        hf_prob: Probability of a horizontal flip.
        vf_prob: Probability of a vertical flip.
        (colour jitter, grayscale and normalisation as :class:`VICRegLViewTransform`.)
    """

    def __init__(
        self,
        global_crop_size: int = 224,
        local_crop_size: int = 96,
        n_global_views: int = 2,
        n_local_views: int = 6,
        global_crop_scale: tuple[float, float] = (0.2, 1.0),
        local_crop_scale: tuple[float, float] = (0.05, 0.2),
        global_grid_size: int = 7,
        local_grid_size: int = 3,
        global_gaussian_blur_prob: float = 0.5,
        local_gaussian_blur_prob: float = 0.1,
        global_gaussian_blur_sigmas: tuple[float, float] = (0.1, 2),
        local_gaussian_blur_sigmas: tuple[float, float] = (0.1, 2),
        global_solarize_prob: float = 0.0,
        local_solarize_prob: float = 0.2,
        hf_prob: float = 0.5,
        vf_prob: float = 0.0,
        cj_prob: float = 1.0,
        cj_strength: float = 0.5,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.4,
        cj_hue: float = 0.2,
        random_gray_scale: float = 0.2,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        jitter = dict(cj_prob=cj_prob, cj_strength=cj_strength, cj_bright=cj_bright, cj_contrast=cj_contrast,
                      cj_sat=cj_sat, cj_hue=cj_hue, random_gray_scale=random_gray_scale, normalize=normalize)  # fmt: skip
        global_pair = (
            RandomResizedCropAndFlip(global_grid_size, global_crop_size, *global_crop_scale, hf_prob, vf_prob),
            VICRegLViewTransform(global_gaussian_blur_prob, global_gaussian_blur_sigmas, global_solarize_prob, **jitter),
        )
        local_pair = (
            RandomResizedCropAndFlip(local_grid_size, local_crop_size, *local_crop_scale, hf_prob, vf_prob),
            VICRegLViewTransform(local_gaussian_blur_prob, local_gaussian_blur_sigmas, local_solarize_prob, **jitter),
        )
        self.transforms = [global_pair] * n_global_views + [local_pair] * n_local_views

    def __call__(self, image: Union[Image, Tensor]) -> list[Tensor]:
        """Returns the views, then the grids (for a batch: (N, ...) views and (N, g, g, 2) grids)."""
        views, grids = [], []
        for crop_and_flip, view_transform in self.transforms:
            view, grid = crop_and_flip(image)
            views.append(view_transform(view))
            grids.append(grid)
        return views + grids


# -------------------------------------------------------------------------------------------------- DetCon


def _mask_grid(num_rows: int, num_cols: int, height: int, width: int) -> Tensor:
    """(1, H, W) labels 0 .. rows * cols - 1 in row-major cells of ``ceil(H / rows) x ceil(W / cols)`` pixels,
    centre-cropped to the image (Lightly's layout when the image does not divide evenly)."""
    rows = torch.arange(num_rows).repeat_interleave(math.ceil(height / num_rows))
    cols = torch.arange(num_cols).repeat_interleave(math.ceil(width / num_cols))
    return TF.center_crop((rows[:, None] * num_cols + cols[None, :]).unsqueeze(0), [height, width])


class AddGridTransform(v2.Transform):
    """DetCon's naive segmentation: every ``Mask`` in the input becomes a regular ``num_rows x num_cols`` grid
    of labels (shape (1, H, W)) and every ``BoundingBoxes`` the ``num_rows * num_cols`` grid cells; images and
    other entries pass unchanged.

    Args:
        num_rows: Grid rows.
        num_cols: Grid columns.
    """

    def __init__(self, num_rows: int, num_cols: int) -> None:
        super().__init__()
        self.num_rows = num_rows
        self.num_cols = num_cols

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Replaces a mask or bounding boxes by the grid; returns anything else unchanged."""
        if isinstance(inpt, BoundingBoxes):
            h, w = inpt.canvas_size
            xs, ys = torch.linspace(0, w, self.num_cols + 1), torch.linspace(0, h, self.num_rows + 1)
            x_min, y_min = torch.meshgrid(xs[:-1], ys[:-1], indexing="ij")
            x_max, y_max = torch.meshgrid(xs[1:], ys[1:], indexing="ij")
            boxes = BoundingBoxes(torch.stack([x_min, y_min, x_max, y_max], dim=-1).view(-1, 4), format="XYXY",
                                  canvas_size=inpt.canvas_size, dtype=inpt.dtype, device=inpt.device,
                                  requires_grad=inpt.requires_grad)  # fmt: skip
            return v2.ConvertBoundingBoxFormat(inpt.format)(boxes)
        if isinstance(inpt, Mask):
            if inpt.dim() < 2:
                raise ValueError(f"AddGridTransform: expected a mask with at least 2 dimensions, got {inpt.dim()}")
            grid = _mask_grid(self.num_rows, self.num_cols, *inpt.shape[-2:])
            return Mask(grid, dtype=inpt.dtype, device=inpt.device, requires_grad=inpt.requires_grad)
        return inpt

    _transform = transform  # the name of this hook before torchvision 0.21


class DetConSViewTransform:
    """One DetCon-S view of an image and its masks/boxes (any torchvision transforms v2 structure): random
    resized crop, flips, rotation, colour jitter, grayscale, torchvision Gaussian blur, float conversion and
    normalisation of the image. Operations with probability 0 are left out.

    Args:
        input_size: Output size in pixels.
        cj_prob: Probability of colour jitter.
        cj_strength: Multiplies ``cj_bright``, ``cj_contrast``, ``cj_sat`` and ``cj_hue``.
        cj_bright: Brightness jitter.
        cj_contrast: Contrast jitter.
        cj_sat: Saturation jitter.
        cj_hue: Hue jitter.
        min_scale: Minimum crop area relative to the image.
        random_gray_scale: Probability of grayscale.
        gaussian_blur: Probability of blurring.
        kernel_size: Blur kernel size.
        sigmas: ``(min, max)`` standard deviation of the blur.
        vf_prob: Probability of a vertical flip.
        hf_prob: Probability of a horizontal flip.
        rr_prob: Probability of a rotation.
        rr_degrees: Angle range (``(min, max)`` or ``±degrees``), counter-clockwise.
        normalize: ``{"mean": [...], "std": [...]}`` or None to skip normalisation.
    """

    def __init__(
        self,
        input_size: Size = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.8,
        cj_hue: float = 0.2,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 1.0,
        kernel_size: tuple[float, float] = (23, 23),
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Union[float, tuple[float, float]] = 0.0,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        jitter = v2.ColorJitter(*(cj_strength * v for v in (cj_bright, cj_contrast, cj_sat, cj_hue)))
        candidates = [
            (1.0, v2.RandomResizedCrop(size=input_size, scale=(min_scale, 1.0))),
            (hf_prob, v2.RandomHorizontalFlip(p=hf_prob)),
            (vf_prob, v2.RandomVerticalFlip(p=vf_prob)),
            (rr_prob, v2.RandomApply([v2.RandomRotation(rr_degrees)], p=rr_prob)),
            (cj_prob, v2.RandomApply([jitter], p=cj_prob)),
            (random_gray_scale, v2.RandomGrayscale(p=random_gray_scale)),
            (gaussian_blur, v2.RandomApply([v2.GaussianBlur(kernel_size=kernel_size, sigma=sigmas)], p=gaussian_blur)),
            (1.0, ToTensor()),
        ]
        ops: list[Callable[..., Any]] = [op for p, op in candidates if p > 0]
        if normalize:
            ops.append(v2.Normalize(mean=normalize["mean"], std=normalize["std"]))
        self.transform = v2.Compose(ops)

    def __call__(self, *args: Any) -> Any:
        """Transforms ``args`` (images, masks, boxes) jointly; returns the same structure."""
        return self.transform(*args)


class DetConSTransform(MultiViewTransformV2):
    """The two DetCon-S views of an image and its segmentation mask (the first blurred, the second not).

    The mask is a regular grid (``grid_size``), made per image by ``mask_fn`` (e.g. a wrapped
    ``skimage.segmentation.felzenszwalb``; it must be picklable for DataLoader workers), or passed by the caller
    as a ``Mask`` after the image. ``grid_size`` and ``mask_fn`` exclude each other.

    Args:
        grid_size: ``(rows, cols)`` of the grid segmentation, or None.
        mask_fn: Image -> (H, W) or (1, H, W) integer labels, or None.
        gaussian_blur_t1: Blur probability of the first view.
        gaussian_blur_t2: Blur probability of the second view.
        (the others as :class:`DetConSViewTransform`.)
    """

    def __init__(
        self,
        grid_size: Optional[tuple[int, int]] = None,
        mask_fn: Optional[Callable[[Union[Image, Tensor]], Union[Image, Tensor]]] = None,
        gaussian_blur_t1: float = 1.0,
        gaussian_blur_t2: float = 0.0,
        input_size: Size = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.8,
        cj_hue: float = 0.2,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        kernel_size: tuple[float, float] = (23, 23),
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Union[float, tuple[float, float]] = 0.0,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        if grid_size is not None and mask_fn is not None:
            raise ValueError("DetConSTransform: `grid_size` and `mask_fn` are mutually exclusive; provide at most one.")
        self.grid_size = grid_size
        self.mask_fn = mask_fn
        common = dict(input_size=input_size, cj_prob=cj_prob, cj_strength=cj_strength, cj_bright=cj_bright,
                      cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue, min_scale=min_scale,
                      random_gray_scale=random_gray_scale, kernel_size=kernel_size, sigmas=sigmas, vf_prob=vf_prob,
                      hf_prob=hf_prob, rr_prob=rr_prob, rr_degrees=rr_degrees, normalize=normalize)  # fmt: skip
        views = []
        for blur in (gaussian_blur_t1, gaussian_blur_t2):
            grid = [AddGridTransform(num_rows=grid_size[0], num_cols=grid_size[1])] if grid_size is not None else []
            views.append(v2.Compose([*grid, DetConSViewTransform(gaussian_blur=blur, **common)]))
        super().__init__(views)

    def __call__(self, *args: Any) -> list[Any]:
        """Two views of ``args``: ``(image,)`` with ``mask_fn``, else ``(image, mask)`` (a placeholder ``Mask``
        of the image's size with ``grid_size``)."""
        if self.mask_fn is not None:
            image = args[0]
            mask = Mask(self.mask_fn(image))
            if mask.ndim == 2:  # segmenters return (H, W) labels; the grid path uses (1, H, W)
                mask = Mask(mask.unsqueeze(0))
            return super().__call__(image, mask)
        return super().__call__(*args)


class ImageGridTransform:
    """Views and grids of one image (Lightly's VICRegL building block): each ``(image_grid_transform,
    view_transform)`` pair makes one view and its grid; returns all views, then all grids.

    Args:
        transforms: ``(image_grid_transform, view_transform)`` pairs; the first returns ``(view, grid)`` (e.g.
            :class:`RandomResizedCropAndFlip`), the second augments the view.
    """

    def __init__(self, transforms: Any) -> None:
        self.transforms = transforms

    def __call__(self, image: Union[Tensor, Image]) -> Union[list[Tensor], list[Image]]:
        """``[view_1, ..., view_n, grid_1, ..., grid_n]``."""
        views, grids = [], []
        for image_grid_transform, view_transform in self.transforms:
            view, grid = image_grid_transform(image)
            views.append(view_transform(view))
            grids.append(grid)
        return views + grids
