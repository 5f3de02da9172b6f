"""Losses over many views of each image, from the spectrum or the Frobenius norm of embedding matrices:
MMCR (manifold capacity), EMP-SSL (total coding rate) and FroSSL."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["EMPSSLLoss", "FroSSLLoss", "MMCRLoss", "emp_ssl_invariance_loss", "tcr_loss"]


class MMCRLoss(nn.Module):
    """Maximum manifold capacity: ``-||centroids||_* + lmda * mean_i ||Z_i||_*`` (nuclear norms).

    Args:
        lmda: Weight of the per-image (manifold) nuclear norms.
    """

    def __init__(self, lmda: float = 5e-3):
        super().__init__()
        if lmda < 0:
            raise ValueError("lmda must be greater than or equal to 0")
        self.lmda = lmda

    def forward(self, online: Tensor, momentum: Tensor) -> Tensor:
        """Loss for online and momentum embeddings ``(B, k, D)`` of k views per image."""
        assert online.shape == momentum.shape, "online and momentum need to have the same shape"
        z = torch.cat([online, momentum], dim=1)
        centroids = z.mean(dim=1)
        # Full SVDs as Lightly: with repeated views (online == momentum at the start) some singular values are 0,
        # where the nuclear norm has no gradient; svd and svdvals then pick different (valid) subgradients.
        _, s_z, _ = torch.linalg.svd(z)
        _, s_c, _ = torch.linalg.svd(centroids)
        return -1.0 * torch.sum(s_c) + self.lmda * torch.sum(s_z) / online.shape[0]


def tcr_loss(z: Tensor, eps: float) -> Tensor:
    """Total coding rate ``0.5 * logdet(I + d / (b * eps) * Z^T Z)``, averaged over the views of ``z`` (V, B, D)."""
    _, b, d = z.shape
    eye = torch.eye(d, device=z.device).unsqueeze(0)
    return 0.5 * torch.logdet(eye + d / (b * eps) * torch.einsum("vbd,vbe->vde", z, z)).mean()


def emp_ssl_invariance_loss(z: Tensor) -> Tensor:
    """Minus the mean cosine similarity of each view in ``z`` (V, B, D) to the mean of the views (Lightly's
    ``lightly.loss.emp_ssl_loss.invariance_loss``)."""
    return -F.cosine_similarity(z, z.mean(0, keepdim=True), dim=-1).mean()


class EMPSSLLoss(nn.Module):
    """EMP-SSL loss: total coding rate of each view plus ``inv_coef`` times minus the cosine similarity of each
    view to the mean of the views.

    Args:
        tcr_eps: Distortion of the coding rate.
        inv_coef: Weight of the invariance term.
    """

    def __init__(self, tcr_eps: float = 0.2, inv_coef: float = 200.0) -> None:
        super().__init__()
        self.tcr_eps = tcr_eps
        self.inv_coef = inv_coef

    def forward(self, z_views: list[Tensor]) -> Tensor:
        """Loss for a list of view embeddings, each ``(B, D)``."""
        z = torch.stack(z_views)
        return tcr_loss(z, eps=self.tcr_eps) + self.inv_coef * emp_ssl_invariance_loss(z)


class FroSSLLoss(nn.Module):
    """FroSSL loss: ``2 log ||C||_F`` of each view's trace-normalised covariance, plus the MSE of each view to
    the mean view (embeddings normalised per feature).

    Args:
        invariance_weight: Weight of the invariance term.
    """

    def __init__(self, invariance_weight: float = 1.0) -> None:
        super().__init__()
        self.invariance_weight = invariance_weight

    def forward(self, z_views: list[Tensor]) -> Tensor:
        """Loss for at least two view embeddings, each ``(B, D)``."""
        if len(z_views) < 2:
            raise ValueError(f"z_views must contain at least two views but found {len(z_views)}.")
        v, d = len(z_views), z_views[0].size(1)
        zs = [F.normalize(z, p=2, dim=0) for z in z_views]
        mean = torch.mean(torch.stack(zs), dim=0)
        reg, inv = z_views[0].new_zeros(()), z_views[0].new_zeros(())
        for z in zs:
            cov = z.T @ z if z.size(0) > d else z @ z.T  # the smaller Gram matrix has the same Frobenius norm
            cov = cov / torch.trace(cov).detach()  # a constant scale, as Lightly's trace(...).item()
            reg = reg + 2 * torch.log(torch.linalg.norm(cov, ord="fro"))
            inv = inv + v * d * F.mse_loss(z, mean)
        return reg + self.invariance_weight * inv
