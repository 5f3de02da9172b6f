"""The method base class, the registry and the feature helpers every method family shares.

A method is an ``nn.Module`` holding a backbone, its heads and loss, with one ``forward(views, progress)``
that returns the loss. Each family module (``contrastive``, ``distillation``, ``redundancy``, ``clustering``,
``dense``, ``vit_methods``) registers its classes in :data:`METHODS` under their recipe names.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from torch import Tensor, nn

from sslhub.heads.utils import deactivate_requires_grad
from sslhub.models.utils import select_most_similar  # re-exported: DenseCL matches locations with it

__all__ = ["METHODS", "SSLMethod", "build_method", "feature_map", "pool", "select_most_similar"]


def pool(backbone: nn.Module, x: Tensor) -> Tensor:
    """Pooled backbone features ``(B, num_features)``."""
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


# Filled by the family modules when sslhub.methods is imported.
METHODS: dict[str, Callable[..., SSLMethod]] = {}


def build_method(name: str, backbone: nn.Module, num_features: int, **kwargs: Any) -> SSLMethod:
    """Build a method by recipe name (``simclr``, ``moco``, ...) around ``backbone``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name](backbone, num_features, **kwargs)
