"""Feature extraction with a model's own preprocessing (``pretrained_cfg`` mean/std)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sslhub.backbones.pretrained_cfg import DEFAULT_INTERPOLATION, default_crop_pct
from sslhub.data import DatasetError, ImageFolderDataset, collate_skip_invalid

logger = logging.getLogger(__name__)

__all__ = [
    "Features",
    "as_image_folder",
    "default_num_workers",
    "eval_transform",
    "data_config",
    "dataset_name_split",
    "extract_features",
    "model_input_size",
    "normalize_batch",
    "prepare_folder",
    "resize_size_for",
    "resolve_device",
]



@dataclass
class Features:
    """Features of a dataset, in dataset order (unreadable images left out)."""

    features: torch.Tensor  # (N, D) float32, CPU
    labels: torch.Tensor  # (N,) int64, -1 where unlabeled
    filenames: list[str]

    def __len__(self) -> int:
        return len(self.filenames)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_num_workers() -> int:
    """DataLoader workers: one per CPU core beyond the main process, at most 8 (:mod:`sslhub.utils.machine`)."""
    from sslhub.utils.machine import loader_settings

    return loader_settings("cpu").num_workers


def model_input_size(model: nn.Module, input_size: int | None) -> int:
    """``input_size`` if given, else the square size from the model's ``pretrained_cfg``.

    Raises:
        ValueError: neither says it (Lightly ResNetGenerator models have no fixed input size).
    """
    if input_size is not None:
        return int(input_size)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size")
    if size:
        return int(size[-1])
    raise ValueError(
        f"the model ({cfg.get('arch', type(model).__name__)}) has no fixed input size; pass input_size "
        "(--input-size), e.g. 32 for CIFAR-10 models or 224 for ImageNet models"
    )


def _crop_pct(model: nn.Module, input_size: int, crop_pct: float | None) -> float:
    if crop_pct is None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        # the declared crop belongs to the declared size; another size gets sslhub's default for that size
        declared = cfg.get("input_size")
        same = not declared or int(declared[-1]) == int(input_size) or cfg.get("family") == "timm"
        crop_pct = (cfg.get("crop_pct") if same else None) or default_crop_pct(input_size)
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return float(crop_pct)


def resize_size_for(model: nn.Module, input_size: int, crop_pct: float | None = None) -> int:
    """Size of the shorter side before the center crop: ``floor(input_size / crop_pct)`` (as timm computes it).

    ``crop_pct`` defaults to the model's ``pretrained_cfg['crop_pct']`` (timm's key), else 1.0 for inputs up to
    64 px (CIFAR-style benchmarks use the whole image) and 0.875 above.
    """
    return int(math.floor(input_size / _crop_pct(model, input_size, crop_pct)))


def _mean_std(model: nn.Module) -> tuple[list[float], list[float]]:
    from sslhub.backbones import IMAGENET_MEAN, IMAGENET_STD

    cfg = getattr(model, "pretrained_cfg", None) or {}
    return list(cfg.get("mean") or IMAGENET_MEAN), list(cfg.get("std") or IMAGENET_STD)


def _interpolation(model: nn.Module) -> Any:
    from torchvision.transforms import InterpolationMode

    name = (getattr(model, "pretrained_cfg", None) or {}).get("interpolation") or DEFAULT_INTERPOLATION
    try:
        return InterpolationMode(name)
    except ValueError:
        raise ValueError(f"pretrained_cfg['interpolation']={name!r} is not one of "
                         f"{[m.value for m in InterpolationMode]}") from None  # fmt: skip


def data_config(model: nn.Module, input_size: int | None = None, crop_pct: float | None = None) -> dict[str, Any]:
    """The evaluation preprocessing of ``model`` as timm's data config (the dict that
    ``timm.data.resolve_data_config`` returns and ``timm.data.create_transform(**cfg)`` takes).

    For a model from :func:`sslhub.load_pretrained` or :func:`sslhub.create_backbone` it equals
    ``timm.data.resolve_data_config(model=model)``, and :func:`eval_transform` applies exactly it.

    Args:
        model: a model with ``pretrained_cfg``.
        input_size: square crop size; default the model's (required when it has none, e.g. Lightly ResNets).
        crop_pct: center-crop fraction; default the model's, else sslhub's (1.0 up to 64 px, else 0.875).
    """
    size = model_input_size(model, input_size)
    mean, std = _mean_std(model)
    return {
        "input_size": (3, size, size),
        "interpolation": _interpolation(model).value,
        "mean": tuple(mean),
        "std": tuple(std),
        "crop_pct": _crop_pct(model, size, crop_pct),
        "crop_mode": "center",
    }


def eval_transform(model: nn.Module, input_size: int | None = None, crop_pct: float | None = None) -> Any:
    """The evaluation preprocessing of ``model`` for one PIL image or tensor: Resize, CenterCrop, Normalize,
    as declared in its ``pretrained_cfg`` (see :func:`data_config`), like torchvision's ``weights.transforms()``.

    :func:`extract_features` does the same, but resizes while decoding and normalizes whole batches on the
    device; use this transform for your own datasets.

    Example:
        >>> model = sslhub.load_pretrained("run/checkpoints/last.safetensors")   # doctest: +SKIP
        >>> batch = torch.stack([sslhub.eval_transform(model)(img) for img in images])  # doctest: +SKIP
    """
    from torchvision.transforms import v2

    size = model_input_size(model, input_size)
    mean, std = _mean_std(model)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize_size_for(model, size, crop_pct), interpolation=_interpolation(model), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def normalize_batch(model: nn.Module) -> Any:
    """Transform for a ``uint8`` batch ``(N, 3, H, W)`` on any device: scale to [0, 1], normalize."""
    from torchvision.transforms import v2

    mean, std = _mean_std(model)
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def as_image_folder(
    data: str | os.PathLike | ImageFolderDataset, *, classes: Sequence[str] | None = None
) -> ImageFolderDataset:
    """An :class:`ImageFolderDataset` for a folder path (or the dataset itself)."""
    if isinstance(data, ImageFolderDataset):
        if classes is not None and data.has_labels and list(data.classes) != list(classes):
            return ImageFolderDataset(data.root, classes=classes)  # re-index with the training label indices
        return data
    return ImageFolderDataset(data, classes=classes)


def prepare_folder(
    dataset: ImageFolderDataset, model: nn.Module, input_size: int, crop_pct: float | None = None
) -> ImageFolderDataset:
    """A copy of ``dataset`` yielding ``uint8`` evaluation crops for ``model`` (normalize with
    :func:`normalize_batch` on the device)."""
    from torchvision.transforms import v2

    # Decoding straight to the resize size is the fast path (torchvision.io, see sslhub.data.decode); the center
    # crop then matches Resize(resize) + CenterCrop(input_size) of eval_transform.
    resize = resize_size_for(model, input_size, crop_pct)
    interpolation = _interpolation(model)
    if interpolation.value != DEFAULT_INTERPOLATION:  # the fast decoder resizes bilinearly: do what the model says
        steps = [v2.ToImage(), v2.Resize(resize, interpolation=interpolation, antialias=True), v2.CenterCrop(input_size)]
        return dataset.copy(transform=v2.Compose(steps))
    return dataset.copy(decode_size=resize, transform=v2.CenterCrop(input_size))


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    dataset_or_dir: str | os.PathLike | Dataset,
    *,
    input_size: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    crop_pct: float | None = None,
    num_workers: int | None = None,
    desc: str = "features",
    progress: bool = True,
) -> Features:
    """Run ``model`` over a dataset and collect its features.

    Args:
        model: ``(N, 3, H, W) -> (N, D)`` feature extractor with ``pretrained_cfg`` (mean/std; ImageNet's if
            missing). Moved to ``device``; put in eval mode for the run, its mode restored afterwards.
        dataset_or_dir: an image folder (path or :class:`ImageFolderDataset`), preprocessed here with Resize +
            CenterCrop + Normalize; or any other dataset yielding ``(image, label[, filename])`` with images as
            ``uint8`` tensors of one size (normalized here) or float tensors ready for the model (used as is).
        input_size: crop size; default from ``pretrained_cfg``.
        batch_size: images per forward pass.
        device: default CUDA if available.
        crop_pct: see :func:`resize_size_for`.
        num_workers: DataLoader workers; default :func:`default_num_workers` (0 for small datasets).
        desc: progress-bar label.
        progress: show the progress bar.

    Returns:
        :class:`Features` on the CPU, float32.
    """
    dev = resolve_device(device)
    if isinstance(dataset_or_dir, (str, os.PathLike)) or isinstance(dataset_or_dir, ImageFolderDataset):
        folder = as_image_folder(dataset_or_dir)
        dataset: Dataset = prepare_folder(folder, model, model_input_size(model, input_size), crop_pct)
    else:
        dataset = dataset_or_dir
    n = len(dataset)  # type: ignore[arg-type]
    from sslhub.utils.machine import loader_settings

    # one pass: no persistent workers; none at all for a few batches (sslhub.utils.machine has the rule)
    settings = loader_settings(dev, num_workers=num_workers, items=n, batch_size=batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_skip_invalid,
                        **settings.kwargs())  # fmt: skip
    normalize = normalize_batch(model)
    model.to(dev)
    was_training = model.training
    model.eval()
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    names: list[str] = []
    try:
        for batch in tqdm(loader, desc=desc, unit="batch", leave=False,
                          **({} if progress else {"disable": True})):  # TQDM_DISABLE (-q) decides otherwise
            if batch is None:  # every image of this batch was unreadable
                continue
            images, targets = batch[0], batch[1]
            images = images.to(dev, non_blocking=True)
            if images.dtype == torch.uint8:
                images = normalize(images)
            out = model(images)
            feats.append(out.flatten(start_dim=1).float().cpu())
            labels.append(torch.as_tensor(targets, dtype=torch.long))
            if len(batch) > 2:
                names.extend(batch[2])
            else:
                names.extend(str(len(names) + i) for i in range(len(targets)))
    finally:
        model.train(was_training)
    if not feats:
        where = getattr(dataset, "root", "the dataset")
        raise DatasetError(f"no image of {where} could be decoded")
    return Features(torch.cat(feats), torch.cat(labels), names)


def dataset_name_split(path: str | os.PathLike) -> tuple[str, str]:
    """``(dataset, split)`` named after a ``<dataset>/<split>`` folder, e.g. ``("cifar10", "test")``."""
    p = Path(path).resolve()
    return p.parent.name, p.name
