"""Per-method augmentation pipelines with Lightly's class names, arguments and defaults.

Each ``*ViewTransform`` returns one float view; each ``*Transform`` returns a list of views. All accept a
PIL image, a (3, H, W) tensor or a uint8 batch (N, 3, H, W) (views are then (N, 3, h, w)). Operations
whose probability is 0 are left out of the pipeline (they would be no-ops).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from torchvision.transforms import v2

from sslhub.transforms.base import (
    IMAGENET_NORMALIZE,
    MultiCropTranform,
    MultiViewTransform,
    Normalize,
    ViewTransform,
)
from sslhub.transforms.ops import GaussianBlur, RandomSolarization, random_rotation_transform

Degrees = Optional[Union[float, tuple[float, float]]]


def _kwargs(local_vars: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments from ``locals()`` (lets subclasses change defaults without repeating the wiring)."""
    return {k: v for k, v in local_vars.items() if k not in ("self", "__class__")}


_COMMON_ARGS = ("hf_prob", "vf_prob", "rr_prob", "rr_degrees", "cj_prob", "cj_strength", "cj_bright", "cj_contrast",
                "cj_sat", "cj_hue", "random_gray_scale", "gaussian_blur", "sigmas")  # fmt: skip


def _common_args(local_vars: dict[str, Any]) -> dict[str, Any]:
    """The arguments every view transform passes on to :func:`_augment_ops` unchanged (a KeyError on a typo)."""
    return {k: local_vars[k] for k in _COMMON_ARGS}


def _augment_ops(
    *,
    crop: Callable[[Any], Any] | None,
    hf_prob: float,
    vf_prob: float,
    rr_prob: float,
    rr_degrees: Degrees,
    cj_prob: float,
    cj_strength: float,
    cj_bright: float,
    cj_contrast: float,
    cj_sat: float,
    cj_hue: float,
    random_gray_scale: float,
    gaussian_blur: float,
    sigmas: tuple[float, float],
    solarize_prob: float = 0.0,
    solarize_before_blur: bool = False,
) -> list[Callable[[Any], Any]]:
    """The usual SSL recipe in Lightly's order: crop, flips, rotation, colour jitter, grayscale, blur/solarize."""
    ops: list[Callable[[Any], Any]] = [crop] if crop is not None else []
    if hf_prob > 0:
        ops.append(v2.RandomHorizontalFlip(p=hf_prob))
    if vf_prob > 0:
        ops.append(v2.RandomVerticalFlip(p=vf_prob))
    if rr_prob > 0:
        ops.append(random_rotation_transform(rr_prob=rr_prob, rr_degrees=rr_degrees))
    jitter = [cj_strength * v for v in (cj_bright, cj_contrast, cj_sat, cj_hue)]
    if cj_prob > 0 and any(jitter):
        ops.append(v2.RandomApply([v2.ColorJitter(*jitter)], p=cj_prob))
    if random_gray_scale > 0:
        ops.append(v2.RandomGrayscale(p=random_gray_scale))
    blur = GaussianBlur(prob=gaussian_blur, sigmas=sigmas) if gaussian_blur > 0 else None
    solarize = RandomSolarization(prob=solarize_prob) if solarize_prob > 0 else None
    ops += [op for op in ((solarize, blur) if solarize_before_blur else (blur, solarize)) if op is not None]
    return ops


def _rrc(size: int, min_scale: float, max_scale: float = 1.0, bicubic: bool = False) -> v2.RandomResizedCrop:
    mode = v2.InterpolationMode.BICUBIC if bicubic else v2.InterpolationMode.BILINEAR
    return v2.RandomResizedCrop(size=size, scale=(min_scale, max_scale), interpolation=mode)


