"""Contrastive methods: SimCLR, DCL, DCLW, MoCo and NNCLR (positives against negatives)."""

from __future__ import annotations

import torch
from torch import nn

from sslhub import heads as H
from sslhub import losses as L
from sslhub.heads.utils import cosine_schedule, update_momentum
from sslhub.methods.base import METHODS, SSLMethod
from sslhub.methods.base import pool as _pool

__all__ = ["DCL", "DCLW", "MoCo", "NNCLR", "SimCLR"]


class SimCLR(SSLMethod):
    def __init__(self, backbone, num_features, hidden_dim=None, out_dim=128, temperature=0.5,
                 memory_bank_size=0, batch_norm=True, gather_distributed=False):  # fmt: skip
        super().__init__(backbone, num_features)
        # batch_norm=False is the head the Lightly Worker/CLI writes and loads strictly.
        self.projection_head = H.SimCLRProjectionHead(num_features, hidden_dim or num_features, out_dim, batch_norm=batch_norm)
        self.criterion = self._loss(temperature, memory_bank_size, gather_distributed)

    def _loss(self, temperature, memory_bank_size, gather_distributed) -> nn.Module:
        return L.NTXentLoss(temperature=temperature, memory_bank_size=memory_bank_size, gather_distributed=gather_distributed)

    def forward(self, views, progress):
        z0, z1 = (self.projection_head(_pool(self.backbone, v)) for v in views[:2])
        return self.criterion(z0, z1)


class DCL(SimCLR):
    def _loss(self, temperature, memory_bank_size, gather_distributed) -> nn.Module:
        return L.DCLLoss(temperature=temperature, gather_distributed=gather_distributed)


class DCLW(SimCLR):
    def _loss(self, temperature, memory_bank_size, gather_distributed) -> nn.Module:
        return L.DCLWLoss(temperature=temperature, gather_distributed=gather_distributed)


class MoCo(SSLMethod):
    """MoCo v2: query encoder trained, key encoder an EMA, negatives from a memory bank."""

    def __init__(self, backbone, num_features, hidden_dim=None, out_dim=128, temperature=0.2,
                 memory_bank_size=4096, momentum_start=0.996, momentum_end=1.0, gather_distributed=False):  # fmt: skip
        super().__init__(backbone, num_features)
        self.projection_head = H.MoCoProjectionHead(num_features, hidden_dim or num_features, out_dim)
        self._momentum_copy("backbone", "projection_head")
        self.criterion = L.NTXentLoss(temperature=temperature, memory_bank_size=(memory_bank_size, out_dim),
                                      gather_distributed=gather_distributed)  # fmt: skip
        self.momentum = (momentum_start, momentum_end)

    def forward(self, views, progress):
        q = self.projection_head(_pool(self.backbone, views[0]))
        with torch.no_grad():
            k = self.projection_head_momentum(_pool(self.backbone_momentum, views[1]))
        return self.criterion(q, k)

    def after_step(self, step, total):
        m = cosine_schedule(step, total, *self.momentum)
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)


class NNCLR(SSLMethod):
    def __init__(self, backbone, num_features, hidden_dim=2048, out_dim=256, pred_hidden_dim=4096,
                 memory_bank_size=4096, temperature=0.1, gather_distributed=False):  # fmt: skip
        super().__init__(backbone, num_features)
        self.projection_head = H.NNCLRProjectionHead(num_features, hidden_dim, out_dim)
        self.prediction_head = H.NNCLRPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self.memory_bank = L.NNMemoryBankModule(size=(memory_bank_size, out_dim))
        self.criterion = L.NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)

    def forward(self, views, progress):
        z0, z1 = (self.projection_head(_pool(self.backbone, v)) for v in views[:2])
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        nn0 = self.memory_bank(z0.detach(), update=False)
        nn1 = self.memory_bank(z1.detach(), update=True)
        return 0.5 * (self.criterion(nn0, p1) + self.criterion(nn1, p0))


METHODS.update({"simclr": SimCLR, "moco": MoCo, "dcl": DCL, "dclw": DCLW, "nnclr": NNCLR})
