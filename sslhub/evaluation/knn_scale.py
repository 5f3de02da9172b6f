"""kNN evaluation at dataset scale: the feature bank sharded over ``torchrun`` ranks, top-k merged.

Each rank embeds its blocks of the training images (its part of the bank, never gathered) and its blocks of the
evaluation images; the evaluation features are gathered on every rank, each rank searches its bank part with the
memory-bounded :func:`~sslhub.evaluation.topk.chunked_topk` (or FAISS), and the per-rank top-k lists are gathered
and merged. Per rank, memory is its bank part plus the queries plus ``(Q, k)`` lists. Blocks are multiples of the
batch size and go to ranks round-robin, so every image meets the same batch as in a one-process run, and the result
equals it. The protocol is :func:`sslhub.evaluation.knn.knn_eval`'s (Lightly's weighted kNN).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import torch
from torch import Tensor, nn

from sslhub.data import DatasetError
from sslhub.evaluation import distributed as D
from sslhub.evaluation.features import dataset_name_split, model_input_size, resize_size_for
from sslhub.evaluation.results import check_labels, make_result
from sslhub.evaluation.streaming import iter_embeddings, plan_batches, prepare_source, rank_shards
from sslhub.evaluation.topk import chunked_topk, faiss_topk, knn_vote

logger = logging.getLogger(__name__)

__all__ = ["knn_eval_sharded", "rank_features"]


def rank_features(model: nn.Module, src: Any, *, batch_size: int, block: int, device: torch.device,
                  num_workers: int | None, desc: str) -> dict[int, tuple[Tensor, Tensor]]:  # fmt: skip
    """This rank's blocks of ``src`` (block ``b`` covers items ``[b * block, (b + 1) * block)``) embedded:
    ``{block id: (features, labels)}``, rows in item order, unreadable images left out."""
    rank, world_size = D.world()
    n = len(src)
    plan = [(i, b) for i in rank_shards(math.ceil(n / block), rank, world_size)
            for b in plan_batches(i * block, min((i + 1) * block, n), batch_size)]  # fmt: skip
    parts: dict[int, tuple[list[Tensor], list[Tensor]]] = {}
    for (i, _), got in zip(plan, iter_embeddings(model, src, [b for _, b in plan], device, num_workers, desc=desc)):
        f, y = parts.setdefault(i, ([], []))
        if got is not None:
            f.append(got[0])
            y.append(got[1])
    return {i: (torch.cat(f), torch.cat(y)) for i, (f, y) in parts.items() if f}


def _in_order(pieces: list[dict[int, tuple[Tensor, Tensor]]]) -> tuple[Tensor, Tensor]:
    """Every rank's blocks, concatenated in block (= item) order."""
    merged = {i: v for piece in pieces for i, v in piece.items()}
    if not merged:
        return torch.zeros((0, 0)), torch.zeros(0, dtype=torch.long)
    order = sorted(merged)
    return torch.cat([merged[i][0] for i in order]), torch.cat([merged[i][1] for i in order])


def knn_eval_sharded(
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
    bank_chunk: int = 65536,
    query_chunk: int = 1024,
    use_faiss: bool = False,
) -> dict[str, Any]:
    """:func:`~sslhub.evaluation.knn_eval` over any number of ``torchrun`` processes, memory-bounded.

    Inputs may be folders, file lists, CSV manifests or WebDataset tars (with labels). Returns the same result
    dict as ``knn_eval``, on every rank.
    """
    D.init_from_env()
    rank, world_size = D.world()
    dev = D.rank_device(device)
    size = model_input_size(model, input_size)
    tr_src = prepare_source(train, model, size, crop_pct)
    va_src = prepare_source(val, model, size, crop_pct, classes=tr_src.classes or None)
    block = batch_size * max(1, 4096 // batch_size)
    kw = dict(batch_size=batch_size, block=block, device=dev, num_workers=num_workers)
    mine = rank_features(model, tr_src, desc="train features", **kw)
    bank, bank_labels = _in_order([mine])
    # Queries in item order on every rank; the bank stays where it was computed.
    queries, q_labels = _in_order(D.all_gather_objects(rank_features(model, va_src, desc="val features", **kw)))
    # Only counts and label ranges travel: the training labels stay with their rank's bank.
    stats = D.all_gather_objects((len(bank_labels), int(bank_labels.min()) if len(bank_labels) else 0,
                                  int(bank_labels.max()) if len(bank_labels) else -1))  # fmt: skip
    num_train = sum(n for n, _, _ in stats)
    if num_train == 0 or len(q_labels) == 0:
        which = "training" if num_train == 0 else "evaluation"
        raise DatasetError(f"no image of the {which} set could be decoded")
    check_labels(torch.tensor([lo for n, lo, _ in stats if n]), "training")
    check_labels(q_labels, "validation")
    num_classes = len(tr_src.classes) or max(max(hi for _, _, hi in stats), int(q_labels.max())) + 1
    if k > num_train:
        logger.warning("k=%d is larger than the %d training images; using k=%d", k, num_train, num_train)
        k = num_train

    # Local top-k against this rank's bank part, block by block; then the k best of all ranks.
    blocks_iter = ((a, bank[a : a + bank_chunk]) for a in range(0, len(bank), bank_chunk))
    if use_faiss:
        sims, idx = faiss_topk(queries, blocks_iter, k)
    else:
        sims, idx = chunked_topk(queries.to(dev), blocks_iter, k, query_chunk=query_chunk, device=dev)
    local = (sims.cpu(), bank_labels[idx.cpu()] if len(bank_labels) else idx.cpu())
    gathered = D.all_gather_objects(local)
    all_sims = torch.cat([g[0] for g in gathered], dim=1)
    all_labels = torch.cat([g[1] for g in gathered], dim=1)
    best, pos = all_sims.topk(k, dim=1)
    scores = knn_vote(best, all_labels.gather(1, pos), num_classes, t)
    pred = scores.argsort(dim=-1, descending=True, stable=True)
    target = q_labels.unsqueeze(1)
    top1 = 100.0 * float((pred[:, :1] == target).any(dim=1).sum()) / len(q_labels)
    top5 = 100.0 * float((pred[:, :5] == target).any(dim=1).sum()) / len(q_labels)
    if rank == 0 and world_size > 1:
        logger.info("kNN over %d processes: %d training and %d evaluation images", world_size, num_train, len(q_labels))
    val_root = getattr(va_src, "root", None) or getattr(va_src, "path", None) or va_src.description
    default_name, default_split = dataset_name_split(val_root)
    train_root = getattr(tr_src, "root", None) or getattr(tr_src, "path", None) or tr_src.description
    protocol = {
        "k": k,
        "t": t,
        "normalize": True,
        "input_size": size,
        "resize_size": resize_size_for(model, size, crop_pct),
        "train_split": dataset_name_split(train_root)[1],
        "num_train": num_train,
        "num_val": len(q_labels),
        "num_classes": num_classes,
        "top5": top5,
    }
    return make_result("knn_top1", top1, dataset=dataset or default_name, split=split or default_split,
                       protocol=protocol, weights=weights)  # fmt: skip

