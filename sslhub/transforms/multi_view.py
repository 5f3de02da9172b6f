"""Multi-view pipelines of the SimCLR/BYOL family with Lightly's names, arguments and defaults:
``MMCRTransform`` (k BYOL views), ``FastSiamTransform`` (K+1 SimSiam views), ``SMoGTransform`` /
``SmoGViewTransform`` (Lightly's spelling; multi-crop with per-group blur/solarization) and ``WMSETransform``.

Every view is a :class:`~sslhub.transforms.base.ViewTransform`, so like all sslhub pipelines they accept a PIL
image, a (3, H, W) tensor or a uint8 batch (N, 3, H, W), the batch running the vectorised engine with
per-sample randomness. Operations whose probability is 0 are left out of the pipeline (they would be no-ops).
"""

from __future__ import annotations

from torchvision.transforms import v2

from sslhub.transforms.base import IMAGENET_NORMALIZE, MultiViewTransform, Normalize, ViewTransform
from sslhub.transforms.methods import BYOLView1Transform, Degrees, SimSiamViewTransform, _augment_ops
from sslhub.transforms.ops import GaussianBlur

__all__ = ["FastSiamTransform", "MMCRTransform", "SMoGTransform", "SmoGViewTransform", "WMSETransform"]


class MMCRTransform(MultiViewTransform):
    """``k`` views of MMCR, each a :class:`~sslhub.transforms.BYOLView1Transform` (blurred, not solarized).

    Args:
        k: Number of views (>= 1).
        (the others as :class:`~sslhub.transforms.BYOLView1Transform`.)
    """

    def __init__(
        self,
        k: int = 8,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.4,
        cj_contrast: float = 0.4,
        cj_sat: float = 0.2,
        cj_hue: float = 0.1,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 1.0,
        solarization_prob: float = 0.0,
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        if k < 1:
            raise ValueError(f"MMCRTransform: k must be greater than or equal to 1, got {k}")
        view = BYOLView1Transform(
            input_size=input_size, cj_prob=cj_prob, cj_strength=cj_strength, cj_bright=cj_bright,
            cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue, min_scale=min_scale,
            random_gray_scale=random_gray_scale, gaussian_blur=gaussian_blur, solarization_prob=solarization_prob,
            sigmas=sigmas, vf_prob=vf_prob, hf_prob=hf_prob, rr_prob=rr_prob, rr_degrees=rr_degrees,
            normalize=normalize,
        )  # fmt: skip
        super().__init__([view] * k)


class FastSiamTransform(MultiViewTransform):
    """``num_views`` FastSiam views (K target views plus one), each a
    :class:`~sslhub.transforms.SimSiamViewTransform`.

    Args:
        num_views: Number of views.
        (the others as :class:`~sslhub.transforms.SimSiamViewTransform`.)
    """

    def __init__(
        self,
        num_views: int = 4,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.4,
        cj_contrast: float = 0.4,
        cj_sat: float = 0.4,
        cj_hue: float = 0.1,
        min_scale: float = 0.2,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        view = SimSiamViewTransform(
            input_size=input_size, cj_prob=cj_prob, cj_strength=cj_strength, cj_bright=cj_bright,
            cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue, min_scale=min_scale,
            random_gray_scale=random_gray_scale, gaussian_blur=gaussian_blur, sigmas=sigmas, vf_prob=vf_prob,
            hf_prob=hf_prob, rr_prob=rr_prob, rr_degrees=rr_degrees, normalize=normalize,
        )  # fmt: skip
        super().__init__([view] * num_views)


class SmoGViewTransform(ViewTransform):
    """One SMoG view: random resized crop, horizontal flip, colour jitter, grayscale, blur, solarization,
    normalisation (Lightly's class name, spelled ``SmoG``).

    Args:
        crop_size: Output size in pixels.
        crop_min_scale: Minimum crop area relative to the image.
        crop_max_scale: Maximum crop area relative to the image.
        gaussian_blur_prob: Probability of blurring.
        sigmas: ``(min, max)`` standard deviation of the blur.
        solarize_prob: Probability of solarization.
        hf_prob: Probability of a horizontal flip.
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
        crop_size: int = 224,
        crop_min_scale: float = 0.2,
        crop_max_scale: float = 1.0,
        gaussian_blur_prob: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        solarize_prob: float = 0.0,
        hf_prob: float = 0.5,
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
            crop=v2.RandomResizedCrop(crop_size, scale=(crop_min_scale, crop_max_scale)),
            hf_prob=hf_prob, vf_prob=0.0, rr_prob=0.0, rr_degrees=None, cj_prob=cj_prob, cj_strength=cj_strength,
            cj_bright=cj_bright, cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue,
            random_gray_scale=random_gray_scale, gaussian_blur=gaussian_blur_prob, sigmas=sigmas,
            solarize_prob=solarize_prob,
        )  # fmt: skip
        super().__init__(ops, normalize)


class SMoGTransform(MultiViewTransform):
    """SMoG multi-crop: ``crop_counts[i]`` views of size ``crop_sizes[i]`` (default 4 x 224 + 4 x 96), group ``i``
    blurred with probability ``gaussian_blur_probs[i]`` and solarized with ``solarize_probs[i]``.

    Args:
        crop_sizes: Output size of each crop group.
        crop_counts: Number of views of each group.
        crop_min_scales: Minimum crop area of each group.
        crop_max_scales: Maximum crop area of each group.
        gaussian_blur_probs: Blur probability of each group.
        gaussian_blur_sigmas: ``(min, max)`` standard deviation of the blur.
        solarize_probs: Solarization probability of each group.
        (the others as :class:`SmoGViewTransform`.)
    """

    def __init__(
        self,
        crop_sizes: tuple[int, int] = (224, 96),
        crop_counts: tuple[int, int] = (4, 4),
        crop_min_scales: tuple[float, float] = (0.2, 0.05),
        crop_max_scales: tuple[float, float] = (1.0, 0.2),
        gaussian_blur_probs: tuple[float, float] = (0.5, 0.1),
        gaussian_blur_sigmas: tuple[float, float] = (0.1, 2),
        solarize_probs: tuple[float, float] = (0.0, 0.2),
        hf_prob: float = 0.5,
        cj_prob: float = 1.0,
        cj_strength: float = 0.5,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.4,
        cj_hue: float = 0.2,
        random_gray_scale: float = 0.2,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        views: list[ViewTransform] = []
        for i, size in enumerate(crop_sizes):
            view = SmoGViewTransform(
                crop_size=size, crop_min_scale=crop_min_scales[i], crop_max_scale=crop_max_scales[i],
                gaussian_blur_prob=gaussian_blur_probs[i], sigmas=gaussian_blur_sigmas, solarize_prob=solarize_probs[i],
                hf_prob=hf_prob, cj_prob=cj_prob, cj_strength=cj_strength, cj_bright=cj_bright,
                cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue, random_gray_scale=random_gray_scale,
                normalize=normalize,
            )  # fmt: skip
            views.extend([view] * crop_counts[i])
        super().__init__(views)


class WMSETransform(MultiViewTransform):
    """``num_samples`` W-MSE views. Unlike the SimCLR recipe, colour jitter (no ``cj_strength``) and grayscale
    come before the bicubic random resized crop; then horizontal flip, blur and normalisation.

    Args:
        num_samples: Number of views (>= 1); must equal ``num_samples`` of ``WMSELoss``.
        input_size: Output size in pixels.
        cj_prob: Probability of colour jitter.
        cj_bright: Brightness jitter.
        cj_contrast: Contrast jitter.
        cj_sat: Saturation jitter.
        cj_hue: Hue jitter.
        min_scale: Minimum crop area relative to the image.
        random_gray_scale: Probability of grayscale.
        hf_prob: Probability of a horizontal flip.
        gaussian_blur: Probability of blurring.
        sigmas: ``(min, max)`` standard deviation of the blur.
        normalize: ``{"mean": [...], "std": [...]}`` (None skips normalisation; Lightly requires it).
    """

    def __init__(
        self,
        num_samples: int = 2,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_bright: float = 0.4,
        cj_contrast: float = 0.4,
        cj_sat: float = 0.4,
        cj_hue: float = 0.1,
        min_scale: float = 0.2,
        random_gray_scale: float = 0.1,
        hf_prob: float = 0.5,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2.0),
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"WMSETransform: num_samples must be greater than or equal to 1, got {num_samples}")
        ops: list = []
        if cj_prob > 0 and any((cj_bright, cj_contrast, cj_sat, cj_hue)):
            ops.append(v2.RandomApply([v2.ColorJitter(cj_bright, cj_contrast, cj_sat, cj_hue)], p=cj_prob))
        if random_gray_scale > 0:
            ops.append(v2.RandomGrayscale(p=random_gray_scale))
        ops.append(v2.RandomResizedCrop(input_size, scale=(min_scale, 1.0), interpolation=v2.InterpolationMode.BICUBIC))
        if hf_prob > 0:
            ops.append(v2.RandomHorizontalFlip(p=hf_prob))
        if gaussian_blur > 0:
            ops.append(GaussianBlur(prob=gaussian_blur, sigmas=sigmas))
        super().__init__([ViewTransform(ops, normalize)] * num_samples)
