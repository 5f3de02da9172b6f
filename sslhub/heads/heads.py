"""Projection and prediction heads whose module structure (and state-dict keys) equal Lightly's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor, nn

from sslhub.heads.utils import normalize_weight

# (in_features, out_features, batch_norm, non_linearity[, use_bias])
Block = Union[
    tuple[int, int, Optional[nn.Module], Optional[nn.Module]],
    tuple[int, int, Optional[nn.Module], Optional[nn.Module], bool],
]


class ProjectionHead(nn.Module):
    """MLP built from blocks ``(in, out, batch_norm, activation[, bias])``, stored as ``self.layers``.

    Each block adds ``Linear`` (bias defaults to "no batch norm"), then the norm and the activation if
    given, so the modules get the same ``layers.{i}`` indices as in Lightly.
    """

    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for in_dim, out_dim, norm, act, *bias in blocks:
            layers.append(nn.Linear(in_dim, out_dim, bias=bias[0] if bias else norm is None))
            layers.extend(m for m in (norm, act) if m is not None)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Projects features of shape (batch_size, in_features)."""
        return self.layers(x)


def _bn(dim: int, enabled: bool = True, affine: bool = True) -> nn.Module | None:
    return nn.BatchNorm1d(dim, affine=affine) if enabled else None


def _mlp(
    input_dim: int,
    hidden_dim: int,
    output_dim: int,
    num_layers: int,
    batch_norm: bool,
    last_bn: bool,
    act: type[nn.Module] = nn.ReLU,
) -> list[Block]:
    """Blocks of an MLP with ``num_layers`` linear layers; hidden ones have norm + activation."""
    dims = [input_dim] + [hidden_dim] * (num_layers - 1)
    blocks: list[Block] = [(d, hidden_dim, _bn(hidden_dim, batch_norm), act()) for d in dims[:-1]]
    blocks.append((dims[-1], output_dim, _bn(output_dim, last_bn), None))
    return blocks


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR projection head (2 layers for v1, 3+ for v2); batch norm on every layer by default."""

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
    ) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, num_layers, batch_norm, batch_norm))


class MoCoProjectionHead(ProjectionHead):
    """MoCo projection head (v2: 2 layers without BN; v3: 3 layers with BN)."""

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, num_layers, batch_norm, batch_norm))


class BYOLProjectionHead(ProjectionHead):
    """BYOL projection head: Linear-BN-ReLU-Linear."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 4096, output_dim: int = 256) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 2, True, False))


class BYOLPredictionHead(ProjectionHead):
    """BYOL prediction head: Linear-BN-ReLU-Linear."""

    def __init__(self, input_dim: int = 256, hidden_dim: int = 4096, output_dim: int = 256) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 2, True, False))


class SimSiamProjectionHead(ProjectionHead):
    """SimSiam projection head: 3 layers, BN everywhere, the last BN without affine parameters."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 2048) -> None:
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()),
                (hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()),
                (hidden_dim, output_dim, nn.BatchNorm1d(output_dim, affine=False), None),
            ]
        )


class SimSiamPredictionHead(ProjectionHead):
    """SimSiam prediction head: Linear-BN-ReLU-Linear (bottleneck)."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 512, output_dim: int = 2048) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 2, True, False))


class BarlowTwinsProjectionHead(ProjectionHead):
    """Barlow Twins projector: 3 layers, BN + ReLU after the first two."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 8192, output_dim: int = 8192) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 3, True, False))


class VICRegProjectionHead(ProjectionHead):
    """VICReg projector: ``num_layers`` layers, BN + ReLU after all but the last."""

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 8192,
        output_dim: int = 8192,
        num_layers: int = 3,
    ) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, num_layers, True, False))


class NNCLRProjectionHead(ProjectionHead):
    """NNCLR projection head: 3 layers, BN on every layer, ReLU on the hidden ones."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 256) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 3, True, True))


class NNCLRPredictionHead(ProjectionHead):
    """NNCLR prediction head: Linear-BN-ReLU-Linear."""

    def __init__(self, input_dim: int = 256, hidden_dim: int = 4096, output_dim: int = 256) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 2, True, False))


class SwaVProjectionHead(ProjectionHead):
    """SwaV projection head: Linear-BN-ReLU-Linear."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 128) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 2, True, False))


class TiCoProjectionHead(ProjectionHead):
    """TiCo projection head: Linear-BN-ReLU-Linear."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 4096, output_dim: int = 256) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 2, True, False))


