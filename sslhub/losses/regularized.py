"""Non-contrastive losses: SimSiam/BYOL cosine, Barlow Twins, VICReg, TiCo and VISReg."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.losses import dist


class NegativeCosineSimilarity(nn.Module):
    """Mean negative cosine similarity (SimSiam, BYOL).

    Args:
        dim: Dimension along which the similarity is computed.
        eps: Small value to avoid division by zero.
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """Returns ``-mean(cos(x0, x1))``."""
        return -F.cosine_similarity(x0, x1, self.dim, self.eps).mean()


def _standardize(z: Tensor) -> Tensor:
    """Zero mean, unit (biased) variance per feature over the batch, exactly like batch norm."""
    return F.batch_norm(z, None, None, training=True)


def _off_diagonal(x: Tensor) -> Tensor:
    """Flattened off-diagonal elements of a square matrix."""
    n = x.shape[0]
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss: cross-correlation matrix pushed towards the identity.

    Args:
        lambda_param: Weight of the redundancy-reduction (off-diagonal) term.
        gather_distributed: Average the cross-correlation matrices of all processes (with gradients).
    """

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False) -> None:
        super().__init__()
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed
        dist.check_available(gather_distributed)

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """Loss for two batches of projections of shape (batch_size, dim)."""
        c = _standardize(z_a).t() @ _standardize(z_b) / z_a.shape[0]
        if self.gather_distributed:
            c = dist.all_reduce_mean(c)
        on_diag = (torch.diagonal(c) - 1).pow(2).sum()
        off_diag = _off_diagonal(c).pow(2).sum()
        return on_diag + self.lambda_param * off_diag


def invariance_loss(x: Tensor, y: Tensor) -> Tensor:
    """VICReg invariance term: mean squared error."""
    return F.mse_loss(x, y)


def variance_loss(x: Tensor, eps: float = 0.0001) -> Tensor:
    """VICReg variance term: hinge on the per-feature standard deviation over the batch."""
    std = torch.sqrt(x.var(dim=0) + eps)
    return F.relu(1.0 - std).mean()


def covariance_loss(x: Tensor) -> Tensor:
    """VICReg covariance term for tensors of shape (batch_size, ..., dim)."""
    x = x - x.mean(dim=0)
    n, d = x.shape[0], x.shape[-1]
    cov = torch.einsum("b...c,b...d->...cd", x, x) / (n - 1)
    off = ~torch.eye(d, device=x.device, dtype=torch.bool)
    return (cov[..., off].pow(2).sum(-1) / d).mean()


class VICRegLoss(nn.Module):
    """VICReg loss (variance-invariance-covariance regularisation).

    Args:
        lambda_param: Weight of the invariance term.
        mu_param: Weight of the variance term.
        nu_param: Weight of the covariance term.
        gather_distributed: Compute variance and covariance over the batches of all processes.
        eps: Numerical stability term inside the square root of the variance.
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 0.0001,
    ) -> None:
        super().__init__()
        dist.check_available(gather_distributed)
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """Loss for two tensors of shape (batch_size, ..., dim) with batch_size > 1."""
        assert z_a.shape[0] > 1 and z_b.shape[0] > 1, (
            f"z_a and z_b must have batch size > 1 but found {z_a.shape[0]} and {z_b.shape[0]}"
        )
        assert z_a.shape == z_b.shape, f"z_a and z_b must have same shape but found {z_a.shape} and {z_b.shape}."
        inv = invariance_loss(z_a, z_b)
        if self.gather_distributed and dist.world_size() > 1:
            z_a, z_b = torch.cat(dist.gather(z_a)), torch.cat(dist.gather(z_b))
        var = 0.5 * (variance_loss(z_a, self.eps) + variance_loss(z_b, self.eps))
        cov = covariance_loss(z_a) + covariance_loss(z_b)
        return self.lambda_param * inv + self.mu_param * var + self.nu_param * cov


class TiCoLoss(nn.Module):
    """TiCo loss: invariance plus contrast against an EMA of the embedding covariance.

    The covariance estimate ``C`` is a plain attribute (not a buffer), as in Lightly, so it is not saved
    in state dicts.

    Args:
        beta: EMA coefficient of the covariance matrix.
        rho: Weight of the covariance contrast term.
        gather_distributed: Use the batches of all processes (with gradients).
    """

    def __init__(self, beta: float = 0.9, rho: float = 8.0, gather_distributed: bool = False) -> None:
        super().__init__()
        dist.check_available(gather_distributed)
        self.beta = beta
        self.rho = rho
        self.C: Tensor | None = None
        self.gather_distributed = gather_distributed

    def forward(self, z_a: Tensor, z_b: Tensor, update_covariance_matrix: bool = True) -> Tensor:
        """Loss for two batches of shape (batch_size, dim); updates ``C`` unless told otherwise."""
        assert z_a.shape[0] > 1 and z_b.shape[0] > 1, (
            f"z_a and z_b must have batch size > 1 but found {z_a.shape[0]} and {z_b.shape[0]}"
        )
        assert z_a.shape == z_b.shape, f"z_a and z_b must have same shape but found {z_a.shape} and {z_b.shape}."
        if self.gather_distributed and dist.world_size() > 1:
            z_a, z_b = torch.cat(dist.gather(z_a)), torch.cat(dist.gather(z_b))
        z_a = F.normalize(z_a, dim=1)
        z_b = F.normalize(z_b, dim=1)
        B = (z_a.t() @ z_a).detach() / z_a.shape[0]
        if self.C is None:
            self.C = torch.zeros_like(B)
        C = self.beta * self.C + (1 - self.beta) * B
        invariance = 1.0 - (z_a * z_b).sum(dim=1).mean()
        contrast = self.rho * ((z_a @ C) * z_a).sum(dim=1).mean()
        if update_covariance_matrix:
            self.C = C.detach()
        return invariance + contrast


