"""Random image operations missing from torchvision (Lightly's GaussianBlur, RandomSolarization,
RandomRotate), working on PIL images and on tensors.

Randomness comes from torch's generator (not numpy as in Lightly) so that ``torch.manual_seed`` and
DataLoader worker seeding make whole pipelines reproducible.
"""

from __future__ import annotations

import math
from typing import Union

import torch
from PIL import ImageFilter, ImageOps
from PIL.Image import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

ImageInput = Union[Image, Tensor]


def _coin(prob: float) -> bool:
    return prob >= 1.0 or (prob > 0.0 and torch.rand(()).item() < prob)


class GaussianBlur:
    """Random Gaussian blur with a standard deviation drawn uniformly from ``sigmas``.

    PIL images use PIL's ``GaussianBlur(radius=sigma)`` (as Lightly); tensors are blurred natively with a
    Gaussian kernel of size ``2 * ceil(3 * sigma) + 1`` (capped by the image size).

    Args:
        prob: Probability of blurring.
        sigmas: ``(min, max)`` standard deviation in pixels.
    """

    def __init__(self, *, prob: float = 0.5, sigmas: tuple[float, float] = (0.2, 2)) -> None:
        self.prob = prob
        self.sigmas = sigmas

    def __call__(self, sample: ImageInput) -> ImageInput:
        """Blurs ``sample`` with probability ``prob``."""
        if not _coin(self.prob):
            return sample
        sigma = float(torch.empty(()).uniform_(self.sigmas[0], self.sigmas[1]))
        if isinstance(sample, Image):
            return sample.filter(ImageFilter.GaussianBlur(radius=sigma))
        # Reflect padding needs kernel_size // 2 < min(H, W).
        limit = 2 * min(sample.shape[-2:]) - 1
        k = min(2 * math.ceil(3 * sigma) + 1, limit if limit % 2 else limit - 1)
        return TF.gaussian_blur(sample, [k, k], [sigma, sigma])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prob={self.prob}, sigmas={self.sigmas})"


class RandomSolarization:
    """Inverts all pixel values ``>= threshold`` (on the 0..255 scale) with probability ``prob``.

    Args:
        prob: Probability of solarizing.
        threshold: Threshold on the uint8 scale (float images use ``threshold / 255``).
    """

    def __init__(self, prob: float = 0.5, threshold: int = 128) -> None:
        self.prob = prob
        self.threshold = threshold

    def __call__(self, sample: ImageInput) -> ImageInput:
        """Solarizes ``sample`` with probability ``prob``."""
        if not _coin(self.prob):
            return sample
        if isinstance(sample, Image):
            return ImageOps.solarize(sample, threshold=self.threshold)
        threshold = self.threshold / 255 if sample.is_floating_point() else self.threshold
        return TF.solarize(sample, threshold)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prob={self.prob}, threshold={self.threshold})"


class RandomRotate:
    """Rotates by the fixed ``angle`` (counter-clockwise, degrees) with probability ``prob``.

    Args:
        prob: Probability of rotating.
        angle: Rotation angle; multiples of 90 are lossless.
    """

    def __init__(self, prob: float = 0.5, angle: int = 90) -> None:
        self.prob = prob
        self.angle = angle

    def __call__(self, image: ImageInput) -> ImageInput:
        """Rotates ``image`` with probability ``prob``."""
        return TF.rotate(image, self.angle) if _coin(self.prob) else image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prob={self.prob}, angle={self.angle})"


class RandomRotateDegrees:
    """With probability ``prob`` rotates by a random angle from ``degrees`` (``(min, max)`` or ``±degrees``)."""

    def __init__(self, prob: float, degrees: float | tuple[float, float]) -> None:
        self.transform = v2.RandomApply([v2.RandomRotation(degrees=degrees)], p=prob)

    def __call__(self, image: ImageInput) -> ImageInput:
        """Rotates ``image`` with probability ``prob``."""
        return self.transform(image)


def random_rotation_transform(
    rr_prob: float, rr_degrees: float | tuple[float, float] | None
) -> RandomRotate | RandomRotateDegrees:
    """90-degree rotation when ``rr_degrees`` is None, else a random-angle rotation."""
    if rr_degrees is None:
        return RandomRotate(prob=rr_prob, angle=90)
    return RandomRotateDegrees(prob=rr_prob, degrees=rr_degrees)
