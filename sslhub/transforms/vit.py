"""Augmentations of the masked-modelling / transformer methods with Lightly's names, arguments and defaults:
``MAETransform``, ``AIMTransform``, ``MSNTransform`` and ``MSNViewTransform`` (``DINOTransform`` lives in
:mod:`sslhub.transforms.methods`).

Like every sslhub pipeline they accept a PIL image, a (3, H, W) tensor or a uint8 batch (N, 3, H, W) with
per-sample randomness. Operations with probability 0 are left out (they would be no-ops).
"""

from __future__ import annotations

from typing import Union

from torchvision.transforms import v2

from sslhub.transforms.base import IMAGENET_NORMALIZE, MultiViewTransform, Normalize, ViewTransform
from sslhub.transforms.methods import _augment_ops, _common_args

__all__ = ["AIMTransform", "MAETransform", "MSNTransform", "MSNViewTransform"]

Size = Union[int, tuple[int, int]]


class MAETransform(MultiViewTransform):
    """One view for MAE: bicubic random resized crop, horizontal flip, normalisation.

    Args:
        input_size: Output size in pixels.
        min_scale: Minimum crop area relative to the image.
        normalize: ``{"mean": [...], "std": [...]}`` or None to skip normalisation.
    """

    def __init__(self, input_size: Size = 224, min_scale: float = 0.2, normalize: Normalize = IMAGENET_NORMALIZE) -> None:
        crop = v2.RandomResizedCrop(input_size, scale=(min_scale, 1.0), interpolation=v2.InterpolationMode.BICUBIC)
        self.transform = ViewTransform([crop, v2.RandomHorizontalFlip()], normalize or None)
        super().__init__([self.transform])


class AIMTransform(MAETransform):
    """One view for AIM: as :class:`MAETransform` with ``min_scale=0.4``."""

    def __init__(self, input_size: Size = 224, min_scale: float = 0.4, normalize: Normalize = IMAGENET_NORMALIZE) -> None:
        super().__init__(input_size=input_size, min_scale=min_scale, normalize=normalize)


class MSNViewTransform(ViewTransform):
    """One MSN view: random resized crop, flips, colour jitter, grayscale, Gaussian blur, normalisation.

    Args:
        crop_size: Output size in pixels.
        crop_scale: (min, max) crop area relative to the image.
        cj_prob: Probability of colour jitter.
        cj_strength: Multiplies ``cj_bright``, ``cj_contrast``, ``cj_sat`` and ``cj_hue``.
        cj_bright: Brightness jitter.
        cj_contrast: Contrast jitter.
        cj_sat: Saturation jitter.
        cj_hue: Hue jitter.
        gaussian_blur: Probability of blurring.
        sigmas: (min, max) standard deviation of the blur.
        random_gray_scale: Probability of grayscale.
        hf_prob: Probability of a horizontal flip.
        vf_prob: Probability of a vertical flip.
        normalize: ``{"mean": [...], "std": [...]}``.
    """

    def __init__(
        self,
        crop_size: int = 224,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.8,
        cj_hue: float = 0.2,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        random_gray_scale: float = 0.2,
        hf_prob: float = 0.5,
        vf_prob: float = 0.0,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        rr_prob, rr_degrees = 0.0, None  # MSN views never rotate
        ops = _augment_ops(crop=v2.RandomResizedCrop(size=crop_size, scale=crop_scale), **_common_args(locals()))
        super().__init__(ops, normalize)


class MSNTransform(MultiViewTransform):
    """MSN views: ``random_views`` large views (the first is the target, the others anchors) followed by
    ``focal_views`` small anchor views; 12 by default.

    Args:
        random_size: Size of the random views.
        focal_size: Size of the focal views.
        random_views: Number of random views.
        focal_views: Number of focal views.
        random_crop_scale: Crop area range of the random views.
        focal_crop_scale: Crop area range of the focal views.
        (the others as :class:`MSNViewTransform`; as in Lightly, the focal views use the default
        ``cj_bright``/``cj_contrast``/``cj_sat``/``cj_hue``.)
    """

    def __init__(
        self,
        random_size: int = 224,
        focal_size: int = 96,
        random_views: int = 2,
        focal_views: int = 10,
        random_crop_scale: tuple[float, float] = (0.3, 1.0),
        focal_crop_scale: tuple[float, float] = (0.05, 0.3),
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.8,
        cj_hue: float = 0.2,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        random_gray_scale: float = 0.2,
        hf_prob: float = 0.5,
        vf_prob: float = 0.0,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        common = dict(cj_prob=cj_prob, cj_strength=cj_strength, gaussian_blur=gaussian_blur, sigmas=sigmas,
                      random_gray_scale=random_gray_scale, hf_prob=hf_prob, vf_prob=vf_prob, normalize=normalize)  # fmt: skip
        random_view = MSNViewTransform(crop_size=random_size, crop_scale=random_crop_scale, cj_bright=cj_bright,
                                       cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue, **common)  # fmt: skip
        focal_view = MSNViewTransform(crop_size=focal_size, crop_scale=focal_crop_scale, **common)
        super().__init__([random_view] * random_views + [focal_view] * focal_views)