class DenseCLProjectionHead(ProjectionHead):
    """DenseCL projection head (global or dense): Linear-ReLU-Linear, both with bias."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 128) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 2, False, False))


class VicRegLLocalProjectionHead(ProjectionHead):
    """VICRegL local projector: 3 layers, LayerNorm + ReLU after the first two (works on ``(..., input_dim)``)."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 8192, output_dim: int = 8192) -> None:
        super().__init__(
            [
                (input_dim, hidden_dim, nn.LayerNorm(hidden_dim), nn.ReLU()),
                (hidden_dim, hidden_dim, nn.LayerNorm(hidden_dim), nn.ReLU()),
                (hidden_dim, output_dim, None, None),
            ]
        )


class MMCRProjectionHead(ProjectionHead):
    """MMCR projector: ``num_layers`` hidden Linear(-BN)-ReLU blocks and a linear output, all with ``use_bias``."""

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 8192,
        output_dim: int = 512,
        num_layers: int = 2,
        batch_norm: bool = True,
        use_bias: bool = False,
    ) -> None:
        dims = [input_dim] + [hidden_dim] * num_layers
        blocks: list[Block] = [(d, hidden_dim, _bn(hidden_dim, batch_norm), nn.ReLU(), use_bias) for d in dims[:-1]]
        blocks.append((hidden_dim, output_dim, None, None, use_bias))
        super().__init__(blocks)


class SMoGProjectionHead(ProjectionHead):
    """SMoG projection head: Linear-BN-ReLU-Linear-BN (the last BN without affine parameters)."""

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 128) -> None:
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()),
                (hidden_dim, output_dim, nn.BatchNorm1d(output_dim, affine=False), None),
            ]
        )


class SMoGPredictionHead(ProjectionHead):
    """SMoG prediction head: Linear-BN-ReLU-Linear."""

    def __init__(self, input_dim: int = 128, hidden_dim: int = 2048, output_dim: int = 128) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, 2, True, False))


class SMoGPrototypes(nn.Module):
    """SMoG group features (``group_features``, a frozen parameter) updated as a momentum average of the
    features assigned to each group.

    Args:
        group_features: Initial group features ``(n_groups, dim)``.
        beta: Momentum of the group feature update.
    """

    def __init__(self, group_features: Tensor, beta: float):
        super().__init__()
        self.group_features = nn.Parameter(group_features, requires_grad=False)
        self.beta = beta

    def forward(self, x: Tensor, group_features: Tensor, temperature: float = 0.1) -> Tensor:
        """Cosine similarities of ``x`` (B, dim) to ``group_features``, divided by ``temperature``."""
        x = nn.functional.normalize(x, dim=1)
        group_features = nn.functional.normalize(group_features, dim=1)
        return torch.mm(x, group_features.t()) / temperature

    def get_updated_group_features(self, x: Tensor) -> Tensor:
        """New group features: each group assigned in ``x`` moves towards the mean of its members."""
        assignments = self.assign_groups(x)
        group_features = torch.clone(self.group_features.data)
        for group in torch.unique(assignments):
            mask = assignments == group
            group_features[group] = self.beta * self.group_features[group] + (1 - self.beta) * x[mask].mean(dim=0)
        return group_features

    def set_group_features(self, x: Tensor) -> None:
        """Replaces the group features."""
        self.group_features.data = x.to(self.group_features.device)

    @torch.no_grad()
    def assign_groups(self, x: Tensor) -> Tensor:
        """Index of the most similar group for every row of ``x``."""
        return torch.argmax(self.forward(x, self.group_features), dim=-1)


class SwaVPrototypes(nn.Module):
    """SwaV prototypes: one linear layer per entry of ``n_prototypes`` (``heads.{i}``).

    Args:
        input_dim: Feature dimension.
        n_prototypes: Number of prototypes, or a list for multiple prototype heads.
        n_steps_frozen_prototypes: Prototypes get no gradient before this step (``step`` must be passed
            to ``forward`` when > 0).
    """

    def __init__(
        self,
        input_dim: int = 128,
        n_prototypes: list[int] | int = 3000,
        n_steps_frozen_prototypes: int = 0,
    ) -> None:
        super().__init__()
        self.n_prototypes = n_prototypes if isinstance(n_prototypes, list) else [n_prototypes]
        self._is_single_prototype = isinstance(n_prototypes, int)
        self.heads = nn.ModuleList([nn.Linear(input_dim, k) for k in self.n_prototypes])
        self.n_steps_frozen_prototypes = n_steps_frozen_prototypes

    def forward(self, x: Tensor, step: int | None = None) -> Tensor | list[Tensor]:
        """Prototype scores: one tensor for a single head, else a list."""
        if self.n_steps_frozen_prototypes > 0:
            if step is None:
                raise ValueError(
                    "`n_steps_frozen_prototypes` is greater than 0, please provide the `step` argument "
                    "to the `forward()` method."
                )
            self.requires_grad_(step >= self.n_steps_frozen_prototypes)
        out = [layer(x) for layer in self.heads]
        return out[0] if self._is_single_prototype else out

    def normalize(self) -> None:
        """Projects every prototype onto the unit sphere (call after each optimizer step)."""
        for layer in self.heads:
            normalize_weight(layer.weight)


