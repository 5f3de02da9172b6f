"""Dense methods: DenseCL (losses between locations of the feature map)."""

from __future__ import annotations

import torch

from sslhub import heads as H
from sslhub import losses as L
from sslhub.heads.utils import cosine_schedule, update_momentum
from sslhub.methods.base import METHODS, SSLMethod, feature_map, select_most_similar

__all__ = ["DenseCL"]


class DenseCL(SSLMethod):
    """DenseCL: a global MoCo loss plus a dense loss between matched feature-map locations."""

    def __init__(self, backbone, num_features, hidden_dim=None, out_dim=128, temperature=0.2,
                 memory_bank_size=4096, momentum_start=0.996, momentum_end=1.0, lambda_=0.5):  # fmt: skip
        super().__init__(backbone, num_features)
        hidden = hidden_dim or num_features
        self.projection_head_global = H.DenseCLProjectionHead(num_features, hidden, out_dim)
        self.projection_head_local = H.DenseCLProjectionHead(num_features, hidden, out_dim)
        self._momentum_copy("backbone", "projection_head_global", "projection_head_local")
        self.criterion_global = L.NTXentLoss(temperature=temperature, memory_bank_size=(memory_bank_size, out_dim))
        self.criterion_local = L.NTXentLoss(temperature=temperature, memory_bank_size=(memory_bank_size, out_dim))
        self.momentum = (momentum_start, momentum_end)
        self.lambda_ = lambda_

    def _encode(self, backbone, head_g, head_l, x):
        f = feature_map(backbone, x)
        g = head_g(f.mean(dim=(2, 3)))
        tokens = f.flatten(2).permute(0, 2, 1)
        return g, head_l(tokens), tokens

    def forward(self, views, progress):
        qg, ql, qf = self._encode(self.backbone, self.projection_head_global, self.projection_head_local, views[0])
        with torch.no_grad():
            kg, kl, kf = self._encode(self.backbone_momentum, self.projection_head_global_momentum,
                                      self.projection_head_local_momentum, views[1])  # fmt: skip
            kl = select_most_similar(qf, kf, kl)
        loss_g = self.criterion_global(qg, kg)
        loss_l = self.criterion_local(ql.flatten(0, 1), kl.flatten(0, 1))
        return (1 - self.lambda_) * loss_g + self.lambda_ * loss_l

    def after_step(self, step, total):
        m = cosine_schedule(step, total, *self.momentum)
        for n in ("backbone", "projection_head_global", "projection_head_local"):
            update_momentum(getattr(self, n), getattr(self, f"{n}_momentum"), m)


METHODS.update({"densecl": DenseCL})
