"""MSN and PMSN losses with Lightly's names, arguments and defaults (``lightly.loss.MSNLoss`` ...).

- MSN: Masked Siamese Networks, 2022, https://arxiv.org/abs/2204.07141
- PMSN: Prior Matching for Siamese Networks, 2022, https://arxiv.org/abs/2210.07277
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.losses import dist

__all__ = ["MSNLoss", "PMSNCustomLoss", "PMSNLoss", "msn_sinkhorn", "power_law_distribution", "prototype_probabilities", "sharpen"]


def prototype_probabilities(queries: Tensor, prototypes: Tensor, temperature: float) -> Tensor:
    """Softmax over prototypes of ``queries @ prototypes.T / temperature``: (batch, num_prototypes)."""
    return F.softmax(queries @ prototypes.T / temperature, dim=1)


def sharpen(probabilities: Tensor, temperature: float) -> Tensor:
    """Raises probabilities to ``1 / temperature`` and renormalises each row (lower temperature: sharper)."""
    p = probabilities ** (1.0 / temperature)
    return p / p.sum(dim=1, keepdim=True)


@torch.no_grad()
def msn_sinkhorn(probabilities: Tensor, iterations: int = 3, gather_distributed: bool = False) -> Tensor:
    """MSN's Sinkhorn-Knopp balancing of target probabilities (rows: targets, columns: prototypes).

    With ``gather_distributed`` the sums run over the targets of all processes. Returns the balanced
    probabilities, rows summing to 1.
    """
    if iterations <= 0:
        return probabilities
    world = dist.world_size() if gather_distributed else 1
    num_targets, num_prototypes = probabilities.shape
    q = probabilities.T
    total = q.sum()
    if world > 1:
        torch_dist.all_reduce(total)
    q = q / total
    for _ in range(iterations):
        rows = q.sum(dim=1, keepdim=True)
        if world > 1:
            torch_dist.all_reduce(rows)
        q = q / rows / num_prototypes
        q = q / q.sum(dim=0, keepdim=True) / num_targets
    return (q * num_targets).T


class MSNLoss(nn.Module):
    """MSN loss: cross-entropy between masked anchor views and sharpened, Sinkhorn-balanced target predictions
    over learnable prototypes, plus a mean-entropy maximisation regulariser.

    Args:
        temperature: Temperature of the anchor/target prototype softmax; must be > 0.
        sinkhorn_iterations: Sinkhorn iterations on the targets (0 disables).
        regularization_weight: Weight of the regulariser (0 disables).
        gather_distributed: Balance targets over all processes.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        regularization_weight: float = 1.0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be in (0, inf) but is {temperature}.")
        if sinkhorn_iterations < 0:
            raise ValueError(f"sinkhorn_iterations must be >= 0 but is {sinkhorn_iterations}.")
        dist.check_available(gather_distributed)
        self.temperature = temperature
        self.sinkhorn_iterations = sinkhorn_iterations
        self.regularization_weight = regularization_weight
        self.gather_distributed = gather_distributed

    def forward(self, anchors: Tensor, targets: Tensor, prototypes: Tensor, target_sharpen_temperature: float = 0.25) -> Tensor:
        """Mean loss over all anchors.

        Args:
            anchors: (batch_size * anchor_views, dim), the views of each image stacked view after view.
            targets: (batch_size, dim).
            prototypes: (num_prototypes, dim).
            target_sharpen_temperature: Sharpening temperature of the target probabilities.
        """
        num_views = anchors.shape[0] // targets.shape[0]
        anchors = F.normalize(anchors, dim=1)
        targets = F.normalize(targets, dim=1)
        prototypes = F.normalize(prototypes, dim=1)
        anchor_probs = prototype_probabilities(anchors, prototypes, self.temperature)
        with torch.no_grad():
            target_probs = sharpen(prototype_probabilities(targets, prototypes, self.temperature), target_sharpen_temperature)
            if self.sinkhorn_iterations > 0:
                target_probs = msn_sinkhorn(target_probs, self.sinkhorn_iterations, self.gather_distributed)
            target_probs = target_probs.repeat((num_views, 1))
        # xlogy: a zero target weight contributes 0 even where an anchor probability underflows to 0
        loss = -torch.special.xlogy(target_probs, anchor_probs).sum(dim=1).mean()
        if self.regularization_weight > 0:
            loss = loss + self.regularization_weight * self.regularization_loss(anchor_probs.mean(dim=0))
        return loss

    def regularization_loss(self, mean_anchor_probs: Tensor) -> Tensor:
        """Negative entropy of the mean anchor prediction plus log(num_prototypes) (0 when uniform)."""
        return torch.special.xlogy(mean_anchor_probs, mean_anchor_probs).sum() + math.log(float(len(mean_anchor_probs)))


def power_law_distribution(size: int, exponent: float, device: torch.device | None = None) -> Tensor:
    """Distribution with entry k (1-based) proportional to ``k ** -exponent``, summing to 1."""
    k = torch.arange(1, size + 1, device=device, dtype=torch.float32)
    p = k.pow(-exponent)
    return p / p.sum()


class PMSNLoss(MSNLoss):
    """PMSN loss: MSN with the regulariser replaced by KL(power law prior || mean anchor prediction).

    Args:
        power_law_exponent: Entry k of the prior is proportional to ``k ** -power_law_exponent``.
        (other arguments as :class:`MSNLoss`)
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        regularization_weight: float = 1,
        power_law_exponent: float = 0.25,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(temperature, sinkhorn_iterations, regularization_weight, gather_distributed)
        self.power_law_exponent = power_law_exponent

    def regularization_loss(self, mean_anchor_probs: Tensor) -> Tensor:
        """``kl_div(log(mean_anchor_probs), power_law, reduction="sum")``."""
        prior = power_law_distribution(mean_anchor_probs.shape[0], self.power_law_exponent, mean_anchor_probs.device)
        return F.kl_div(mean_anchor_probs.log(), prior, reduction="sum")


class PMSNCustomLoss(MSNLoss):
    """PMSN loss with a custom prior: ``target_distribution(mean_anchor_probs)`` returns a distribution of the
    same shape (summing to 1); the regulariser is ``kl_div(log(mean_anchor_probs), prior, reduction="sum")``.
    (other arguments as :class:`MSNLoss`)
    """

    def __init__(
        self,
        target_distribution: Callable[[Tensor], Tensor],
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        regularization_weight: float = 1,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(temperature, sinkhorn_iterations, regularization_weight, gather_distributed)
        self.target_distribution = target_distribution

    def regularization_loss(self, mean_anchor_probs: Tensor) -> Tensor:
        """KL divergence to the custom prior."""
        prior = self.target_distribution(mean_anchor_probs).to(mean_anchor_probs.device)
        return F.kl_div(mean_anchor_probs.log(), prior, reduction="sum")
