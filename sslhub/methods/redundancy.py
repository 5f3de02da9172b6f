"""Redundancy-reduction methods, from the statistics or the spectrum of the embedding batch: Barlow Twins, VICReg,
W-MSE (whitening), MMCR (manifold capacity), EMP-SSL (coding rate) and FroSSL (Frobenius norm)."""

from __future__ import annotations

import torch
from torch import nn

from sslhub import heads as H
from sslhub import losses as L
from sslhub.heads.utils import update_momentum
from sslhub.methods.base import METHODS, SSLMethod
from sslhub.methods.base import pool as _pool
from sslhub.utils.scheduler import cosine_schedule

__all__ = ["EMPSSL", "MMCR", "WMSE", "BarlowTwins", "FroSSL", "VICReg"]


class BarlowTwins(SSLMethod):
    def __init__(self, backbone, num_features, hidden_dim=8192, out_dim=8192, lambda_param=5e-3, gather_distributed=False):
        super().__init__(backbone, num_features)
        self.projection_head = H.BarlowTwinsProjectionHead(num_features, hidden_dim, out_dim)
        self.criterion = L.BarlowTwinsLoss(lambda_param=lambda_param, gather_distributed=gather_distributed)

    def forward(self, views, progress):
        z0, z1 = (self.projection_head(_pool(self.backbone, v)) for v in views[:2])
        return self.criterion(z0, z1)


class VICReg(SSLMethod):
    def __init__(self, backbone, num_features, hidden_dim=2048, out_dim=2048, num_layers=2, gather_distributed=False):
        super().__init__(backbone, num_features)
        self.projection_head = H.VICRegProjectionHead(num_features, hidden_dim, out_dim, num_layers=num_layers)
        self.criterion = L.VICRegLoss(gather_distributed=gather_distributed)

    def forward(self, views, progress):
        z0, z1 = (self.projection_head(_pool(self.backbone, v)) for v in views[:2])
        return self.criterion(z0, z1)


def _mlp_head(num_features: int, hidden_dim: int, out_dim: int) -> H.ProjectionHead:
    """Linear-BN-ReLU-Linear (the W-MSE and EMP-SSL projectors)."""
    return H.ProjectionHead(
        [(num_features, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()), (hidden_dim, out_dim, None, None)]
    )


class WMSE(SSLMethod):
    """W-MSE: embeddings of ``num_samples`` views whitened in sub-batches of ``w_size``, then the MSE between
    the whitened views. All views go through the model as one batch, as in the authors' code
    (github.com/htdt/self-supervised); the batch size must be at least ``w_size``."""

    def __init__(self, backbone, num_features, hidden_dim=1024, out_dim=64, num_samples=2, w_size=128, w_iter=1,
                 momentum=0.01, eps=0.0):  # fmt: skip
        super().__init__(backbone, num_features)
        if 2 * out_dim > w_size:
            raise ValueError(f"W-MSE needs model.w_size >= 2 * model.out_dim for a stable whitening; got "
                             f"w_size={w_size}, out_dim={out_dim}")  # fmt: skip
        self.projection_head = _mlp_head(num_features, hidden_dim, out_dim)
        self.criterion = L.WMSELoss(embedding_dim=out_dim, momentum=momentum, eps=eps, w_iter=w_iter, w_size=w_size,
                                    num_samples=num_samples)  # fmt: skip

    def forward(self, views, progress):
        n = self.criterion.num_samples
        if len(views) < n:
            raise ValueError(f"W-MSE with model.num_samples={n} needs {n} views, the transform made {len(views)}")
        if views[0].shape[0] < self.criterion.w_size:
            raise ValueError(f"W-MSE whitens sub-batches of model.w_size={self.criterion.w_size} embeddings, but the "
                             f"batch has {views[0].shape[0]} images; raise batch_size or lower model.w_size "
                             f"(>= 2 * model.out_dim)")  # fmt: skip
        return self.criterion(self.projection_head(_pool(self.backbone, torch.cat(views[:n]))))


class MMCR(SSLMethod):
    """MMCR: maximum manifold capacity of the embeddings of k views per image, online and momentum encoders
    (Lightly's example: the momentum branch sees the same views, without gradients).

    ``normalize=True`` (default) puts the embeddings on the unit sphere before the loss, as the paper and the
    authors' code do. Lightly's example feeds them unnormalised; its loss (minus a nuclear norm) then has no lower
    bound and the embeddings grow without limit (loss -6e9 after 45 steps of the CPU benchmark).
    ``normalize=False`` is Lightly's example, step for step."""

    def __init__(self, backbone, num_features, hidden_dim=None, out_dim=128, num_layers=2, lmda=5e-3,
                 momentum_start=0.996, momentum_end=1.0, normalize=True):  # fmt: skip
        super().__init__(backbone, num_features)
        self.projection_head = H.MMCRProjectionHead(num_features, hidden_dim or num_features, out_dim, num_layers=num_layers)
        self._momentum_copy("backbone", "projection_head")
        self.criterion = L.MMCRLoss(lmda=lmda)
        self.momentum = (momentum_start, momentum_end)
        self.normalize = normalize

    def forward(self, views, progress):
        z_o = torch.stack([self.projection_head(_pool(self.backbone, v)) for v in views], dim=1)
        with torch.no_grad():
            z_m = torch.stack([self.projection_head_momentum(_pool(self.backbone_momentum, v)) for v in views], dim=1)
        if self.normalize:
            z_o, z_m = nn.functional.normalize(z_o, dim=-1), nn.functional.normalize(z_m, dim=-1)
        return self.criterion(z_o, z_m)

    def after_step(self, step, total):
        m = cosine_schedule(step, total, *self.momentum)
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)


class EMPSSL(SSLMethod):
    """EMP-SSL: many views per image; total coding rate of each view's (normalised) embeddings plus their
    cosine similarity to the mean embedding."""

    views_needed = 4

    def __init__(self, backbone, num_features, hidden_dim=4096, out_dim=512, tcr_eps=0.2, inv_coef=200.0):
        super().__init__(backbone, num_features)
        self.projection_head = _mlp_head(num_features, hidden_dim, out_dim)
        self.criterion = L.EMPSSLLoss(tcr_eps=tcr_eps, inv_coef=inv_coef)

    def forward(self, views, progress):
        z = self.projection_head(_pool(self.backbone, torch.cat(views)))  # one batch, as the authors' code
        return self.criterion([nn.functional.normalize(c, dim=1) for c in z.chunk(len(views))])


class FroSSL(SSLMethod):
    """FroSSL: VICReg's projector and the Frobenius-norm loss over the views (Lightly's example)."""

    def __init__(self, backbone, num_features, hidden_dim=2048, out_dim=2048, num_layers=2, invariance_weight=1.0):
        super().__init__(backbone, num_features)
        self.projection_head = H.VICRegProjectionHead(num_features, hidden_dim, out_dim, num_layers=num_layers)
        self.criterion = L.FroSSLLoss(invariance_weight=invariance_weight)

    def forward(self, views, progress):
        return self.criterion([self.projection_head(_pool(self.backbone, v)) for v in views])


METHODS.update({"barlowtwins": BarlowTwins, "vicreg": VICReg, "wmse": WMSE, "mmcr": MMCR, "emp_ssl": EMPSSL, "frossl": FroSSL})
