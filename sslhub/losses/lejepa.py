"""LeJEPA's loss and its SIGReg regulariser with Lightly's names, arguments and defaults
(``lightly.loss.LeJEPALoss`` / ``SIGReg``; buffers ``t``, ``phi``, ``weights`` as Lightly's).

- LeJEPA, 2025, https://arxiv.org/abs/2511.08544
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from sslhub.losses import dist

__all__ = ["LeJEPALoss", "SIGReg", "lejepa_invariance_loss"]


def lejepa_invariance_loss(*, all_proj: Tensor, global_proj: Tensor) -> Tensor:
    """Mean squared distance of every view's projection (V, N, D) to the mean of the global views (Vg, N, D)."""
    return (global_proj.mean(0) - all_proj).square().mean()


class SIGReg(nn.Module):
    """Sketched Isotropic Gaussian Regularisation: an Epps-Pulley test of the projections onto
    ``num_vectors`` random unit directions against a standard normal, via their empirical characteristic
    function on ``knots`` frequencies in ``[0, t_max]`` (trapezoidal rule, doubled by symmetry).

    Random directions are drawn from torch's global generator at every call (broadcast from rank 0 with
    ``gather_distributed``), as Lightly does, so seeded runs match it.

    Args:
        knots: Frequencies of the integration grid.
        t_max: Largest frequency.
        num_vectors: Random directions per call.
        gather_distributed: Use the statistics of the global batch (all processes).
    """

    t: Tensor
    phi: Tensor
    weights: Tensor

    def __init__(self, *, knots: int = 17, t_max: float = 3.0, num_vectors: int = 1024, gather_distributed: bool = False) -> None:
        super().__init__()
        if knots <= 1:
            raise ValueError("knots must be an integer greater than one.")
        if t_max <= 0:
            raise ValueError("t_max must be greater than zero.")
        if num_vectors <= 0:
            raise ValueError("num_vectors must be a positive integer.")
        dist.check_available(gather_distributed)
        self.num_vectors = num_vectors
        self.gather_distributed = gather_distributed
        t = torch.linspace(0, t_max, knots, dtype=torch.float32)
        dt = t_max / (knots - 1)
        weights = torch.full((knots,), 2 * dt, dtype=torch.float32)  # twice the trapezoid weights: even integrand
        weights[[0, -1]] = dt
        window = torch.exp(-t.square() / 2.0)  # the standard normal's characteristic function
        self.register_buffer("t", t)
        self.register_buffer("phi", window)
        self.register_buffer("weights", weights * window)

    def forward(self, proj: Tensor) -> Tensor:
        """Statistic of ``proj`` (..., N, D), averaged over directions and leading dimensions."""
        gather = self.gather_distributed and dist.world_size() > 1
        num_features, num_samples = proj.size(-1), proj.size(-2)
        if gather:
            n = torch.tensor(float(num_samples), device=proj.device, dtype=proj.dtype)
            torch_dist.all_reduce(n)
            num_samples = int(n.item())
        directions = torch.randn(num_features, self.num_vectors, device=proj.device, dtype=proj.dtype)
        if gather:
            torch_dist.broadcast(directions, src=0)
        directions = directions.div_(directions.norm(p=2, dim=0))
        x_t = (proj @ directions).unsqueeze(-1) * self.t  # (..., N, num_vectors, knots)
        cos_sum, sin_sum = x_t.cos().sum(-3), x_t.sin().sum(-3)
        if gather:
            from torch.distributed import nn as dist_nn

            cos_sum, sin_sum = dist_nn.all_reduce(cos_sum), dist_nn.all_reduce(sin_sum)  # autograd-aware
        err = (cos_sum / num_samples - self.phi.to(x_t.dtype)).square() + (sin_sum / num_samples).square()
        return ((err @ self.weights.to(err.dtype)) * num_samples).mean()


class LeJEPALoss(nn.Module):
    """``lambda_param * SIGReg(all views) + (1 - lambda_param) * invariance(all views, global views)``.

    Args:
        lambda_param: Weight of SIGReg in [0, 1].
        gather_distributed: SIGReg over the global batch.
        sigreg_knots: SIGReg frequencies.
        sigreg_t_max: SIGReg largest frequency.
        sigreg_num_vectors: SIGReg random directions.
    """

    def __init__(self, lambda_param: float = 0.05, gather_distributed: bool = False, sigreg_knots: int = 17,
                 sigreg_t_max: float = 3.0, sigreg_num_vectors: int = 1024) -> None:  # fmt: skip
        super().__init__()
        if not 0.0 <= lambda_param <= 1.0:
            raise ValueError("lambda_param must be in the unit interval [0, 1].")
        self.lambda_param = lambda_param
        self.sigreg = SIGReg(knots=sigreg_knots, t_max=sigreg_t_max, num_vectors=sigreg_num_vectors,
                             gather_distributed=gather_distributed)  # fmt: skip

    def forward(self, *, local_proj: Tensor, global_proj: Tensor) -> Tensor:
        """Loss of local (Vl, N, D) and global (Vg, N, D) view projections."""
        for name, t in (("local_proj", local_proj), ("global_proj", global_proj)):
            if t.ndim != 3:
                raise ValueError(f"{name} must have shape (V, N, D), got {tuple(t.shape)}.")
            if t.shape[0] < 1:
                raise ValueError(f"{name} must have at least one view, got {tuple(t.shape)}.")
        if local_proj.shape[1:] != global_proj.shape[1:]:
            raise ValueError(
                "local_proj and global_proj must have matching batch and feature dimensions, got "
                f"{tuple(local_proj.shape)} and {tuple(global_proj.shape)}."
            )
        all_proj = torch.cat([global_proj, local_proj], dim=0)
        inv = lejepa_invariance_loss(all_proj=all_proj, global_proj=global_proj)
        return self.lambda_param * self.sigreg(all_proj) + (1.0 - self.lambda_param) * inv