@torch.no_grad()
def _trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 0.02, a: float = -2.0, b: float = 2.0) -> Tensor:
    """Truncated normal by inverse CDF, drawing exactly as Lightly's ``_no_grad_trunc_normal`` (recent
    ``nn.init.trunc_normal_`` draws differently), so seeded initialisations are identical."""
    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
    tensor.uniform_(2 * lo - 1, 2 * hi - 1).erfinv_().mul_(std * math.sqrt(2.0)).add_(mean).clamp_(min=a, max=b)
    return tensor


class WeightNormLinear(nn.Module):
    """Linear layer (bias-free by default) with weight normalisation ``W = g * v / ||v||`` (row-wise).

    Has the parameters ``bias`` (with ``bias=True``), ``weight_g`` (out, 1) and ``weight_v`` (out, in) of the
    legacy ``torch.nn.utils.weight_norm`` that Lightly uses, in its order, so state dicts are interchangeable, but
    without its deprecation warning and with working ``copy.deepcopy`` (needed to build DINO teachers).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        # Initialise like nn.Linear (same random draws as Lightly's nn.Linear + weight_norm).
        linear = nn.Linear(in_features, out_features, bias=bias)
        self.bias = linear.bias  # None without bias (as nn.Linear, not in the state dict)
        self.weight_g = nn.Parameter(torch.ones(out_features, 1))
        self.weight_v = nn.Parameter(linear.weight.detach().clone())

    @property
    def weight(self) -> Tensor:
        """The effective (normalised and scaled) weight matrix."""
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        """Applies the weight-normalised linear map."""
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.weight_v.shape[1]}, out_features={self.weight_v.shape[0]}, bias={self.bias is not None}"


class DINOProjectionHead(ProjectionHead):
    """DINO head: 3-layer GELU MLP to a bottleneck, L2 normalisation, weight-normalised last layer.

    The last layer is a :class:`WeightNormLinear` whose state-dict keys (``last_layer.weight_g`` /
    ``last_layer.weight_v``) equal those of Lightly's ``weight_norm``-wrapped ``nn.Linear``.

    Args:
        input_dim: Input feature dimension.
        hidden_dim: Hidden dimension.
        bottleneck_dim: Dimension before the last layer.
        output_dim: Output dimension (number of "prototypes").
        batch_norm: Use BN in the hidden layers (False for ViTs).
        freeze_last_layer: Epochs during which ``cancel_last_layer_gradients`` drops last-layer grads.
        norm_last_layer: Keep the weight-norm magnitude fixed at 1.
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        output_dim: int = 65536,
        batch_norm: bool = False,
        freeze_last_layer: int = -1,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__(_mlp(input_dim, hidden_dim, bottleneck_dim, 3, batch_norm, False, act=nn.GELU))
        self.apply(self._init_weights)
        self.freeze_last_layer = freeze_last_layer
        self.last_layer = WeightNormLinear(bottleneck_dim, output_dim)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def cancel_last_layer_gradients(self, current_epoch: int) -> None:
        """Drops the last layer's gradients while ``current_epoch < freeze_last_layer``."""
        if current_epoch >= self.freeze_last_layer:
            return
        for param in self.last_layer.parameters():
            param.grad = None

    def forward(self, x: Tensor) -> Tensor:
        """Projects features of shape (batch_size, input_dim) to (batch_size, output_dim)."""
        x = nn.functional.normalize(self.layers(x), dim=-1, p=2)
        return self.last_layer(x)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            _trunc_normal_(module.weight, mean=0.0, std=0.02, a=-2.0, b=2.0)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0)


__all__ = [
    "BYOLPredictionHead",
    "BYOLProjectionHead",
    "BarlowTwinsProjectionHead",
    "DINOProjectionHead",
    "DenseCLProjectionHead",
    "MoCoProjectionHead",
    "NNCLRPredictionHead",
    "NNCLRProjectionHead",
    "ProjectionHead",
    "SimCLRProjectionHead",
    "SimSiamPredictionHead",
    "SimSiamProjectionHead",
    "SwaVProjectionHead",
    "SwaVPrototypes",
    "TiCoProjectionHead",
    "VICRegProjectionHead",
    "WeightNormLinear",
]


_VIT_HEADS = ("CAPIProjectionHead", "DINOv2ProjectionHead", "LeJEPAProjectionHead", "MSNProjectionHead")


def __getattr__(name: str) -> object:
    # lightly.models.modules.heads also holds these; they live in vit_heads, which imports this module
    if name in _VIT_HEADS:
        from sslhub.heads import vit_heads

        return getattr(vit_heads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
