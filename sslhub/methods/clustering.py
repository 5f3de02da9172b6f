"""Clustering methods: SwAV (online assignments to prototypes)."""

from __future__ import annotations

from torch import nn

from sslhub import heads as H
from sslhub import losses as L
from sslhub.methods.base import METHODS, SSLMethod
from sslhub.methods.base import pool as _pool

__all__ = ["SwAV"]


class SwAV(SSLMethod):
    """SwAV with multi-crop: the first two views are high resolution, the rest low resolution."""

    views_needed = 2

    def __init__(self, backbone, num_features, hidden_dim=2048, out_dim=128, n_prototypes=512, temperature=0.1,
                 sinkhorn_iterations=3, sinkhorn_epsilon=0.05):  # fmt: skip
        super().__init__(backbone, num_features)
        self.projection_head = H.SwaVProjectionHead(num_features, hidden_dim, out_dim)
        self.prototypes = H.SwaVPrototypes(out_dim, n_prototypes=n_prototypes)
        self.criterion = L.SwaVLoss(temperature=temperature, sinkhorn_iterations=sinkhorn_iterations,
                                    sinkhorn_epsilon=sinkhorn_epsilon)  # fmt: skip

    def forward(self, views, progress):
        self.prototypes.normalize()
        outs = []
        for v in views:
            z = nn.functional.normalize(self.projection_head(_pool(self.backbone, v)), dim=1, p=2)
            outs.append(self.prototypes(z, progress[2]))
        return self.criterion(outs[:2], outs[2:])


METHODS.update({"swav": SwAV})
