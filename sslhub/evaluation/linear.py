"""Linear probe: a linear classifier trained on frozen features, extracted once and cached in memory."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from sslhub.evaluation.features import (
    as_image_folder,
    dataset_name_split,
    extract_features,
    model_input_size,
    resize_size_for,
    resolve_device,
)
from sslhub.evaluation.results import check_labels, make_result, topk_accuracy

logger = logging.getLogger(__name__)

__all__ = ["linear_eval", "linear_probe"]


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    val_features: Tensor,
    val_labels: Tensor,
    *,
    num_classes: int | None = None,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    topk: Sequence[int] = (1, 5),
) -> dict[int, float]:
    """Train ``nn.Linear`` on cached features and return val top-k accuracies in percent.

    Features are standardized with the training mean and standard deviation (an affine map the linear layer
    could absorb, so still a linear probe; it makes one learning rate work across backbones whose feature
    scales differ by orders of magnitude). SGD with momentum 0.9 (Nesterov) and a cosine schedule, as in
    Lightly's ``LinearClassifier``, but on features without augmentation, so epochs cost milliseconds.

    Args:
        train_features, train_labels: ``(N, D)`` and ``(N,)`` training set.
        val_features, val_labels: evaluated set.
        num_classes: default ``max label + 1``.
        epochs, batch_size, lr, weight_decay: optimization (``lr`` is not scaled with the batch size).
        seed: for the initialization and the shuffling, so results are reproducible.
        device: default CUDA if available.
    """
    dev = resolve_device(device)
    check_labels(train_labels, "training")
    check_labels(val_labels, "validation")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    x = train_features.to(dev, torch.float32)
    y = train_labels.to(dev)
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, keepdim=True).clamp_min(1e-6)  # constant features (dead ReLUs) would divide by 0
    x = (x - mean) / std
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(x.shape[1], num_classes).to(dev)
    with torch.no_grad():  # seeded init, independent of the global RNG
        bound = 1.0 / x.shape[1] ** 0.5
        head.weight.copy_(torch.empty(head.weight.shape).uniform_(-bound, bound, generator=gen))
        head.bias.zero_()
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps_per_epoch = max(1, -(-len(y) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    with torch.enable_grad():
        for _ in tqdm(range(epochs), desc="linear probe", unit="epoch", leave=False):
            perm = torch.randperm(len(y), generator=gen).to(dev)
            for start in range(0, len(y), batch_size):
                idx = perm[start : start + batch_size]
                loss = loss_fn(head(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    with torch.no_grad():
        logits = head((val_features.to(dev, torch.float32) - mean) / std)
    return topk_accuracy(logits, val_labels, topk)


def linear_eval(
    model: nn.Module,
    train: str | os.PathLike | Any,
    val: str | os.PathLike | Any,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    probe_batch_size: int = 256,
    input_size: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    crop_pct: float | None = None,
    num_workers: int | None = None,
    seed: int = 0,
    dataset: str | None = None,
    split: str | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """Linear-probe top-1 of ``model`` (frozen) on image folders with class subfolders, as a result dict.

    Features are extracted once (center crops, no augmentation) and the probe trains on them; see
    :func:`linear_probe` for the optimization and :func:`~sslhub.evaluation.knn_eval` for the other arguments.
    """
    train_ds = as_image_folder(train)
    val_ds = as_image_folder(val, classes=train_ds.classes)
    size = model_input_size(model, input_size)
    kw = dict(input_size=size, batch_size=batch_size, device=device, crop_pct=crop_pct, num_workers=num_workers)
    tr = extract_features(model, train_ds, desc="train features", **kw)
    va = extract_features(model, val_ds, desc="val features", **kw)
    acc = linear_probe(
        tr.features,
        tr.labels,
        va.features,
        va.labels,
        num_classes=len(train_ds.classes),
        epochs=epochs,
        batch_size=probe_batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        device=device,
    )
    default_name, default_split = dataset_name_split(val_ds.root)
    protocol = {
        "epochs": epochs,
        "optimizer": "sgd",
        "lr": lr,
        "momentum": 0.9,
        "weight_decay": weight_decay,
        "batch_size": probe_batch_size,
        "schedule": "cosine",
        "features": "frozen, standardized, no augmentation",
        "input_size": size,
        "resize_size": resize_size_for(model, size, crop_pct),
        "train_split": dataset_name_split(train_ds.root)[1],
        "num_train": len(tr),
        "num_val": len(va),
        "num_classes": len(train_ds.classes),
        "seed": seed,
        "top5": acc.get(5),
    }
    return make_result(
        "linear_top1",
        acc[1],
        dataset=dataset or default_name,
        split=split or default_split,
        protocol=protocol,
        weights=weights,
    )
