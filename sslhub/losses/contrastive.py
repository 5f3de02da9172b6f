"""Contrastive losses: NT-Xent (SimCLR / MoCo), decoupled contrastive learning (DCL, DCLW), DirectCLR and MACL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.losses import dist
from sslhub.losses.memory_bank import MemoryBankModule


def _gathered(out0: Tensor, out1: Tensor, gather_distributed: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (out0 of all ranks, out1 of all ranks, positive mask of shape (n, n * world_size))."""
    n = out0.shape[0]
    if gather_distributed and dist.world_size() > 1:
        return torch.cat(dist.gather(out0)), torch.cat(dist.gather(out1)), dist.eye_rank(n, out0.device)
    return out0, out1, torch.eye(n, dtype=torch.bool, device=out0.device)


def _positives(x: Tensor, diag: Tensor) -> Tensor:
    """``x[diag]`` for a mask with one True per row, without boolean indexing (on a GPU that reads the mask's
    size back to the host: one synchronisation per call, and a graph break under ``torch.compile``)."""
    return x.gather(1, diag.int().argmax(dim=1, keepdim=True)).squeeze(1)


def _negatives(x: Tensor, diag: Tensor) -> Tensor:
    """``x[~diag].view(n, -1)`` (the same elements in the same order) for a mask with one True per row."""
    n, m = diag.shape
    cols = torch.arange(m - 1, device=x.device).expand(n, -1)
    skip = diag.int().argmax(dim=1, keepdim=True)
    return x.gather(1, cols + (cols >= skip))


class NTXentLoss(nn.Module):
    """Normalized temperature-scaled cross-entropy loss (SimCLR), or InfoNCE with a memory bank (MoCo).

    Args:
        temperature: Logits are divided by this value.
        memory_bank_size: ``(num_negatives, dim)`` to use a queue of negatives (MoCo), ``0`` for in-batch
            negatives (SimCLR).
        gather_distributed: Gather negatives from all processes (with gradients) before the loss.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.memory_bank = MemoryBankModule(size=memory_bank_size, gather_distributed=gather_distributed)
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        self.cross_entropy = nn.CrossEntropyLoss(reduction="mean")
        self.eps = 1e-8
        if abs(self.temperature) < self.eps:
            raise ValueError(f"Illegal temperature: abs({self.temperature}) < 1e-8")
        dist.check_available(gather_distributed)

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Loss between two batches of embeddings of shape (batch_size, dim); row i of each is a pair.

        With a memory bank, the bank is extended with ``out1`` when ``out0`` requires grad.
        """
        n = out0.shape[0]
        out0 = F.normalize(out0, dim=1)
        out1 = F.normalize(out1, dim=1)
        out1, negatives = self.memory_bank(out1, update=out0.requires_grad)

        if negatives is not None:
            # MoCo: one positive (the pair) against the queue; the positive sits at index 0.
            sim_pos = (out0 * out1).sum(dim=1, keepdim=True)
            sim_neg = out0 @ negatives.to(out0.device)
            logits = torch.cat([sim_pos, sim_neg], dim=1) / self.temperature
            labels = torch.zeros(n, device=out0.device, dtype=torch.long)
        else:
            out0_all, out1_all, diag = _gathered(out0, out1, self.gather_distributed)
            t = self.temperature
            logits_00 = _negatives(out0 @ out0_all.t() / t, diag)  # drop self-similarity
            logits_01 = out0 @ out1_all.t() / t
            logits_10 = out1 @ out0_all.t() / t
            logits_11 = _negatives(out1 @ out1_all.t() / t, diag)
            logits = torch.cat(
                [torch.cat([logits_01, logits_00], dim=1), torch.cat([logits_10, logits_11], dim=1)]
            )
            labels = torch.arange(n, device=out0.device, dtype=torch.long)
            if self.gather_distributed:
                labels = labels + dist.rank() * n
            labels = labels.repeat(2)
        return self.cross_entropy(logits, labels)


def negative_mises_fisher_weights(out0: Tensor, out1: Tensor, sigma: float = 0.5) -> Tensor:
    """Negative von Mises-Fisher weighting of positive pairs used by DCLW; shape (batch_size,)."""
    similarity = (out0.detach() * out1.detach()).sum(dim=1) / sigma
    return 2 - out0.shape[0] * F.softmax(similarity, dim=0)