class VISRegLossComponents(NamedTuple):
    """The terms of :class:`VISRegLoss`: ``total`` and its parts."""

    total: Tensor
    pred: Tensor
    scale: Tensor
    shape: Tensor
    center: Tensor


def visreg_center_loss(z: Tensor) -> Tensor:
    """Mean square of the batch mean of ``z`` (..., N, D): VISReg's center term."""
    return z.mean(dim=-2).square().mean()


def visreg_scale_loss(z: Tensor) -> Tensor:
    """Mean square of ``1 - std`` of each dimension over the batch of ``z`` (..., N, D): VISReg's scale term."""
    return (1.0 - z.std(dim=-2, unbiased=False)).square().mean()


def visreg_shape_loss(z: Tensor, num_slices: int, eps: float = 0.0001) -> Tensor:
    """Sliced distance of the standardised embeddings to a standard normal: random unit directions (torch's global
    generator, as Lightly), sorted projections against the normal quantiles. VISReg's shape term."""
    if num_slices < 1:
        raise ValueError("num_slices must be a positive integer.")
    if eps <= 0:
        raise ValueError("eps must be greater than zero.")
    n, d = z.size(-2), z.size(-1)
    z_norm = (z - z.mean(dim=-2, keepdim=True)) / (z.std(dim=-2, unbiased=False, keepdim=True).detach() + eps)
    slices = torch.randn(d, num_slices, device=z.device, dtype=z.dtype)
    slices = slices / slices.norm(p=2, dim=0)
    positions = torch.arange(1, n + 1, device=z.device, dtype=torch.float32) / (n + 1)
    quantiles = (torch.erfinv(2 * positions - 1) * math.sqrt(2)).to(z.dtype).unsqueeze(-1)  # Normal(0, 1).icdf
    return ((z_norm @ slices).sort(dim=-2).values - quantiles).square().mean()


class VISRegLoss(nn.Module):
    """VISReg loss: ``(1 - lambda_param) * prediction + lambda_param * (scale + shape + center regularisers)``.

    The prediction term pulls every view's projection to the mean of the global views (LeJEPA's invariance);
    the regularisers push each view's projections to zero mean, unit standard deviation and, along
    ``num_slices`` random directions, a standard normal distribution.

    Args:
        lambda_param: Weight of the regularisers, in [0, 1].
        num_slices: Random directions of the shape term.
        lambda_scale, lambda_shape, lambda_center: Weights of the three regularisers.
        gather_distributed: Regularise over the batches of all processes.
        eps: Added to the standard deviation in the shape term.
    """

    def __init__(self, lambda_param: float = 0.9, num_slices: int = 4096, lambda_scale: float = 1.0,
                 lambda_shape: float = 1.0, lambda_center: float = 1.0, gather_distributed: bool = False,
                 eps: float = 0.0001):  # fmt: skip
        super().__init__()
        if not 0.0 <= lambda_param <= 1.0:
            raise ValueError("lambda_param must be in the unit interval [0, 1].")
        if num_slices < 1:
            raise ValueError("num_slices must be a positive integer.")
        if lambda_scale < 0 or lambda_shape < 0 or lambda_center < 0:
            raise ValueError("lambda_scale, lambda_shape, and lambda_center must be non-negative.")
        if eps <= 0:
            raise ValueError("eps must be greater than zero.")
        dist.check_available(gather_distributed)
        self.lambda_param = lambda_param
        self.num_slices = num_slices
        self.lambda_scale = lambda_scale
        self.lambda_shape = lambda_shape
        self.lambda_center = lambda_center
        self.gather_distributed = gather_distributed
        self.eps = eps

    def forward(self, *, local_proj: Tensor, global_proj: Tensor) -> Tensor:
        """Total loss for projections ``(V_local, N, D)`` and ``(V_global, N, D)``."""
        return self.forward_components(local_proj=local_proj, global_proj=global_proj).total

    def forward_components(self, *, local_proj: Tensor, global_proj: Tensor) -> VISRegLossComponents:
        """All terms of the loss, for logging."""
        for name, views, t in (("local_proj", "V_local", local_proj), ("global_proj", "V_global", global_proj)):
            if t.ndim != 3:
                raise ValueError(f"{name} must have shape ({views}, N, D), got {t.shape}.")
        if local_proj.shape[1:] != global_proj.shape[1:]:
            raise ValueError(f"local_proj and global_proj must have matching batch and feature dimensions, got "
                             f"{local_proj.shape} and {global_proj.shape}.")  # fmt: skip
        if local_proj.size(-2) < 2:
            raise ValueError(f"Batch size must be greater than one, got {local_proj.size(-2)}.")
        proj = torch.cat([global_proj, local_proj], dim=0)
        pred = (global_proj.mean(0) - proj).square().mean()  # lejepa_invariance_loss (no import cycle)
        if self.gather_distributed and dist.world_size() > 1:
            proj = torch.cat(dist.gather(proj), dim=-2)
        scale = visreg_scale_loss(proj)
        shape = visreg_shape_loss(proj, num_slices=self.num_slices, eps=self.eps)
        center = visreg_center_loss(proj)
        reg = self.lambda_scale * scale + self.lambda_shape * shape + self.lambda_center * center
        total = (1.0 - self.lambda_param) * pred + self.lambda_param * reg
        return VISRegLossComponents(total=total, pred=pred, scale=scale, shape=shape, center=center)
