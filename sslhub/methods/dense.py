"""Dense methods, with losses between locations or regions of the feature map: DenseCL, VICRegL (matched grid
locations), DetCon-S and DetCon-B (mask-pooled regions)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub import heads as H
from sslhub import losses as L
from sslhub.heads.utils import update_momentum
from sslhub.methods.base import METHODS, SSLMethod, feature_map, select_most_similar
from sslhub.models.utils import pool_masked
from sslhub.utils.scheduler import cosine_schedule

__all__ = ["DenseCL", "DetConB", "DetConS", "VICRegL"]


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


class VICRegL(SSLMethod):
    """VICRegL: VICReg on pooled features plus VICReg on local features (the projected feature map) matched by
    distance and by location. Views: ``[views..., grids...]`` as :class:`~sslhub.transforms.VICRegLTransform`
    makes them, the first ``n_global_views`` global. The feature map is average-pooled to each view's grid size
    when they differ (Lightly's example sizes the grid to the ResNet's 7x7 map at 224 px)."""

    def __init__(self, backbone, num_features, hidden_dim=2048, out_dim=2048, local_hidden_dim=128, local_out_dim=128,
                 n_global_views=2, lambda_param=25.0, mu_param=25.0, nu_param=1.0, alpha=0.75, num_matches=(20, 4),
                 gather_distributed=False):  # fmt: skip
        super().__init__(backbone, num_features)
        self.projection_head = H.BarlowTwinsProjectionHead(num_features, hidden_dim, out_dim)
        self.local_projection_head = H.VicRegLLocalProjectionHead(num_features, local_hidden_dim, local_out_dim)
        self.n_global_views = n_global_views
        self.criterion = L.VICRegLLoss(lambda_param=lambda_param, mu_param=mu_param, nu_param=nu_param, alpha=alpha,
                                       num_matches=tuple(num_matches), gather_distributed=gather_distributed)  # fmt: skip

    def _features(self, x: Tensor, grid: Tensor) -> tuple[Tensor, Tensor]:
        f = feature_map(self.backbone, x)
        z = self.projection_head(F.adaptive_avg_pool2d(f, 1).flatten(1))
        if tuple(f.shape[2:]) != tuple(grid.shape[1:3]):
            f = F.adaptive_avg_pool2d(f, grid.shape[1:3])
        return z, self.local_projection_head(f.permute(0, 2, 3, 1))

    def forward(self, views, progress):
        if len(views) % 2 or any(g.ndim != 4 or g.shape[-1] != 2 for g in views[len(views) // 2:]):
            raise ValueError("VICRegL needs views [images..., grids (B, h, w, 2)...] as VICRegLTransform makes them")
        n = len(views) // 2
        images, grids = views[:n], views[n:]
        feats = [self._features(x, g) for x, g in zip(images, grids)]
        k = self.n_global_views
        local = (feats[k:], grids[k:]) if n > k else (None, None)
        loss = self.criterion(global_view_features=feats[:k], global_view_grids=grids[:k],
                              local_view_features=local[0], local_view_grids=local[1])  # fmt: skip
        return loss.reshape(())  # Lightly's loss has shape (1,); the loop wants a scalar


def _views_and_masks(views: list) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x0, mask0, x1, mask1)`` from ``[(x0, mask0), (x1, mask1)]`` or ``[x0, mask0, x1, mask1]``."""
    flat = [t for v in views for t in (v if isinstance(v, (tuple, list)) else (v,))]
    if len(flat) != 4 or flat[1].is_floating_point() or flat[3].is_floating_point():
        raise ValueError("DetCon needs two (view, mask) pairs as DetConSTransform makes them: [(x0, mask0), (x1, mask1)] "
                         f"with integer masks (B, 1, H, W) or (B, H, W); got {len(flat)} tensors")  # fmt: skip
    return flat[0], flat[1], flat[2], flat[3]


class _DetCon(SSLMethod):
    def _pooled(self, backbone: nn.Module, head: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
        f = feature_map(backbone, x)
        m = mask if mask.ndim == 4 else mask.unsqueeze(1)
        if m.shape[0] == 1 and x.shape[0] > 1:  # one mask for the whole batch (a batched crop shared by all images)
            m = m.expand(x.shape[0], -1, -1, -1)
        m = F.interpolate(m.float(), size=f.shape[2:], mode="nearest").long().squeeze(1)
        pooled = pool_masked(f, m, self.num_classes).permute(0, 2, 1)  # (B, num_classes, C)
        b, k, c = pooled.shape
        return head(pooled.reshape(b * k, c)).reshape(b, k, -1)

    def _mask_ids(self, x: Tensor) -> Tensor:
        return torch.arange(self.num_classes, device=x.device).unsqueeze(0).expand(x.shape[0], -1)


class DetConS(_DetCon):
    """DetCon-S: SimCLR's projection of mask-pooled regions; the same region in the other view is the positive
    (Lightly's example: every one of ``num_classes`` mask labels is a region, absent ones pool to 0)."""

    def __init__(self, backbone, num_features, hidden_dim=None, out_dim=128, num_classes=25, temperature=0.1,
                 gather_distributed=False):  # fmt: skip
        super().__init__(backbone, num_features)
        self.num_classes = num_classes
        self.projection_head = H.SimCLRProjectionHead(num_features, hidden_dim or num_features, out_dim)
        self.criterion = L.DetConSLoss(temperature=temperature, gather_distributed=gather_distributed)

    def forward(self, views, progress):
        x0, m0, x1, m1 = _views_and_masks(views)
        z0 = self._pooled(self.backbone, self.projection_head, x0, m0)
        z1 = self._pooled(self.backbone, self.projection_head, x1, m1)
        idx = self._mask_ids(x0)
        return self.criterion(z0, z1, idx, idx)


class DetConB(_DetCon):
    """DetCon-B: BYOL's online (projection + prediction) and momentum branches on mask-pooled regions."""

    def __init__(self, backbone, num_features, hidden_dim=4096, out_dim=256, num_classes=25, temperature=0.1,
                 momentum_start=0.99, momentum_end=1.0, gather_distributed=False):  # fmt: skip
        super().__init__(backbone, num_features)
        self.num_classes = num_classes
        self.projection_head = H.BYOLProjectionHead(num_features, hidden_dim, out_dim)
        self.prediction_head = H.BYOLPredictionHead(out_dim, hidden_dim, out_dim)
        self._momentum_copy("backbone", "projection_head")
        self.criterion = L.DetConBLoss(temperature=temperature, gather_distributed=gather_distributed)
        self.momentum = (momentum_start, momentum_end)

    def forward(self, views, progress):
        x0, m0, x1, m1 = _views_and_masks(views)
        online = nn.Sequential(self.projection_head, self.prediction_head)
        p0, p1 = (self._pooled(self.backbone, online, x, m) for x, m in ((x0, m0), (x1, m1)))
        with torch.no_grad():
            target = self.projection_head_momentum
            t0, t1 = (self._pooled(self.backbone_momentum, target, x, m) for x, m in ((x0, m0), (x1, m1)))
        idx = self._mask_ids(x0)
        return self.criterion(p0, p1, t0, t1, idx, idx)

    def after_step(self, step, total):
        m = cosine_schedule(step, total, *self.momentum)
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)


METHODS.update({"densecl": DenseCL, "vicregl": VICRegL, "detcon_s": DetConS, "detcon_b": DetConB})
