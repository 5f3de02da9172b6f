"""Vectorised execution of augmentation pipelines on image batches, with per-sample randomness.

The op objects of a pipeline (torchvision v2 transforms plus :mod:`sslhub.transforms.ops`) stay the
single definition of the augmentation: PIL images run them directly, while :func:`apply_batched`
interprets them on a float batch (N, C, H, W) in [0, 1] with one set of random parameters per sample,
drawn from torch's CPU generator (reproducible with ``torch.manual_seed`` on any device). Unknown ops fall
back to a per-sample loop on float images in [0, 1]; ops with ``supports_batches = True`` are called on the
whole batch (they draw one set of parameters per sample themselves). RGB input is assumed.

On a GPU nothing here waits for the device: random parameters, masks and index sets are made on the CPU and
sent with non-blocking copies from pinned memory (a copy from pageable memory, a ``nonzero`` or an ``.item()``
on a device tensor would each stall the host until the GPU has drained its queue, so the host could not queue
the next kernels while the GPU works).

Differences to the per-image path: crops are resampled with ``roi_align`` (bilinear; downscaling averages
several samples per output pixel instead of torchvision's antialias filter), the blur uses one kernel
size per batch, and intermediate results are not rounded to uint8.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import roi_align
from torchvision.transforms import v2

from sslhub.transforms.ops import GaussianBlur, RandomRotate, RandomSolarization

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's luma weights


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """``t`` (made on the CPU) on ``device`` without making the host wait for the device."""
    if device.type == "cpu":
        return t
    if device.type != "cuda":
        return t.to(device)  # other accelerators: a plain copy (pinning is CUDA's)
    return t.pin_memory().to(device, non_blocking=True)  # the caching host allocator keeps it alive until copied


def _coin(n: int, p: float, device: torch.device) -> Tensor:
    """Per-sample booleans on ``device``, true with probability ``p``."""
    return to_device(torch.rand(n) < p, device)


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def _gray(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def _crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]) -> Tensor:
    """Vectorised ``RandomResizedCrop.make_params``: 10 attempts per sample, same distribution."""
    area = height * width
    target = area * torch.empty(n, 10).uniform_(scale[0], scale[1])
    aspect = torch.exp(torch.empty(n, 10).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(dim=1, keepdim=True)  # first successful attempt
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], ok.any(dim=1)
    # Fallback (no attempt fits): central crop clamped to the ratio range.
    in_ratio = width / height
    fw, fh = float(width), float(height)
    if in_ratio < min(ratio):
        fh = float(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw = float(round(height * max(ratio)))
    w = torch.where(found, w, torch.tensor(fw))
    h = torch.where(found, h, torch.tensor(fh))
    top = torch.where(found, (torch.rand(n) * (height - h + 1)).floor(), ((height - h) // 2))
    left = torch.where(found, (torch.rand(n) * (width - w + 1)).floor(), ((width - w) // 2))
    return torch.stack([left, top, left + w, top + h], dim=1)


def crop_boxes(x: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Crops box ``i`` (``left, top, right, bottom`` in pixels, on the CPU) of sample ``i`` and resizes it to
    ``size`` (bilinear)."""
    n = x.shape[0]
    rois = to_device(torch.cat([torch.arange(n, dtype=boxes.dtype)[:, None], boxes], dim=1).to(x.dtype), x.device)
    # aligned=True: box edges are pixel edges, so an uncropped, unresized image is returned exactly.
    return roi_align(x, rois, output_size=tuple(size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def random_crop_boxes(x: Tensor, op: v2.RandomResizedCrop) -> Tensor:
    """One random box per sample of ``x`` with ``op``'s scale and ratio: (N, 4) ``left, top, right, bottom``."""
    n, _, height, width = x.shape
    return _crop_boxes(n, height, width, tuple(op.scale), tuple(op.ratio))


def resized_crop(x: Tensor, op: v2.RandomResizedCrop) -> Tensor:
    """Per-sample random resized crop of a float batch."""
    return crop_boxes(x, random_crop_boxes(x, op), tuple(op.size))


def _hue(x: Tensor, factor: Tensor) -> Tensor:
    """Per-sample hue rotation in HSV space (matches ``TF.adjust_hue`` on float images)."""
    maxc, argmax = x.max(dim=1)
    minc = x.min(dim=1).values
    delta = maxc - minc
    r, g, b = x.unbind(1)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(argmax == 0, (g - b) / safe, torch.where(argmax == 1, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = (hue / 6 + factor.view(-1, 1, 1)).remainder(1.0)
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    # HSV -> RGB: channel value = v - v * s * clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6, n = 5, 3, 1.
    n_rgb = torch.arange(5.0, 0.0, -2.0, dtype=x.dtype, device=x.device)  # 5, 3, 1, made on the device: no copy
    k = (n_rgb.view(1, 3, 1, 1) + 6 * hue.unsqueeze(1)).remainder(6)
    return maxc.unsqueeze(1) * (1 - sat.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1))


def _blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    ratio = ratio.view(-1, 1, 1, 1)
    return (ratio * a + (1 - ratio) * b).clamp(0.0, 1.0)


def color_jitter(x: Tensor, jitter: v2.ColorJitter, p: float = 1.0) -> Tensor:
    """Per-sample ``ColorJitter`` (random factors and random order of the four adjustments), applied with
    probability ``p``."""
    n, device = x.shape[0], x.device
    # Masks, permutations and index sets stay on the CPU (see the module docstring); factors go to the device.
    apply = torch.rand(n) < p if p < 1 else torch.ones(n, dtype=torch.bool)
    order = torch.rand(n, 4).argsort(dim=1)  # a random permutation per sample

    def factors(rng: Any) -> Tensor | None:
        return None if rng is None else to_device(torch.empty(n).uniform_(rng[0], rng[1]), device)

    params = [factors(jitter.brightness), factors(jitter.contrast), factors(jitter.saturation), factors(jitter.hue)]
    adjust: list[Callable[[Tensor, Tensor], Tensor]] = [
        lambda t, f: (t * f.view(-1, 1, 1, 1)).clamp(0.0, 1.0),
        lambda t, f: _blend(t, _gray(t).mean(dim=(1, 2, 3), keepdim=True), f),
        lambda t, f: _blend(t, _gray(t), f),
        _hue,
    ]
    for position in range(4):
        for fn_id, (fn, f) in enumerate(zip(adjust, params)):
            if f is None:
                continue
            idx = torch.nonzero(apply & (order[:, position] == fn_id)).flatten()
            if idx.numel():
                idx = to_device(idx, device)
                x = x.index_copy(0, idx, fn(x[idx], f[idx]))
    return x


def gaussian_blur(x: Tensor, op: GaussianBlur) -> Tensor:
    """Per-sample Gaussian blur (probability and sigma per sample; one kernel size for the batch)."""
    n, c, height, width = x.shape
    idx = torch.nonzero(torch.rand(n) < op.prob).flatten() if op.prob < 1 else torch.arange(n)
    if idx.numel() == 0:
        return x
    idx = to_device(idx, x.device)
    sigma_cpu = torch.empty(idx.numel()).uniform_(op.sigmas[0], op.sigmas[1])
    sigma = to_device(sigma_cpu.to(x.dtype), x.device)
    limit = 2 * min(height, width) - 1  # reflect padding needs radius < size
    size = min(2 * math.ceil(3 * float(sigma_cpu.max())) + 1, limit if limit % 2 else limit - 1)
    radius = size // 2
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (m * c, size)
    m = idx.numel()
    y = F.pad(x[idx].reshape(1, m * c, height, width), [radius] * 4, mode="reflect")
    y = F.conv2d(y, kernel.view(m * c, 1, 1, size), groups=m * c)
    y = F.conv2d(y, kernel.view(m * c, 1, size, 1), groups=m * c)
    return x.index_copy(0, idx, y.view(m, c, height, width))


def _per_sample(op: Callable[[Any], Any], x: Tensor) -> Tensor:
    """Fallback for ops without a batched implementation."""
    return torch.stack([torch.as_tensor(op(img)).as_subclass(Tensor) for img in x])


def _random_apply(op: v2.RandomApply, x: Tensor) -> Tensor:
    """``RandomApply`` of batch-aware ops: each sample is transformed with probability ``op.p``."""
    idx = torch.nonzero(torch.rand(x.shape[0]) < op.p).flatten() if op.p < 1 else torch.arange(x.shape[0])
    if idx.numel() == 0:
        return x
    idx = to_device(idx, x.device)
    y = x[idx]
    for t in op.transforms:
        y = t(y)
    return x.index_copy(0, idx, y)


def _apply_op(op: Any, x: Tensor) -> Tensor:
    n = x.shape[0]
    if getattr(op, "supports_batches", False):  # draws its own per-sample parameters (e.g. Fourier-domain ops)
        return op(x)
    if isinstance(op, v2.RandomApply) and all(getattr(t, "supports_batches", False) for t in op.transforms):
        return _random_apply(op, x)
    if isinstance(op, v2.RandomResizedCrop):
        return resized_crop(x, op)
    if isinstance(op, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)):
        dim = -1 if isinstance(op, v2.RandomHorizontalFlip) else -2
        return _where(_coin(n, op.p, x.device), x.flip(dim), x)
    if isinstance(op, RandomRotate) and op.angle % 90 == 0 and (x.shape[-1] == x.shape[-2] or op.angle % 180 == 0):
        return _where(_coin(n, op.prob, x.device), torch.rot90(x, op.angle // 90, dims=(-2, -1)), x)
    if isinstance(op, v2.ColorJitter):
        return color_jitter(x, op)
    if isinstance(op, v2.RandomApply) and len(op.transforms) == 1 and isinstance(op.transforms[0], v2.ColorJitter):
        return color_jitter(x, op.transforms[0], p=op.p)
    if isinstance(op, v2.RandomGrayscale):
        return _where(_coin(n, op.p, x.device), _gray(x).expand_as(x), x)
    if isinstance(op, GaussianBlur):
        return gaussian_blur(x, op)
    if isinstance(op, RandomSolarization):
        solarized = torch.where(x >= op.threshold / 255, 1.0 - x, x)
        return _where(_coin(n, op.prob, x.device), solarized, x)
    if isinstance(op, v2.Compose):
        return apply_batched(op.transforms, x)
    return _per_sample(op, x)


def apply_batched(ops: list[Callable[[Any], Any]], x: Tensor) -> Tensor:
    """Runs ``ops`` on a float batch (N, C, H, W) in [0, 1]; every sample gets its own random parameters."""
    for op in ops:
        x = _apply_op(op, x)
    return x


__all__ = ["apply_batched", "color_jitter", "crop_boxes", "gaussian_blur", "random_crop_boxes", "resized_crop"]
