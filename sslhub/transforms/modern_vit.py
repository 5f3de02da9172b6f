"""Augmentations of iBOT, CAPI and I-JEPA with Lightly's names, arguments and defaults: ``IBOTTransform``,
``IBOTViewTransform``, ``CAPITransform``, ``IJEPATransform``.

As every sslhub pipeline they take a PIL image, a (3, H, W) tensor or a uint8 batch (N, 3, H, W) and return a
list of views. Differences from Lightly 1.6.0: ``cj_strength`` also reaches iBOT's second global view (Lightly
drops it there, so it stays at 0.5), and ``IJEPATransform`` returns a one-view list like ``MAETransform``
(Lightly's returns the tensor, for its mask collator).
"""

from __future__ import annotations

from typing import Union

from torchvision.transforms import v2

from sslhub.transforms.base import IMAGENET_NORMALIZE, MultiViewTransform, Normalize, ViewTransform
from sslhub.transforms.methods import _augment_ops
from sslhub.transforms.vit import MAETransform

__all__ = ["CAPITransform", "IBOTTransform", "IBOTViewTransform", "IJEPATransform"]

Size = Union[int, tuple[int, int]]


class IBOTViewTransform(ViewTransform):
    """One iBOT view: bicubic random resized crop, horizontal flip, colour jitter, grayscale, blur, solarisation.

    Args:
        crop_size: Output size in pixels.
        crop_scale: (min, max) crop area relative to the image.
        hf_prob: Probability of a horizontal flip.
        cj_prob: Probability of colour jitter.
        cj_strength: Multiplies ``cj_bright``, ``cj_contrast``, ``cj_sat`` and ``cj_hue``.
        cj_bright: Brightness jitter.
        cj_contrast: Contrast jitter.
        cj_sat: Saturation jitter.
        cj_hue: Hue jitter.
        random_gray_scale: Probability of grayscale.
        gaussian_blur: Probability of blurring.
        sigmas: (min, max) standard deviation of the blur.
        solarization_prob: Probability of solarisation.
        normalize: ``{"mean": [...], "std": [...]}`` or None.
    """

    def __init__(
        self,
        crop_size: int = 224,
        crop_scale: tuple[float, float] = (0.4, 1.0),
        hf_prob: float = 0.5,
        cj_prob: float = 0.8,
        cj_strength: float = 0.5,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.4,
        cj_hue: float = 0.2,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 1.0,
        sigmas: tuple[float, float] = (0.1, 2),
        solarization_prob: float = 0.2,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        crop = v2.RandomResizedCrop(size=crop_size, scale=crop_scale, interpolation=v2.InterpolationMode.BICUBIC)
        ops = _augment_ops(crop=crop, hf_prob=hf_prob, vf_prob=0.0, rr_prob=0.0, rr_degrees=None, cj_prob=cj_prob,
                           cj_strength=cj_strength, cj_bright=cj_bright, cj_contrast=cj_contrast, cj_sat=cj_sat,
                           cj_hue=cj_hue, random_gray_scale=random_gray_scale, gaussian_blur=gaussian_blur,
                           sigmas=sigmas, solarize_prob=solarization_prob)  # fmt: skip
        super().__init__(ops, normalize or None)


class IBOTTransform(MultiViewTransform):
    """iBOT multi-crop: two global views (blur 1.0 / 0.1, the second solarised) and ``n_local_views`` local views
    (10 by default), as DINO's with iBOT's crop scales."""

    def __init__(
        self,
        global_crop_size: int = 224,
        global_crop_scale: tuple[float, float] = (0.25, 1.0),
        local_crop_size: int = 96,
        local_crop_scale: tuple[float, float] = (0.05, 0.25),
        n_local_views: int = 10,
        hf_prob: float = 0.5,
        cj_prob: float = 0.8,
        cj_strength: float = 0.5,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.4,
        cj_hue: float = 0.2,
        random_gray_scale: float = 0.2,
        gaussian_blur: tuple[float, float, float] = (1.0, 0.1, 0.5),
        sigmas: tuple[float, float] = (0.1, 2),
        solarization_prob: float = 0.2,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        common = dict(hf_prob=hf_prob, cj_prob=cj_prob, cj_strength=cj_strength, cj_bright=cj_bright,
                      cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue, random_gray_scale=random_gray_scale,
                      sigmas=sigmas, normalize=normalize)  # fmt: skip
        global_0 = IBOTViewTransform(global_crop_size, global_crop_scale, gaussian_blur=gaussian_blur[0],
                                     solarization_prob=0.0, **common)  # fmt: skip
        global_1 = IBOTViewTransform(global_crop_size, global_crop_scale, gaussian_blur=gaussian_blur[1],
                                     solarization_prob=solarization_prob, **common)  # fmt: skip
        local = IBOTViewTransform(local_crop_size, local_crop_scale, gaussian_blur=gaussian_blur[2], solarization_prob=0.0,
                                  **common)  # fmt: skip
        super().__init__([global_0, global_1] + [local] * n_local_views)


class CAPITransform(MAETransform):
    """One CAPI view: as :class:`~sslhub.transforms.MAETransform` (bicubic random resized crop from ``min_scale``
    to 1, horizontal flip, normalisation) with ``min_scale=0.6``."""

    def __init__(self, input_size: Size = 224, min_scale: float = 0.6, normalize: Normalize = IMAGENET_NORMALIZE) -> None:
        super().__init__(input_size=input_size, min_scale=min_scale, normalize=normalize)


class IJEPATransform(MAETransform):
    """One I-JEPA view: bicubic random resized crop (``min_scale`` to 1), horizontal flip, normalisation."""

    def __init__(self, input_size: Size = 224, min_scale: float = 0.2, normalize: Normalize = IMAGENET_NORMALIZE) -> None:
        super().__init__(input_size=input_size, min_scale=min_scale, normalize=normalize)
