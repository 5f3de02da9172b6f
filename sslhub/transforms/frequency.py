"""Frequency-domain augmentations of FDA with Lightly's names, arguments and defaults.

``RFFT2DTransform`` / ``IRFFT2DTransform`` move between pixels and the real 2D Fourier spectrum; on the
spectrum (complex, (C, H, W // 2 + 1)) act ``AmplitudeRescaleTransform``, ``PhaseShiftTransform``,
``RandomFrequencyMaskTransform`` and ``GaussianMixtureMask``. ``FDAView1Transform`` / ``FDAView2Transform`` /
``FDATransform`` chain them with the usual colour and geometry augmentations.

Every spectrum op also takes a batch (N, C, H, W // 2 + 1) with one set of random parameters per sample
(``supports_batches``: the vectorised engine of :mod:`sslhub.transforms.batched` calls them on whole batches).
On one spectrum they draw torch's random numbers exactly as Lightly does (except the frequency mask, whose
fraction Lightly draws from numpy), so seeded outputs agree.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sslhub.transforms.base import IMAGENET_NORMALIZE, MultiViewTransform, Normalize, ToTensor, ViewTransform
from sslhub.transforms.batched import to_device
from sslhub.transforms.methods import Degrees, _augment_ops

__all__ = [
    "AmplitudeRescaleTransform",
    "FDATransform",
    "FDAView1Transform",
    "FDAView2Transform",
    "GaussianMixtureMask",
    "IRFFT2DTransform",
    "PhaseShiftTransform",
    "RFFT2DTransform",
    "RandomFrequencyMaskTransform",
]


def _num_samples(freq_image: Tensor) -> tuple[int, bool]:
    """(number of spectra, whether the input is a batch) of a (C, H, W') or (N, C, H, W') spectrum."""
    if freq_image.ndim == 4:
        return freq_image.shape[0], True
    if freq_image.ndim == 3:
        return 1, False
    raise ValueError(f"expected a spectrum of shape (C, H, W) or (N, C, H, W), got {tuple(freq_image.shape)}")


def _uniform(shape: tuple[int, ...], low: float, high: float, device: torch.device) -> Tensor:
    """``torch.distributions.Uniform(low, high).sample(shape)``: the same random numbers (torch's CPU generator,
    as everywhere in sslhub's augmentations), sent to ``device`` without waiting for it."""
    return to_device(low + torch.rand(shape) * (high - low), device)


class RFFT2DTransform:
    """Pixels (..., H, W) -> real 2D spectrum (..., H, W // 2 + 1), ``torch.fft.rfft2``."""

    supports_batches = True

    def __call__(self, image: Tensor) -> Tensor:
        """Returns the complex spectrum of ``image`` (one image or a batch)."""
        return torch.fft.rfft2(image.as_subclass(Tensor))


class IRFFT2DTransform:
    """Real 2D spectrum -> pixels of size ``shape`` (H, W), ``torch.fft.irfft2``.

    Args:
        shape: Output size ``(H, W)``.
    """

    supports_batches = True

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape

    def __call__(self, freq_image: Tensor) -> Tensor:
        """Returns the real image (one image or a batch) of the spectrum ``freq_image``."""
        return torch.fft.irfft2(freq_image, s=self.shape)


def _polar(freq_image: Tensor) -> tuple[Tensor, Tensor]:
    # Lightly's formulas (not ``abs``/``angle``) so that the rounding agrees.
    return torch.sqrt(freq_image.real**2 + freq_image.imag**2), torch.atan2(freq_image.imag, freq_image.real)


class PhaseShiftTransform:
    """Adds a random phase ``theta`` drawn uniformly from ``range`` to the whole spectrum.

    Args:
        range: ``(min, max)`` of ``|theta|`` in radians.
        include_negatives: Shift by ``-theta`` with probability ``1 - sign_probability``.
        sign_probability: Probability of a positive shift when ``include_negatives``.
    """

    supports_batches = True

    def __init__(
        self, range: tuple[float, float] = (0.4, 0.7), include_negatives: bool = False, sign_probability: float = 0.5
    ) -> None:
        self.range = range
        self.include_negatives = include_negatives
        self.sign_probability = sign_probability

    def __call__(self, freq_image: Tensor) -> Tensor:
        """Returns the phase-shifted spectrum (one shift per spectrum of a batch)."""
        n, is_batch = _num_samples(freq_image)
        shape = (n, 1, 1, 1) if is_batch else ()
        theta = _uniform(shape, self.range[0], self.range[1], freq_image.device)
        if self.include_negatives:
            sign = to_device(torch.bernoulli(torch.full(shape, float(self.sign_probability))), freq_image.device)
            theta = torch.where(sign == 1, theta, -theta)
        amplitude, phase = _polar(freq_image)
        return torch.complex(amplitude * torch.cos(phase + theta), amplitude * torch.sin(phase + theta))


class AmplitudeRescaleTransform:
    """Multiplies the amplitude of every frequency (shared by the channels) by a factor drawn from ``range``.

    Args:
        range: ``(min, max)`` of the factor.
    """

    supports_batches = True

    def __init__(self, range: tuple[float, float] = (0.8, 1.75)) -> None:
        self.range = range

    def __call__(self, freq_image: Tensor) -> Tensor:
        """Returns the rescaled spectrum (independent factors per spectrum of a batch)."""
        n, is_batch = _num_samples(freq_image)
        hw = tuple(freq_image.shape[-2:])
        factor = _uniform((n, 1, *hw) if is_batch else (1, *hw), self.range[0], self.range[1], freq_image.device)
        amplitude, phase = _polar(freq_image)
        amplitude = amplitude * factor
        return torch.complex(amplitude * torch.cos(phase), amplitude * torch.sin(phase))


class RandomFrequencyMaskTransform:
    """Zeroes a random fraction ``k ~ U(k[0], k[1])`` of the frequencies (the same ones in every channel);
    the zero frequency is always kept.

    Unlike Lightly, ``k`` comes from torch's generator (drawn after the mask noise, so with ``k[0] == k[1]``
    seeded outputs equal Lightly's).

    Args:
        k: ``(min, max)`` fraction of masked frequencies.
    """

    supports_batches = True

    def __init__(self, k: tuple[float, float] = (0.01, 0.1)) -> None:
        self.k = k

    def __call__(self, fft_image: Tensor) -> Tensor:
        """Returns the masked spectrum (an independent mask per spectrum of a batch)."""
        n, is_batch = _num_samples(fft_image)
        hw = tuple(fft_image.shape[-2:])
        noise = to_device(torch.rand((n, *hw) if is_batch else hw), fft_image.device)
        lo, hi = self.k
        k = lo if lo == hi else _uniform((n, 1, 1) if is_batch else (), lo, hi, fft_image.device)
        mask = noise > k
        mask[..., 0, 0] = True  # the zero frequency carries most of the image's content
        return fft_image * mask.unsqueeze(-3)


class GaussianMixtureMask:
    """Multiplies the spectrum by ``prod_i (1 - g_i)`` for ``num_gaussians`` random axis-aligned Gaussians
    ``g_i`` (centre uniform over the spectrum, standard deviations uniform in ``std_range``, in frequency bins).

    Args:
        num_gaussians: Number of Gaussians.
        std_range: ``(min, max)`` standard deviation.
    """

    supports_batches = True

    def __init__(self, num_gaussians: int = 20, std_range: tuple[float, float] = (10, 15)) -> None:
        self.num_gaussians = num_gaussians
        self.std_range = std_range

    def __call__(self, freq_image: Tensor) -> Tensor:
        """Returns the masked spectrum (independent Gaussians per spectrum of a batch)."""
        n, is_batch = _num_samples(freq_image)
        u_size, v_size = freq_image.shape[-2:]
        lo, hi = self.std_range
        if is_batch:
            centres_u = torch.randint(0, u_size, (n, self.num_gaussians))
            centres_v = torch.randint(0, v_size, (n, self.num_gaussians))
            sigmas = torch.rand(n, self.num_gaussians, 2) * (hi - lo) + lo
        else:  # Lightly's order of draws: u, v, then the two sigmas, Gaussian after Gaussian
            draws = [(torch.randint(0, u_size, (1,)), torch.randint(0, v_size, (1,)), torch.rand(2) * (hi - lo) + lo)
                     for _ in range(self.num_gaussians)]  # fmt: skip
            centres_u = torch.cat([d[0] for d in draws]).view(1, -1)
            centres_v = torch.cat([d[1] for d in draws]).view(1, -1)
            sigmas = torch.stack([d[2] for d in draws]).view(1, -1, 2)
        device = freq_image.device
        centres_u, centres_v, sigmas = (to_device(t, device) for t in (centres_u, centres_v, sigmas))
        u = torch.arange(u_size, device=device).view(1, -1, 1)
        v = torch.arange(v_size, device=device).view(1, 1, -1)
        mask = torch.ones(n, u_size, v_size, device=device)
        for i in range(self.num_gaussians):  # one (N, U, V) map at a time keeps memory at one mask
            du = (u - centres_u[:, i].view(-1, 1, 1)) ** 2 / (2 * sigmas[:, i, 0].view(-1, 1, 1) ** 2)
            dv = (v - centres_v[:, i].view(-1, 1, 1)) ** 2 / (2 * sigmas[:, i, 1].view(-1, 1, 1) ** 2)
            mask = mask * (1 - torch.exp(-(du + dv)))
        mask = mask.unsqueeze(1)  # shared by the channels
        return freq_image * (mask if is_batch else mask[0])


class _ToClampedImage:
    """After the inverse FFT: pixels clamped to [0, 1]; a PIL image for one image, a float batch for a batch.

    Lightly converts with ``ToPILImage``, which wraps out-of-range values around modulo 256 (a pixel at 1.2
    becomes 50/255); clamping keeps them at the nearest valid value instead.
    """

    supports_batches = True

    def __call__(self, image: Tensor) -> Any:
        image = image.clamp(0.0, 1.0)
        return image if image.ndim == 4 else TF.to_pil_image(image)


def _fda_ops(
    input_size: int,
    min_scale: float,
    ampl_rescale_range: tuple[float, float],
    ampl_rescale_prob: float,
    phase_shift_range: tuple[float, float],
    phase_shift_prob: float,
    rand_freq_mask_range: tuple[float, float],
    rand_freq_mask_prob: float,
    gmm_num_gaussians: int,
    gmm_std_range: tuple[float, float],
    gmm_prob: float,
) -> list[Any]:
    """Crop, then the spectrum augmentations between an FFT and an inverse FFT (Lightly's order)."""
    spectral = [
        (ampl_rescale_prob, AmplitudeRescaleTransform(range=ampl_rescale_range)),
        (phase_shift_prob, PhaseShiftTransform(range=phase_shift_range)),
        (rand_freq_mask_prob, RandomFrequencyMaskTransform(k=rand_freq_mask_range)),
        (gmm_prob, GaussianMixtureMask(num_gaussians=gmm_num_gaussians, std_range=gmm_std_range)),
    ]
    return [
        v2.RandomResizedCrop(size=input_size, scale=(min_scale, 1.0)),
        ToTensor(),
        RFFT2DTransform(),
        *[v2.RandomApply([op], p=p) for p, op in spectral if p > 0],
        IRFFT2DTransform(shape=(input_size, input_size)),
        _ToClampedImage(),
    ]


class FDAView1Transform(ViewTransform):
    """First FDA view: random resized crop, frequency-domain augmentations (amplitude rescale, phase shift,
    frequency mask, Gaussian mixture mask), then flips, rotation, colour jitter, grayscale, blur (always),
    solarization and normalisation.

    Unlike Lightly 1.6.0, pixels leaving [0, 1] after the inverse FFT are clamped, not wrapped modulo 256.

    Args:
        input_size: Output size in pixels.
        min_scale: Minimum crop area relative to the image.
        cj_prob: Probability of colour jitter.
        cj_contrast: Contrast jitter.
        cj_bright: Brightness jitter.
        cj_sat: Saturation jitter.
        cj_hue: Hue jitter.
        cj_strength: Multiplies the four jitter amounts.
        random_gray_scale: Probability of grayscale.
        gaussian_blur: Probability of blurring.
        sigmas: ``(min, max)`` standard deviation of the blur.
        ampl_rescale_range: ``(min, max)`` amplitude factor.
        ampl_rescale_prob: Probability of amplitude rescaling.
        phase_shift_range: ``(min, max)`` phase shift in radians.
        phase_shift_prob: Probability of a phase shift.
        rand_freq_mask_range: ``(min, max)`` fraction of masked frequencies.
        rand_freq_mask_prob: Probability of frequency masking.
        gmm_num_gaussians: Number of Gaussians of the mixture mask.
        gmm_std_range: ``(min, max)`` standard deviation of those Gaussians, in frequency bins.
        gmm_prob: Probability of the Gaussian mixture mask.
        solarization_prob: Probability of solarization.
        vf_prob: Probability of a vertical flip.
        hf_prob: Probability of a horizontal flip.
        rr_prob: Probability of a rotation.
        rr_degrees: None for 90-degree rotations, else the random angle range.
        normalize: ``{"mean": [...], "std": [...]}`` or None to skip normalisation.
    """

    def __init__(
        self,
        input_size: int = 224,
        min_scale: float = 0.08,
        cj_prob: float = 0.8,
        cj_contrast: float = 0.4,
        cj_bright: float = 0.4,
        cj_sat: float = 0.2,
        cj_hue: float = 0.1,
        cj_strength: float = 1.0,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 1.0,
        sigmas: tuple[float, float] = (0.1, 2),
        ampl_rescale_range: tuple[float, float] = (0.8, 1.75),
        ampl_rescale_prob: float = 0.2,
        phase_shift_range: tuple[float, float] = (0.4, 0.7),
        phase_shift_prob: float = 0.2,
        rand_freq_mask_range: tuple[float, float] = (0.01, 0.1),
        rand_freq_mask_prob: float = 0.5,
        gmm_num_gaussians: int = 20,
        gmm_std_range: tuple[float, float] = (10, 15),
        gmm_prob: float = 0.2,
        solarization_prob: float = 0.0,
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        ops = _fda_ops(input_size, min_scale, ampl_rescale_range, ampl_rescale_prob, phase_shift_range,
                       phase_shift_prob, rand_freq_mask_range, rand_freq_mask_prob, gmm_num_gaussians,
                       gmm_std_range, gmm_prob)  # fmt: skip
        ops += _augment_ops(
            crop=None, hf_prob=hf_prob, vf_prob=vf_prob, rr_prob=rr_prob, rr_degrees=rr_degrees, cj_prob=cj_prob,
            cj_strength=cj_strength, cj_bright=cj_bright, cj_contrast=cj_contrast, cj_sat=cj_sat, cj_hue=cj_hue,
            random_gray_scale=random_gray_scale, gaussian_blur=gaussian_blur, sigmas=sigmas,
            solarize_prob=solarization_prob,
        )  # fmt: skip
        super().__init__(ops, normalize)


class FDAView2Transform(FDAView1Transform):
    """Second FDA view: as :class:`FDAView1Transform`, rarely blurred and without the Gaussian mixture mask."""

    def __init__(
        self,
        input_size: int = 224,
        min_scale: float = 0.08,
        cj_prob: float = 0.8,
        cj_contrast: float = 0.4,
        cj_bright: float = 0.4,
        cj_sat: float = 0.2,
        cj_hue: float = 0.1,
        cj_strength: float = 1.0,
        random_gray_scale: float = 0.2,
        gaussian_blur: float = 0.1,
        sigmas: tuple[float, float] = (0.1, 2),
        ampl_rescale_range: tuple[float, float] = (0.8, 1.75),
        ampl_rescale_prob: float = 0.2,
        phase_shift_range: tuple[float, float] = (0.4, 0.7),
        phase_shift_prob: float = 0.2,
        rand_freq_mask_range: tuple[float, float] = (0.01, 0.1),
        rand_freq_mask_prob: float = 0.5,
        gmm_num_gaussians: int = 20,
        gmm_std_range: tuple[float, float] = (10, 15),
        gmm_prob: float = 0.0,
        solarization_prob: float = 0.0,
        vf_prob: float = 0.0,
        hf_prob: float = 0.5,
        rr_prob: float = 0.0,
        rr_degrees: Degrees = None,
        normalize: Normalize = IMAGENET_NORMALIZE,
    ) -> None:
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(**kwargs)


class FDATransform(MultiViewTransform):
    """The two FDA views (defaults: :class:`FDAView1Transform`, :class:`FDAView2Transform`)."""

    def __init__(
        self,
        view_1_transform: Optional[FDAView1Transform] = None,
        view_2_transform: Optional[FDAView2Transform] = None,
    ) -> None:
        super().__init__([view_1_transform or FDAView1Transform(), view_2_transform or FDAView2Transform()])

