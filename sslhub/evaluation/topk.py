"""Memory-bounded nearest neighbours: top-k cosine similarities over a bank read block by block.

The bank (e.g. a memory-mapped shard folder, or one rank's part of it) is never held whole; the largest temporary
is one ``(query_chunk, bank_block)`` similarity matrix, plus the running ``(Q, k)`` best lists. Runs on any torch
device (pass CUDA tensors to use the GPU). :func:`faiss_topk` does the same search with FAISS's exact inner-product
index (``pip install faiss-cpu``) where it is installed. :func:`knn_vote` turns the lists into Lightly's weighted
kNN class scores (the same sum as :func:`sslhub.evaluation.knn.knn_scores`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["chunked_topk", "faiss_topk", "knn_vote", "merge_topk"]


def merge_topk(sims: Tensor, idx: Tensor, new_sims: Tensor, new_idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best of two ``(Q, *)`` candidate lists (similarities and their bank indices), best first."""
    s = torch.cat([sims, new_sims], dim=1)
    i = torch.cat([idx, new_idx], dim=1)
    best, pos = s.topk(min(k, s.shape[1]), dim=1)
    return best, i.gather(1, pos)


@torch.inference_mode()
def chunked_topk(
    queries: Tensor,
    bank_blocks: Iterable[tuple[int, Tensor | np.ndarray]],
    k: int,
    *,
    query_chunk: int = 1024,
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` cosine similarities of every query against a bank given as ``(first_row, block)`` pieces.

    Args:
        queries: ``(Q, D)`` features.
        bank_blocks: ``(first_row, (n, D) block)`` pairs covering the bank (e.g.
            :meth:`~sslhub.evaluation.shards.ShardedArray.chunks`); indices returned are ``first_row + i``.
        k: neighbours kept per query (fewer if the bank is smaller).
        query_chunk: queries per similarity matrix.
        normalize: L2-normalize queries and bank rows (cosine similarity), as the kNN protocol does.
        device: where to compute (default: the queries' device).

    Returns:
        ``(sims, indices)``, both ``(Q, k)``, best first; sims float32 on ``device``, indices int64.
    """
    dev = torch.device(device) if device is not None else queries.device
    q = queries.to(dev, torch.float32)
    if normalize:
        q = F.normalize(q, dim=1)
    nq = q.shape[0]
    sims = torch.empty((nq, 0), device=dev)
    idx = torch.empty((nq, 0), dtype=torch.long, device=dev)
    for first, block in bank_blocks:
        b = torch.as_tensor(np.asarray(block)) if isinstance(block, np.ndarray) else block
        b = b.to(dev, torch.float32)
        if normalize:
            b = F.normalize(b, dim=1)
        if len(b) == 0:
            continue
        kb = min(k, len(b))
        parts_s, parts_i = [], []
        for a in range(0, nq, query_chunk):
            s, i = (q[a : a + query_chunk] @ b.T).topk(kb, dim=1)
            parts_s.append(s)
            parts_i.append(i + first)
        sims, idx = merge_topk(sims, idx, torch.cat(parts_s), torch.cat(parts_i), k)
    return sims, idx


def faiss_topk(
    queries: Tensor, bank_blocks: Iterable[tuple[int, Tensor | np.ndarray]], k: int, *, normalize: bool = True
) -> tuple[Tensor, Tensor]:
    """:func:`chunked_topk` with FAISS's exact ``IndexFlatIP``, block by block (CPU).

    Raises:
        ImportError: FAISS is not installed (``pip install faiss-cpu``).
    """
    try:
        import faiss
    except ImportError:
        raise ImportError("the FAISS search needs the faiss-cpu package: pip install 'sslhub[faiss]'") from None
    q = queries.detach().cpu().float()
    if normalize:
        q = F.normalize(q, dim=1)
    qn = np.ascontiguousarray(q.numpy())
    sims = torch.empty((len(qn), 0))
    idx = torch.empty((len(qn), 0), dtype=torch.long)
    for first, block in bank_blocks:
        b = torch.as_tensor(np.asarray(block, dtype=np.float32))
        if normalize:
            b = F.normalize(b, dim=1)
        if len(b) == 0:
            continue
        index = faiss.IndexFlatIP(b.shape[1])
        index.add(np.ascontiguousarray(b.numpy()))
        s, i = index.search(qn, min(k, len(b)))
        sims, idx = merge_topk(sims, idx, torch.from_numpy(s), torch.from_numpy(i).long() + first, k)
    return sims, idx


def knn_vote(sims: Tensor, neighbour_labels: Tensor, num_classes: int, t: float = 0.1) -> Tensor:
    """Class scores ``(Q, num_classes)``: the sum of ``exp(sim / t)`` over each query's neighbours, by class."""
    weight = (sims.to(torch.promote_types(sims.dtype, torch.float32)) / t).exp()
    scores = torch.zeros(sims.shape[0], num_classes, dtype=weight.dtype, device=weight.device)
    return scores.scatter_add_(1, neighbour_labels.to(weight.device), weight)
