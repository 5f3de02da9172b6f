"""KoLeo regulariser with Lightly's name, arguments and defaults (``lightly.loss.KoLeoLoss``), as DINOv2 uses it.

- Spreading vectors for similarity search, 2019, https://arxiv.org/abs/1806.03198
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["KoLeoLoss"]


class KoLeoLoss(nn.Module):
    """Kozachenko-Leonenko entropy estimator: ``-mean(log(distance to the nearest neighbour))`` of the
    L2-normalised features of a batch, which spreads them uniformly.

    Args:
        p: Norm degree of the pairwise distance.
        eps: Added to norms and distances (no division by or log of zero).
    """

    def __init__(self, p: float = 2, eps: float = 1e-8) -> None:
        super().__init__()
        self.p = p
        self.eps = eps
        self.pairwise_distance = nn.PairwiseDistance(p=p, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """Loss of ``x`` (batch, dim)."""
        x = F.normalize(x, p=2, dim=-1, eps=self.eps)
        with torch.no_grad():  # the neighbour choice is not differentiated (argmax)
            cos_sim = x @ x.t()
            cos_sim.fill_diagonal_(-2)
            nn_idx = cos_sim.argmax(dim=1)
        return -(self.pairwise_distance(x, x[nn_idx]) + self.eps).log().mean()
