"""Redundancy-reduction methods: Barlow Twins and VICReg (statistics of the embedding batch)."""

from __future__ import annotations

from sslhub import heads as H
from sslhub import losses as L
from sslhub.methods.base import METHODS, SSLMethod
from sslhub.methods.base import pool as _pool

__all__ = ["BarlowTwins", "VICReg"]


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


METHODS.update({"barlowtwins": BarlowTwins, "vicreg": VICReg})
