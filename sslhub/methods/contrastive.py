"""Contrastive methods: SimCLR, DCL, DCLW, MoCo, NNCLR, DirectCLR, MACL and PIRL (positives against negatives)."""

from __future__ import annotations

import torch
from torch import nn

from sslhub import heads as H
from sslhub import losses as L
from sslhub.heads.utils import update_momentum
from sslhub.methods.base import METHODS, SSLMethod
from sslhub.methods.base import pool as _pool
from sslhub.utils.scheduler import cosine_schedule

__all__ = ["DCL", "DCLW", "MACL", "PIRL", "DirectCLR", "MoCo", "NNCLR", "SimCLR"]


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


class DirectCLR(SSLMethod):
    """DirectCLR: InfoNCE on the first ``loss_dim`` features of the backbone representation, without a
    projection head. Both views go through the backbone as one batch, as in Lightly's example."""

    def __init__(self, backbone, num_features, loss_dim=64, temperature=0.5, memory_bank_size=0, gather_distributed=False):
        super().__init__(backbone, num_features)
        if loss_dim > num_features:
            raise ValueError(f"model.loss_dim={loss_dim} is larger than the backbone's {num_features} features; "
                             "set model.loss_dim <= num_features")  # fmt: skip
        self.criterion = L.DirectCLRLoss(loss_dim=loss_dim, temperature=temperature, memory_bank_size=memory_bank_size,
                                         gather_distributed=gather_distributed)  # fmt: skip

    def forward(self, views, progress):
        z0, z1 = _pool(self.backbone, torch.cat(views[:2])).chunk(2)
        return self.criterion(z0, z1)


class MACL(SimCLR):
    """MACL: SimCLR with the model-aware contrastive loss (temperature adapted to the positive alignment)."""

    def __init__(self, backbone, num_features, hidden_dim=None, out_dim=128, temperature=0.1, alpha=0.5, A_0=0.0):
        SSLMethod.__init__(self, backbone, num_features)
        self.projection_head = H.SimCLRProjectionHead(num_features, hidden_dim or num_features, out_dim)
        self.criterion = L.MACLLoss(temperature=temperature, alpha=alpha, A_0=A_0)


class PIRL(SSLMethod):
    """PIRL: an image and the jigsaw of its tiles should have the same embedding.

    Views: ``[image (B, C, H, W), tiles (B, T, C, h, w)]`` as :class:`~sslhub.transforms.PIRLTransform` makes them.
    Image branch: backbone, then ``projection_head``; jigsaw branch: backbone on every tile, ``jigsaw_head`` per
    tile, the T tile embeddings concatenated in the transform's (shuffled) order, then ``jigsaw_projection``.
    The loss is NT-Xent between the two branches (in-batch negatives, or a queue of ``memory_bank_size`` image
    embeddings); the paper's per-image memory of EMA representations is not reproduced (Lightly has no PIRL model).
    """

    def __init__(self, backbone, num_features, out_dim=128, n_grid=3, temperature=0.07, memory_bank_size=0,
                 gather_distributed=False):  # fmt: skip
        super().__init__(backbone, num_features)
        self.projection_head = nn.Linear(num_features, out_dim)
        self.jigsaw_head = nn.Linear(num_features, out_dim)
        self.jigsaw_projection = nn.Linear(out_dim * n_grid * n_grid, out_dim)
        self.n_tiles = n_grid * n_grid
        bank = (memory_bank_size, out_dim) if memory_bank_size else 0
        self.criterion = L.NTXentLoss(temperature=temperature, memory_bank_size=bank, gather_distributed=gather_distributed)

    def forward(self, views, progress):
        image, tiles = views[0], views[1]
        if tiles.ndim != 5 or tiles.shape[1] != self.n_tiles:
            raise ValueError(f"PIRL needs views [image, tiles (B, {self.n_tiles}, C, h, w)] (PIRLTransform with "
                             f"n_grid matching model.n_grid), got tiles of shape {tuple(tiles.shape)}")  # fmt: skip
        z = self.projection_head(_pool(self.backbone, image))
        t = self.jigsaw_head(_pool(self.backbone, tiles.flatten(0, 1)))
        z_jigsaw = self.jigsaw_projection(t.view(image.shape[0], -1))
        return self.criterion(z_jigsaw, z)


METHODS.update({"simclr": SimCLR, "moco": MoCo, "dcl": DCL, "dclw": DCLW, "nnclr": NNCLR, "directclr": DirectCLR,
                "macl": MACL, "pirl": PIRL})
