"""SSL methods as modules: a backbone, the method's heads and loss, and one ``forward(views, progress)`` that
returns the loss. The attribute names (``backbone``, ``projection_head``, ``prediction_head``,
``backbone_momentum`` ...) follow Lightly's examples so state dicts read like Lightly's.

``METHODS`` maps recipe method names to classes; :func:`build_method` builds one from a recipe.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import Tensor, nn

from sslhub import heads as H
from sslhub import losses as L
from sslhub.heads.utils import cosine_schedule, deactivate_requires_grad, update_momentum

__all__ = ["METHODS", "SSLMethod", "build_method"]


def _pool(backbone: nn.Module, x: Tensor) -> Tensor:
    return backbone(x).flatten(1)


class SSLMethod(nn.Module):
    """Base class. Subclasses set ``eval_prefix`` (the backbone copy used for evaluation) and implement
    :meth:`forward`. ``progress`` is ``(global_step, total_steps, epoch)``."""

    eval_prefix = "backbone."
    views_needed = 2

    def __init__(self, backbone: nn.Module, num_features: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = num_features

    @property
    def eval_backbone(self) -> nn.Module:
        return getattr(self, self.eval_prefix.rstrip("."))

    def after_step(self, step: int, total: int) -> None:
        """Hook after the optimizer step (momentum updates)."""

    def before_optimizer_step(self, epoch: int) -> None:
        """Hook between backward and optimizer step (e.g. DINO freezes the last layer's grads)."""

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _momentum_copy(self, *names: str) -> None:
        for n in names:
            m = copy.deepcopy(getattr(self, n))
            deactivate_requires_grad(m)
            setattr(self, f"{n}_momentum", m)


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


def feature_map(backbone: nn.Module, x: Tensor) -> Tensor:
    """The last spatial feature map ``(B, C, H, W)`` of a ResNet backbone (before pooling)."""
    from sslhub.backbones import ResNetGeneratorBackbone

    if isinstance(backbone, ResNetGeneratorBackbone):
        for i, m in enumerate(backbone):
            if i == 7 or isinstance(m, (nn.AdaptiveAvgPool2d, nn.Flatten)):
                break  # stop before the Worker's num_ftrs conv and the pooling
            x = m(x)
        return x
    if hasattr(backbone, "layer4") and hasattr(backbone, "maxpool"):  # torchvision ResNet
        b = backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))
    raise ValueError(f"dense features need a ResNet backbone, not {type(backbone).__name__}")


def select_most_similar(x: Tensor, y: Tensor, y_values: Tensor) -> Tensor:
    """For each token of ``x`` (B, N, C), the row of ``y_values`` at its most similar token of ``y``."""
    sim = torch.einsum("bnc,bmc->bnm", nn.functional.normalize(x, dim=-1), nn.functional.normalize(y, dim=-1))
    index = sim.argmax(dim=2).unsqueeze(-1).expand(y_values.shape)
    return torch.gather(y_values, dim=1, index=index)


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


METHODS: dict[str, Callable[..., SSLMethod]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "simsiam": SimSiam,
    "barlowtwins": BarlowTwins,
    "vicreg": VICReg,
    "dcl": DCL,
    "dclw": DCLW,
    "nnclr": NNCLR,
    "swav": SwAV,
    "tico": TiCo,
    "dino": DINO,
    "densecl": DenseCL,
}


def build_method(name: str, backbone: nn.Module, num_features: int, **kwargs: Any) -> SSLMethod:
    """Build a method by recipe name (``simclr``, ``moco``, ...) around ``backbone``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name](backbone, num_features, **kwargs)


from sslhub.methods import vit_methods as _vit_methods  # noqa: E402,F401  (registers dino_vit, mae, simmim, msn, pmsn, aim)
from sslhub.methods import jepa as _jepa, masked_distillation as _masked_distillation  # noqa: E402,F401,I001  (ibot, dinov2, ijepa, capi, lejepa)