class SimCLRViewTransform(ViewTransform):
    """One SimCLR view: random resized crop, flips, rotation, colour jitter, grayscale, blur, normalise."""

    def __init__(
        self,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.8,
        cj_hue: float = 0.2,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        ops = _augment_ops(crop=_rrc(input_size, min_scale), **_common_args(locals()))
        super().__init__(ops, normalize)


class DistillationTransform(MultiViewTransform):
    """One strongly augmented view, which teacher and student both see (LightlyTrain's distillation transform:
    crop scale 0.14-1, flips, colour jitter 0.8 x strength 0.5, grayscale 0.2, no blur to speak of)."""

    def __init__(self, input_size: int = 224, cj_prob: float = 0.8, cj_strength: float = 0.5, cj_bright: float = 0.8,
                 cj_contrast: float = 0.8, cj_sat: float = 0.4, cj_hue: float = 0.2, min_scale: float = 0.14,
                 random_gray_scale: float = 0.2, gaussian_blur: float = 0.0, hf_prob: float = 0.5,
                 normalize: Normalize = IMAGENET_NORMALIZE) -> None:  # fmt: skip
        view = SimCLRViewTransform(input_size=input_size, cj_prob=cj_prob, cj_strength=cj_strength, cj_bright=cj_bright,
                                   cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue, min_scale=min_scale,
                                   random_gray_scale=random_gray_scale, gaussian_blur=gaussian_blur, hf_prob=hf_prob,
                                   normalize=normalize)  # fmt: skip
        super().__init__([view])


class SimCLRTransform(MultiViewTransform):
    """Two SimCLR views (:class:`SimCLRViewTransform`); the same recipe serves SimCLR v1 and v2."""

    def __init__(
        self,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.8,
        cj_hue: float = 0.2,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        view = SimCLRViewTransform(**_kwargs(locals()))
        super().__init__([view, view])


class MoCoV1Transform(SimCLRTransform):
    """Two MoCo v1 views (SimCLR recipe with MoCo v1 defaults: no blur, strong hue)."""

    def __init__(
        self,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.4,
        cj_contrast: float = 0.4,
        cj_sat: float = 0.4,
        cj_hue: float = 0.4,
        min_scale: float = 0.2,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.0,
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        super().__init__(**_kwargs(locals()))


class MoCoV2Transform(SimCLRTransform):
    """Two MoCo v2 views (SimCLR recipe with MoCo v2 defaults)."""

    def __init__(
        self,
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
        super().__init__(**_kwargs(locals()))


class DenseCLTransform(MoCoV2Transform):
    """Two DenseCL views (identical to :class:`MoCoV2Transform`)."""


class SimSiamViewTransform(SimCLRViewTransform):
    """One SimSiam view (SimCLR recipe with SimSiam defaults)."""

    def __init__(
        self,
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
        super().__init__(**_kwargs(locals()))


class SimSiamTransform(MultiViewTransform):
    """Two SimSiam views (:class:`SimSiamViewTransform`)."""

    def __init__(
        self,
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
        view = SimSiamViewTransform(**_kwargs(locals()))
        super().__init__([view, view])


class VICRegViewTransform(ViewTransform):
    """One VICReg view: SimCLR recipe plus solarization (applied before the blur)."""

    def __init__(
        self,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 0.5,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.4,
        cj_hue: float = 0.2,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        solarize_prob: float = 0.1,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.2, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        ops = _augment_ops(crop=_rrc(input_size, min_scale), solarize_prob=solarize_prob, solarize_before_blur=True,
                           **_common_args(locals()))
        super().__init__(ops, normalize)


class VICRegTransform(MultiViewTransform):
    """Two VICReg views (:class:`VICRegViewTransform`)."""

    def __init__(
        self,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 0.5,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.4,
        cj_hue: float = 0.2,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        solarize_prob: float = 0.1,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        view = VICRegViewTransform(**_kwargs(locals()))
        super().__init__([view, view])


class _BYOLViewTransform(ViewTransform):
    """BYOL recipe: SimCLR recipe plus solarization after the blur."""

    def __init__(
        self,
        input_size: int,
        cj_prob: float,
        cj_strength: float,
        cj_bright: float,
        cj_contrast: float,
        cj_sat: float,
        cj_hue: float,
        min_scale: float,
        random_gray_scale: float,
        gaussian_blur: float,
        solarization_prob: float,
        sigmas: tuple[float, float],
        vf_prob: float,
        hf_prob: float,
        rr_prob: float,
        rr_degrees: Degrees,
        normalize: Normalize,
    ) -> None:
        ops = _augment_ops(crop=_rrc(input_size, min_scale), solarize_prob=solarization_prob,
                           **_common_args(locals()))
        super().__init__(ops, normalize)


class BYOLView1Transform(_BYOLViewTransform):
    """First BYOL view: always blurred, never solarized."""

    def __init__(
        self,
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
        super().__init__(**_kwargs(locals()))


class BYOLView2Transform(_BYOLViewTransform):
    """Second BYOL view: rarely blurred, sometimes solarized."""

    def __init__(
        self,
        input_size: int = 224,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.4,
        cj_contrast: float = 0.4,
        cj_sat: float = 0.2,
        cj_hue: float = 0.1,
        min_scale: float = 0.08,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.1,
        solarization_prob: float = 0.2,
        sigmas: tuple[float, float] = (0.1, 2),
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        super().__init__(**_kwargs(locals()))


class BYOLTransform(MultiViewTransform):
    """The two asymmetric BYOL views (defaults: :class:`BYOLView1Transform`, :class:`BYOLView2Transform`)."""

    def __init__(
        self,
        view_1_transform: Optional[BYOLView1Transform] = None,
        view_2_transform: Optional[BYOLView2Transform] = None,
    ) -> None:
        super().__init__([view_1_transform or BYOLView1Transform(), view_2_transform or BYOLView2Transform()])


class TiCoView1Transform(BYOLView1Transform):
    """First TiCo view (same as BYOL's)."""


class TiCoView2Transform(BYOLView2Transform):
    """Second TiCo view (same as BYOL's)."""


class TiCoTransform(BYOLTransform):
    """The two TiCo views (same as BYOL's)."""


class SwaVViewTransform(ViewTransform):
    """SwaV augmentation applied after the multi-crop (no crop of its own)."""

    def __init__(
        self,
        hf_prob: float = 0.5,
        vf_prob: float = 0.0,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.8,
        cj_hue: float = 0.2,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        ops = _augment_ops(crop=None, **_common_args(locals()))
        super().__init__(ops, normalize)


class SwaVTransform(MultiCropTranform):
    """SwaV multi-crop: ``crop_counts`` crops per size in ``crop_sizes`` (default 2 x 224 + 6 x 96)."""

    def __init__(
        self,
        crop_sizes: tuple[int, int] = (224, 96),
        crop_counts: tuple[int, int] = (2, 6),
        crop_min_scales: tuple[float, float] = (0.14, 0.05),
        crop_max_scales: tuple[float, float] = (1.0, 0.14),
        hf_prob: float = 0.5,
        vf_prob: float = 0.0,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        cj_prob: float = 0.8,
        cj_strength: float = 1.0,
        cj_bright: float = 0.8,
        cj_contrast: float = 0.8,
        cj_sat: float = 0.8,
        cj_hue: float = 0.2,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.5,
        sigmas: tuple[float, float] = (0.1, 2),
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        view = SwaVViewTransform(
            hf_prob=hf_prob,
            vf_prob=vf_prob,
            rr_prob=rr_prob,
            rr_degrees=rr_degrees,
            cj_prob=cj_prob,
            cj_strength=cj_strength,
            cj_bright=cj_bright,
            cj_contrast=cj_contrast,
            cj_sat=cj_sat,
            cj_hue=cj_hue,
            random_gray_scale=random_gray_scale,
            gaussian_blur=gaussian_blur,
            sigmas=sigmas,
            normalize=normalize,
        )
        super().__init__(crop_sizes, crop_counts, crop_min_scales, crop_max_scales, view)


class DINOViewTransform(ViewTransform):
    """One DINO view: bicubic random resized crop followed by the BYOL-style recipe."""

    def __init__(
        self,
        crop_size: int = 224,
        crop_scale: tuple[float, float] = (0.4, 1.0),
        hf_prob: float = 0.5,
        vf_prob: float = 0,
        rr_prob: float = 0,
        rr_degrees: Degrees = None,
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
        ops = _augment_ops(crop=_rrc(crop_size, crop_scale[0], crop_scale[1], bicubic=True), solarize_prob=solarization_prob,
                           **_common_args(locals()))
        super().__init__(ops, normalize)


class DINOTransform(MultiViewTransform):
    """DINO multi-crop: two global views (blur 1.0 / 0.1, the second one solarized) and ``n_local_views``
    local views. Unlike Lightly 1.6.0, ``cj_strength`` also reaches the second global view."""

    def __init__(
        self,
        global_crop_size: int = 224,
        global_crop_scale: tuple[float, float] = (0.4, 1.0),
        local_crop_size: int = 96,
        local_crop_scale: tuple[float, float] = (0.05, 0.4),
        n_local_views: int = 6,
        hf_prob: float = 0.5,
        vf_prob: float = 0,
        rr_prob: float = 0,
        rr_degrees: Degrees = None,
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
        common = dict(
            hf_prob=hf_prob,
            vf_prob=vf_prob,
            rr_prob=rr_prob,
            rr_degrees=rr_degrees,
            cj_prob=cj_prob,
            cj_strength=cj_strength,
            cj_bright=cj_bright,
            cj_contrast=cj_contrast,
            cj_sat=cj_sat,
            cj_hue=cj_hue,
            random_gray_scale=random_gray_scale,
            sigmas=sigmas,
            normalize=normalize,
        )
        global_0 = DINOViewTransform(
            crop_size=global_crop_size, crop_scale=global_crop_scale, gaussian_blur=gaussian_blur[0], solarization_prob=0, **common
        )
        global_1 = DINOViewTransform(
            crop_size=global_crop_size,
            crop_scale=global_crop_scale,
            gaussian_blur=gaussian_blur[1],
            solarization_prob=solarization_prob,
            **common,
        )
        local = DINOViewTransform(
            crop_size=local_crop_size, crop_scale=local_crop_scale, gaussian_blur=gaussian_blur[2], solarization_prob=0, **common
        )
        super().__init__([global_0, global_1] + [local] * n_local_views)
