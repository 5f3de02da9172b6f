"""Self-distillation methods: BYOL, SimSiam, FastSiam, TiCo and DINO (a predictor or an EMA teacher, no negatives)."""

from __future__ import annotations

import copy

import torch

from sslhub import heads as H
from sslhub import losses as L
from sslhub.heads.utils import deactivate_requires_grad, update_momentum
from sslhub.methods.base import METHODS, SSLMethod
from sslhub.methods.base import pool as _pool
from sslhub.utils.scheduler import cosine_schedule

__all__ = ["BYOL", "DINO", "FastSiam", "SimSiam", "TiCo"]


class BYOL(SSLMethod):
    def __init__(self, backbone, num_features, hidden_dim=4096, out_dim=256, momentum_start=0.99, momentum_end=1.0):
        super().__init__(backbone, num_features)
        self.projection_head = H.BYOLProjectionHead(num_features, hidden_dim, out_dim)
        self.prediction_head = H.BYOLPredictionHead(out_dim, hidden_dim, out_dim)
        self._momentum_copy("backbone", "projection_head")
        self.criterion = L.NegativeCosineSimilarity()
        self.momentum = (momentum_start, momentum_end)

    def forward(self, views, progress):
        x0, x1 = views[:2]
        p0 = self.prediction_head(self.projection_head(_pool(self.backbone, x0)))
        p1 = self.prediction_head(self.projection_head(_pool(self.backbone, x1)))
        with torch.no_grad():
            z0 = self.projection_head_momentum(_pool(self.backbone_momentum, x0))
            z1 = self.projection_head_momentum(_pool(self.backbone_momentum, x1))
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    def after_step(self, step, total):
        m = cosine_schedule(step, total, *self.momentum)
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)


class TiCo(BYOL):
    def __init__(self, backbone, num_features, hidden_dim=4096, out_dim=256, momentum_start=0.99, momentum_end=1.0,
                 beta=0.9, rho=20.0, gather_distributed=False):  # fmt: skip
        SSLMethod.__init__(self, backbone, num_features)
        self.projection_head = H.TiCoProjectionHead(num_features, hidden_dim, out_dim)
        self._momentum_copy("backbone", "projection_head")
        self.criterion = L.TiCoLoss(beta=beta, rho=rho, gather_distributed=gather_distributed)
        self.momentum = (momentum_start, momentum_end)

    def forward(self, views, progress):
        x0, x1 = views[:2]
        z0 = self.projection_head(_pool(self.backbone, x0))
        with torch.no_grad():
            z1 = self.projection_head_momentum(_pool(self.backbone_momentum, x1))
        return self.criterion(z0, z1)


class SimSiam(SSLMethod):
    def __init__(self, backbone, num_features, hidden_dim=None, out_dim=2048, pred_hidden_dim=512):
        super().__init__(backbone, num_features)
        self.projection_head = H.SimSiamProjectionHead(num_features, hidden_dim or num_features, out_dim)
        self.prediction_head = H.SimSiamPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self.criterion = L.NegativeCosineSimilarity()

    def forward(self, views, progress):
        z0, z1 = (self.projection_head(_pool(self.backbone, v)) for v in views[:2])
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        return 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))


class DINO(SSLMethod):
    """DINO on any backbone: student trained, teacher an EMA; evaluation uses the teacher."""

    eval_prefix = "teacher_backbone."

    def __init__(self, backbone, num_features, hidden_dim=2048, bottleneck_dim=256, out_dim=65536,
                 freeze_last_layer=1, warmup_teacher_temp=0.04, teacher_temp=0.04, warmup_teacher_temp_epochs=30,
                 student_temp=0.1, center_momentum=0.9, momentum_start=0.996, momentum_end=1.0):  # fmt: skip
        super().__init__(backbone, num_features)
        self.projection_head = H.DINOProjectionHead(num_features, hidden_dim, bottleneck_dim, out_dim,
                                                    freeze_last_layer=freeze_last_layer)  # fmt: skip
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = H.DINOProjectionHead(num_features, hidden_dim, bottleneck_dim, out_dim)
        self.teacher_head.load_state_dict(self.projection_head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = L.DINOLoss(output_dim=out_dim, warmup_teacher_temp=warmup_teacher_temp,
                                    teacher_temp=teacher_temp, warmup_teacher_temp_epochs=warmup_teacher_temp_epochs,
                                    student_temp=student_temp, center_momentum=center_momentum)  # fmt: skip
        self.momentum = (momentum_start, momentum_end)

    def forward(self, views, progress):
        with torch.no_grad():
            t_out = [self.teacher_head(_pool(self.teacher_backbone, v)) for v in views[:2]]
        s_out = [self.projection_head(_pool(self.backbone, v)) for v in views]
        return self.criterion(t_out, s_out, epoch=progress[2])

    def before_optimizer_step(self, epoch):
        self.projection_head.cancel_last_layer_gradients(epoch)

    def after_step(self, step, total):
        m = cosine_schedule(step, total, *self.momentum)
        update_momentum(self.backbone, self.teacher_backbone, m)
        update_momentum(self.projection_head, self.teacher_head, m)


class FastSiam(SimSiam):
    """FastSiam: SimSiam with K views; each view's prediction targets the mean of the other views' (detached)
    projections. Each view runs through the model separately, as in Lightly's example."""

    views_needed = 4

    def forward(self, views, progress):
        zs, ps = [], []
        for v in views:
            z = self.projection_head(_pool(self.backbone, v))
            ps.append(self.prediction_head(z))
            zs.append(z.detach())
        z_all, n = torch.stack(zs), len(views)
        loss = z_all.new_zeros(())
        for i in range(n):
            others = torch.arange(n, device=z_all.device) != i
            loss = loss + self.criterion(ps[i], z_all[others].mean(dim=0)) / n
        return loss


METHODS.update({"byol": BYOL, "simsiam": SimSiam, "tico": TiCo, "dino": DINO, "fastsiam": FastSiam})