class DCLLoss(nn.Module):
    """Decoupled contrastive learning loss (Eq. 6 of arXiv:2110.06848): the positive pair is removed
    from the denominator.

    Args:
        temperature: Similarities are divided by this value.
        weight_fn: Optional ``f(out0, out1) -> (batch_size,)`` weights for the positive term.
        gather_distributed: Gather negatives from all processes (with gradients).
    """

    def __init__(
        self,
        temperature: float = 0.1,
        weight_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.weight_fn = weight_fn
        self.gather_distributed = gather_distributed
        dist.check_available(gather_distributed)

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Symmetrised mean DCL loss for two batches of embeddings of shape (batch_size, dim)."""
        out0 = F.normalize(out0, dim=1)
        out1 = F.normalize(out1, dim=1)
        out0_all, out1_all, diag = _gathered(out0, out1, self.gather_distributed)
        loss0 = self._loss(out0, out1, out0_all, out1_all, diag)
        loss1 = self._loss(out1, out0, out1_all, out0_all, diag)
        return 0.5 * (loss0 + loss1)

    def _loss(self, out0: Tensor, out1: Tensor, out0_all: Tensor, out1_all: Tensor, diag: Tensor) -> Tensor:
        sim_00 = out0 @ out0_all.t() / self.temperature
        sim_01 = out0 @ out1_all.t() / self.temperature
        positive = -_positives(sim_01, diag)
        if self.weight_fn:
            positive = positive * self.weight_fn(out0, out1)
        negatives = torch.cat([_negatives(sim_00, diag), _negatives(sim_01, diag)], dim=1)
        return (positive + torch.logsumexp(negatives, dim=1)).mean()


class DCLWLoss(DCLLoss):
    """DCL loss with the negative von Mises-Fisher weighting of positives.

    Args:
        temperature: Similarities are divided by this value.
        sigma: Temperature of the weighting function.
        gather_distributed: Gather negatives from all processes (with gradients).
    """

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__(
            temperature=temperature,
            weight_fn=partial(negative_mises_fisher_weights, sigma=sigma),
            gather_distributed=gather_distributed,
        )


class DirectCLRLoss(NTXentLoss):
    """DirectCLR: :class:`NTXentLoss` on the first ``loss_dim`` features of the (flattened) representations,
    without a projection head.

    Args:
        loss_dim: Number of leading features the loss sees.
        temperature, memory_bank_size, gather_distributed: As :class:`NTXentLoss`.
    """

    def __init__(self, loss_dim: int = 64, temperature: float = 0.5, memory_bank_size: int | Sequence[int] = 0,
                 gather_distributed: bool = False):  # fmt: skip
        super().__init__(temperature=temperature, memory_bank_size=memory_bank_size, gather_distributed=gather_distributed)
        self.loss_dim = loss_dim

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Loss between the leading ``loss_dim`` features of two batches ``(B, ...)``."""
        return super().forward(out0.flatten(start_dim=1)[:, : self.loss_dim], out1.flatten(start_dim=1)[:, : self.loss_dim])


class MACLLoss(nn.Module):
    """Model-aware contrastive loss (MACL): InfoNCE whose temperature grows with the mean positive alignment
    ``A``: ``t = temperature * (1 + alpha * (A - A_0))``, each sample weighted by ``1 / (1 - p_pos)`` (detached).

    Args:
        temperature: Base temperature.
        alpha: Strength of the alignment-dependent temperature, in [0, 1].
        A_0: Reference alignment, in [0, 1].
    """

    def __init__(self, temperature: float = 0.1, alpha: float = 0.5, A_0: float = 0.0):
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.A_0 = A_0
        self.eps = 1e-08
        if self.temperature < self.eps:
            raise ValueError(f"Illegal initial temperature: abs({self.temperature}) < 1e-8")
        if not 0 <= self.alpha <= 1:
            raise ValueError("Alpha must be in the range [0, 1].")
        if not 0 <= self.A_0 <= 1:
            raise ValueError("A_0 must be in the range [0, 1].")

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """Loss for two batches of embeddings ``(B, D)``; row i of each is a positive pair."""
        out = torch.cat([F.normalize(z0, dim=-1, p=2), F.normalize(z1, dim=-1, p=2)], dim=0)
        b, n = z0.shape[0], 2 * z0.shape[0]
        sim = out @ out.T
        keep = torch.ones_like(sim, dtype=torch.bool)
        for k in (0, b, -b):  # itself and its positive are not negatives
            keep.diagonal(k)[:] = False
        neg = sim.masked_select(keep).view(n, -1)
        pos = torch.cat([torch.diag(sim, b), torch.diag(sim, -b)]).reshape(n, 1)
        t = self.temperature * (1 + self.alpha * (torch.mean(pos.detach()) - self.A_0))
        log_pos = F.log_softmax(torch.cat([pos, neg], dim=1) / t, dim=1)[:, 0]
        weight = 1.0 / (1.0 - log_pos.exp() + self.eps)
        return (-weight.detach() * log_pos).mean()


class HypersphereLoss(nn.Module):
    """Alignment and uniformity on the hypersphere (Wang & Isola, 2020, https://arxiv.org/abs/2005.10242):
    ``mean ||x - y||^alpha + lam * (log mean exp(-t ||x_i - x_j||^2) of x, and of y) / 2`` on L2-normalised inputs.

    Args:
        t: Temperature of the uniformity term.
        lam: Weight of the uniformity term.
        alpha: Power of the alignment distances.
    """

    def __init__(self, t: float = 1.0, lam: float = 1.0, alpha: float = 2.0):
        super().__init__()
        self.t = t
        self.lam = lam
        self.alpha = alpha

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """Loss for two views' embeddings ``(B, D)``."""
        x, y = F.normalize(z_a), F.normalize(z_b)
        align = (x - y).norm(dim=1).pow(self.alpha).mean()

        def uniformity(z: Tensor) -> Tensor:
            return torch.pdist(z, p=2).pow(2).mul(-self.t).exp().mean().log()

        return align + self.lam * (uniformity(x) + uniformity(y)) / 2.0
