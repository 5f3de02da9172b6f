"""Regularisers added to another SSL loss, with Lightly's names, arguments and defaults
(``lightly.loss.regularizer``): CO2 (consistency of the similarity distributions of two views) and DSE (dense
structure estimate of patch/pixel features).

- CO2, 2021, https://arxiv.org/abs/2010.02217
- DSE: Exploring Structural Degradation in Dense Representations for Self-supervised Learning, 2025,
  https://arxiv.org/abs/2510.17299
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.losses.memory_bank import MemoryBankModule

__all__ = ["CO2Regularizer", "DSERegularizer"]


class CO2Regularizer(nn.Module):
    """CO2 consistency term: symmetric KL divergence between the two views' softmax distributions over "this view's
    positive vs the negatives" (the other batch, or a memory bank), times ``alpha``.

    Args:
        alpha: Weight of the regulariser.
        t_consistency: Softmax temperature.
        memory_bank_size: ``(num_negatives, dim)`` of a memory bank of negatives, or 0 for the batch.
    """

    def __init__(self, alpha: float = 1, t_consistency: float = 0.05, memory_bank_size: int | Sequence[int] = 0):
        super().__init__()
        self.memory_bank = MemoryBankModule(size=memory_bank_size)
        self.log_target = True
        self.kl_div = nn.KLDivLoss(reduction="batchmean", log_target=True)
        self.t_consistency = t_consistency
        self.alpha = alpha

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """The weighted regulariser for the projections ``(B, D)`` of two views.

        As Lightly's, the result is detached from the graph (Lightly returns ``torch.tensor(...)`` of it).
        """
        out0, out1 = F.normalize(out0, dim=1), F.normalize(out1, dim=1)
        out1, negatives = self.memory_bank(out1, update=True)
        p = self._get_pseudo_labels(out0, out1, negatives)
        q = self._get_pseudo_labels(out1, out0, negatives)
        div = self.kl_div(p, q) + self.kl_div(q, p)
        return (self.alpha * 0.5 * div).detach().clone()

    def _get_pseudo_labels(self, out0: Tensor, out1: Tensor, negatives: Tensor | None = None) -> Tensor:
        """Log-softmax over [positive, negatives] of each row of ``out0`` (``(B, B)`` or ``(B, 1 + bank)``)."""
        b = out0.shape[0]
        pos = (out0 * out1).sum(dim=1, keepdim=True)
        if negatives is None:  # the other view's other samples
            neg = (out0 @ out1.t()).masked_select(~torch.eye(b, dtype=torch.bool, device=out0.device)).view(b, b - 1)
        else:  # the bank is stored (dim, size)
            neg = out0 @ negatives.to(out0.device).clone().detach()
        return F.log_softmax(torch.cat([pos, neg], dim=1) / self.t_consistency, dim=-1)


class DSERegularizer(nn.Module):
    """Minus ``weight`` times the dense structure estimate (DSE) of features ``(B, N, D)``: higher DSE is better
    dense structure, so adding this to a loss rewards it.

    ``DSE = inter / l2 + effective_dim - 0.5 * (intra_batch / l2 + intra_image / l2)`` with k-means (k-means++ init)
    within each image (``local_clusters``) and over groups of images (``global_clusters``). The k-means draws from
    torch's global generator in Lightly's order, so seeded runs give Lightly's numbers.

    Args:
        weight: Weight of the regulariser (>= 0).
        normalize: L2-normalise the features first.
        local_clusters: Clusters of the patches of one image.
        global_clusters: Clusters of the patches of a group of images.
        max_kmeans_iters: k-means iterations at most.
        tol: k-means stops when the centroids move less than this.
    """

    def __init__(self, weight: float = 1.0, normalize: bool = True, local_clusters: int = 3, global_clusters: int = 24,
                 max_kmeans_iters: int = 20, tol: float = 1e-4):  # fmt: skip
        super().__init__()
        for name, value, low in (("local_clusters", local_clusters, 1), ("global_clusters", global_clusters, 1),
                                 ("max_kmeans_iters", max_kmeans_iters, 1)):  # fmt: skip
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}.")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}.")
        if tol <= 0:
            raise ValueError(f"tol must be > 0, got {tol}.")
        self.weight = weight
        self.normalize = normalize
        self.local_clusters = local_clusters
        self.global_clusters = global_clusters
        self.max_kmeans_iters = max_kmeans_iters
        self.tol = tol

    def forward(self, representations: Tensor) -> Tensor:
        """``-weight * DSE`` of ``representations`` ``(B, N, D)`` (flatten a ``(B, C, H, W)`` map to ``(B, HW, C)``)."""
        if representations.ndim != 3:
            raise ValueError(f"representations must have shape (batch_size, num_tokens, dim), got {representations.shape}.")
        if min(representations.shape) == 0:
            raise ValueError("representations must have non-empty batch, token, and feature dimensions, got "
                             f"{representations.shape}.")  # fmt: skip
        if self.weight == 0:
            return representations.new_zeros(())
        x = F.normalize(representations, dim=-1) if self.normalize else representations
        b, n, d = x.shape
        l2 = torch.norm(x - x.mean(dim=(0, 1), keepdim=True), dim=-1).mean() + 1e-12
        intra_image = self._intra_image_structure(x)
        inter_batch, intra_batch = self._batch_structure(x)
        dse = inter_batch / l2 + self._effective_dimensionality(x.reshape(b * n, d)) - 0.5 * (
            intra_batch / l2 + intra_image / l2)  # fmt: skip
        return -self.weight * dse

    def _intra_image_structure(self, x: Tensor) -> Tensor:
        terms = []
        for image in x:
            _, labels = self._kmeans(image.detach(), self.local_clusters)
            ranks = [self._centered_singular_sum(image[labels == c]) for c in torch.unique(labels)
                     if int((labels == c).sum()) > 1]  # fmt: skip
            if ranks:
                terms.append(torch.stack(ranks).mean())
        return torch.stack(terms).mean() if terms else x.new_zeros(())

    def _batch_structure(self, x: Tensor) -> tuple[Tensor, Tensor]:
        per_group = max(self.global_clusters // self.local_clusters, 1)
        inter, intra = [], []
        for start in range(0, x.shape[0], per_group):
            group = x[start : start + per_group].reshape(-1, x.shape[-1])
            centroids, labels = self._kmeans(group.detach(), self.global_clusters)
            if centroids.shape[0] > 1:  # mean distance of each point to the nearest centroid not its own
                distances = torch.cdist(group, centroids)
                own = F.one_hot(labels, centroids.shape[0]).bool()
                inter.append(distances.masked_fill(own, float("inf")).min(dim=1).values.mean())
            intra += [self._centered_singular_sum(group[labels == c]) for c in torch.unique(labels)
                      if int((labels == c).sum()) > 1]  # fmt: skip
        zero = x.new_zeros(())
        return (torch.stack(inter).mean() if inter else zero), (torch.stack(intra).mean() if intra else zero)

    @staticmethod
    def _effective_dimensionality(x: Tensor) -> Tensor:
        s = torch.linalg.svdvals(x)
        p = s / (s.sum() + 1e-12)
        return torch.exp(-(p * torch.log(p + 1e-12)).sum()) / min(x.shape)

    @staticmethod
    def _centered_singular_sum(x: Tensor) -> Tensor:
        s = torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))
        return s.sum() / math.sqrt(max(x.shape[0] - 1, x.shape[1]))

    @torch.no_grad()
    def _kmeans(self, x: Tensor, num_clusters: int) -> tuple[Tensor, Tensor]:
        num_points = x.shape[0]
        k = min(num_clusters, num_points)
        centroids = self._kmeans_plus_plus_init(x, k)
        for _ in range(self.max_kmeans_iters):
            labels = torch.cdist(x, centroids).argmin(dim=1)
            new = []
            for c in range(k):
                members = x[labels == c]
                # an empty cluster restarts at a random point (drawn as Lightly draws it)
                new.append(members.mean(dim=0) if members.shape[0] > 0
                           else x[torch.randint(num_points, (1,), device=x.device)].squeeze(0))  # fmt: skip
            new_centroids = torch.stack(new)
            shift = (new_centroids - centroids).pow(2).sum().sqrt()
            centroids = new_centroids
            if shift < self.tol:
                break
        return centroids, torch.cdist(x, centroids).argmin(dim=1)

    @staticmethod
    def _kmeans_plus_plus_init(x: Tensor, k: int) -> Tensor:
        centroids = x[torch.randint(x.shape[0], (1,), device=x.device)]
        for _ in range(k - 1):
            # squared distance sampling (Lightly's choice; the paper's text differs)
            p = torch.cdist(x, centroids).min(dim=1).values.square()
            p = p / (p.sum() + 1e-12)
            if torch.sum(p) == 0:
                p = torch.ones_like(p) / p.numel()
            centroids = torch.cat((centroids, x[torch.multinomial(p, 1)]), dim=0)
        return centroids
