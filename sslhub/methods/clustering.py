"""Clustering methods: SwAV (online assignments to prototypes) and SMoG (synchronous momentum grouping)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sslhub import heads as H
from sslhub import losses as L
from sslhub.heads.utils import deactivate_requires_grad, update_momentum
from sslhub.methods.base import METHODS, SSLMethod
from sslhub.methods.base import pool as _pool

__all__ = ["SMoG", "SwAV", "kmeans"]


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


@torch.no_grad()
def kmeans(x: Tensor, k: int, iterations: int = 20) -> Tensor:
    """Lloyd's k-means on the rows of ``x``: ``k`` centres, initialised from random distinct rows (empty clusters
    keep their centre). Lightly's SMoG example uses scikit-learn's KMeans (k-means++, 10 restarts) instead."""
    if x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} rows, got {x.shape[0]}")
    centres = x[torch.randperm(x.shape[0], device=x.device)[:k]].clone()
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres


class SMoG(SSLMethod):
    """SMoG: the online prediction of one view classifies the momentum encoder's group assignment of the other;
    group features follow the online projections; every ``reset_interval`` steps the groups are re-clustered
    from a memory bank of projections and the momentum encoder is reset to the online one (Lightly's example,
    with :func:`kmeans` in place of scikit-learn's). Views swap roles every other step."""

    def __init__(self, backbone, num_features, hidden_dim=2048, out_dim=128, pred_hidden_dim=2048, n_groups=300,
                 beta=0.99, temperature=0.1, memory_bank_size=76800, reset_interval=300, momentum=0.99):  # fmt: skip
        super().__init__(backbone, num_features)
        if memory_bank_size < n_groups:
            raise ValueError(f"SMoG re-clusters its memory bank into model.n_groups={n_groups} groups: "
                             f"model.memory_bank_size={memory_bank_size} must be at least that")  # fmt: skip
        self.projection_head = H.SMoGProjectionHead(num_features, hidden_dim, out_dim)
        self.prediction_head = H.SMoGPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self._momentum_copy("backbone", "projection_head")
        self.smog = H.SMoGPrototypes(group_features=torch.rand(n_groups, out_dim), beta=beta)
        self.memory_bank = L.MemoryBankModule(size=(memory_bank_size, out_dim))
        self.criterion = nn.CrossEntropyLoss()
        self.n_groups, self.temperature = n_groups, temperature
        self.reset_interval, self.momentum = reset_interval, momentum

    def forward(self, views, progress):
        x0, x1 = views[:2]
        if progress[0] % 2:
            x0, x1 = x1, x0
        encoded = self.projection_head(_pool(self.backbone, x0))
        predicted = self.prediction_head(encoded)
        with torch.no_grad():
            target = self.projection_head_momentum(_pool(self.backbone_momentum, x1))
        assignments = self.smog.assign_groups(target)
        group_features = self.smog.get_updated_group_features(encoded)
        logits = self.smog(predicted, group_features, temperature=self.temperature)
        self.smog.set_group_features(group_features)
        loss = self.criterion(logits, assignments)
        self.memory_bank(encoded, update=True)
        return loss

    def after_step(self, step, total):
        # Lightly's loop does this at the start of the next step (step + 1).
        if (step + 1) % self.reset_interval == 0:
            centres = kmeans(self.memory_bank.bank.detach().float(), self.n_groups)
            self.smog.set_group_features(nn.functional.normalize(centres, dim=1))
            for n in ("backbone", "projection_head"):
                getattr(self, f"{n}_momentum").load_state_dict(getattr(self, n).state_dict())
                deactivate_requires_grad(getattr(self, f"{n}_momentum"))
        else:
            update_momentum(self.backbone, self.backbone_momentum, self.momentum)
            update_momentum(self.projection_head, self.projection_head_momentum, self.momentum)


METHODS.update({"swav": SwAV, "smog": SMoG})
