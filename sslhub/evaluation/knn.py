"""Weighted k-nearest-neighbour classification, the monitoring metric of Lightly's benchmarks.

Same protocol as ``lightly.utils.benchmarking.knn_predict`` / ``KNNClassifier`` (InstDisc, MoCo): L2-normalized
features, cosine similarity, the ``k`` (200) most similar training images vote for their class with weight
``exp(similarity / t)`` (``t`` = 0.1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslhub.evaluation.features import (
    Features,
    as_image_folder,
    dataset_name_split,
    extract_features,
    model_input_size,
    resize_size_for,
    resolve_device,
)
from sslhub.evaluation.results import check_labels, make_result

logger = logging.getLogger(__name__)

__all__ = ["knn_accuracy", "knn_eval", "knn_eval_with_features", "knn_predict", "knn_scores"]


def knn_scores(
    feature: Tensor,
    feature_bank: Tensor,
    feature_labels: Tensor,
    num_classes: int,
    knn_k: int = 200,
    knn_t: float = 0.1,
) -> Tensor:
    """Class scores ``(B, num_classes)``: sum of ``exp(sim / knn_t)`` over the ``knn_k`` nearest neighbours.

    Arguments as :func:`knn_predict`. Scores are float32 (or float64 for float64 inputs) even for half
    precision features, where ``exp(sim / 0.1)`` summed over 200 neighbours would overflow.
    """
    sim_matrix = feature @ feature_bank  # (B, N) cosine similarity for normalized features
    sim_weight, sim_indices = sim_matrix.topk(k=knn_k, dim=-1)
    sim_labels = feature_labels[sim_indices]  # (B, K)
    weight = (sim_weight.to(torch.promote_types(sim_weight.dtype, torch.float32)) / knn_t).exp()
    # scatter_add sums the same votes as Lightly's one-hot product without the (B * K, C) one-hot tensor.
    scores = torch.zeros(feature.shape[0], num_classes, dtype=weight.dtype, device=weight.device)
    return scores.scatter_add_(1, sim_labels, weight)


def knn_predict(
    feature: Tensor,
    feature_bank: Tensor,
    feature_labels: Tensor,
    num_classes: int,
    knn_k: int = 200,
    knn_t: float = 0.1,
) -> Tensor:
    """Class indices sorted by kNN score, best first; drop-in for ``lightly.utils.benchmarking.knn_predict``.

    Args:
        feature: ``(B, D)`` query features (normalize them for cosine similarity).
        feature_bank: ``(D, N)`` training features (note the transposed layout, as in Lightly).
        feature_labels: ``(N,)`` training labels in ``[0, num_classes)``.
        num_classes: number of classes.
        knn_k: neighbours that vote.
        knn_t: temperature of the vote weights.

    Returns:
        ``(B, num_classes)`` class indices; ``[:, 0]`` is the prediction. Ties keep the lower class first.
    """
    scores = knn_scores(feature, feature_bank, feature_labels, num_classes, knn_k, knn_t)
    return scores.argsort(dim=-1, descending=True, stable=True)


@torch.inference_mode()
def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    val_features: Tensor,
    val_labels: Tensor,
    *,
    k: int = 200,
    t: float = 0.1,
    num_classes: int | None = None,
    normalize: bool = True,
    topk: Sequence[int] = (1, 5),
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
) -> dict[int, float]:
    """kNN top-k accuracies in percent, ``{1: top1, 5: top5}``, of ``val`` against a ``train`` feature bank.

    ``k`` larger than the bank is reduced to the bank size (with a warning). Queries run in chunks of
    ``chunk_size`` so the ``(chunk, N)`` similarity matrix stays small.
    """
    dev = resolve_device(device)
    check_labels(train_labels, "training")
    check_labels(val_labels, "validation")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    if k > len(train_labels):
        logger.warning(
            "k=%d is larger than the %d training images; using k=%d", k, len(train_labels), len(train_labels)
        )
        k = len(train_labels)
    bank = train_features.to(dev, torch.float32)
    if normalize:
        bank = F.normalize(bank, dim=1)
    bank = bank.t().contiguous()
    bank_labels = train_labels.to(dev)
    correct = {kk: 0 for kk in topk}
    for start in range(0, len(val_labels), chunk_size):
        q = val_features[start : start + chunk_size].to(dev, torch.float32)
        if normalize:
            q = F.normalize(q, dim=1)
        pred = knn_predict(q, bank, bank_labels, num_classes, k, t)
        target = val_labels[start : start + chunk_size].to(dev).unsqueeze(1)
        for kk in topk:
            correct[kk] += int((pred[:, :kk] == target).any(dim=1).sum())
    return {kk: 100.0 * c / len(val_labels) for kk, c in correct.items()}


def knn_eval(
    model: nn.Module,
    train: str | os.PathLike | Any,
    val: str | os.PathLike | Any,
    *,
    k: int = 200,
    t: float = 0.1,
    input_size: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    crop_pct: float | None = None,
    num_workers: int | None = None,
    dataset: str | None = None,
    split: str | None = None,
    weights: str | None = None,
) -> dict[str, Any]:
    """kNN top-1 of ``model`` (frozen) on image folders with class subfolders, as a result dict.

    Args:
        model: feature extractor (see :func:`~sslhub.evaluation.extract_features`).
        train: folder (or :class:`~sslhub.data.ImageFolderDataset`) whose features form the bank.
        val: folder evaluated; its class folders must be among the training folder's.
        k: neighbours (Lightly's default 200).
        t: temperature (Lightly's default 0.1).
        input_size: see ``extract_features``.
        batch_size: see ``extract_features``.
        device: see ``extract_features``.
        crop_pct: see ``extract_features``.
        num_workers: see ``extract_features``.
        dataset: name for the result; default from ``val``'s path (``<dataset>/<split>``).
        split: name for the result; default from ``val``'s path.
        weights: where the weights came from, recorded as is.

    Returns:
        ``{"metric": "knn_top1", "value": percent, "dataset", "split", "protocol": {...}, "weights"}``; the
        protocol records ``top5`` too.
    """
    result, _ = knn_eval_with_features(
        model, train, val, k=k, t=t, input_size=input_size, batch_size=batch_size, device=device,
        crop_pct=crop_pct, num_workers=num_workers, dataset=dataset, split=split, weights=weights,
    )  # fmt: skip
    return result


def knn_eval_with_features(
    model: nn.Module,
    train: str | os.PathLike | Any,
    val: str | os.PathLike | Any,
    *,
    k: int = 200,
    t: float = 0.1,
    input_size: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    crop_pct: float | None = None,
    num_workers: int | None = None,
    dataset: str | None = None,
    split: str | None = None,
    weights: str | None = None,
    desc: str = "",
    progress: bool = True,
) -> tuple[dict[str, Any], Features]:
    """:func:`knn_eval`, also returning the training folder's features (the training monitor's collapse check
    reads them). The one kNN code path: ``sslhub eval knn``, the training monitor and the demo all use it."""
    train_ds = as_image_folder(train)
    val_ds = as_image_folder(val, classes=train_ds.classes)
    size = model_input_size(model, input_size)
    kw = dict(input_size=size, batch_size=batch_size, device=device, crop_pct=crop_pct, num_workers=num_workers,
              progress=progress)  # fmt: skip
    tr = extract_features(model, train_ds, desc=f"{desc}train features", **kw)
    va = extract_features(model, val_ds, desc=f"{desc}val features", **kw)
    k_used = min(k, len(tr))
    acc = knn_accuracy(
        tr.features, tr.labels, va.features, va.labels, k=k, t=t, num_classes=len(train_ds.classes), device=device
    )
    default_name, default_split = dataset_name_split(val_ds.root)
    protocol = {
        "k": k_used,
        "t": t,
        "normalize": True,
        "input_size": size,
        "resize_size": resize_size_for(model, size, crop_pct),
        "train_split": dataset_name_split(train_ds.root)[1],
        "num_train": len(tr),
        "num_val": len(va),
        "num_classes": len(train_ds.classes),
        "top5": acc.get(5),
    }
    result = make_result(
        "knn_top1",
        acc[1],
        dataset=dataset or default_name,
        split=split or default_split,
        protocol=protocol,
        weights=weights,
    )
    return result, tr
