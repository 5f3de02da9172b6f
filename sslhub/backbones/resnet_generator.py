"""Lightly's ``ResNetGenerator`` family, re-implemented without depending on ``lightly``.

The layout reproduces the module that the Lightly Worker / CLI trains and the documented Worker loader
rebuilds, so that the same state dict gives bit-identical features::

    Sequential(BatchNorm2d(3), conv1, bn1, layer1, layer2, layer3, layer4, [Conv2d(C, num_ftrs, 1)],
               AdaptiveAvgPool2d(1), Flatten(1))

Quirks kept on purpose (see the fact sheet in the reference docs): 3x3 stride-1 stem, no max-pool, no ReLU after
``bn1`` (``children()`` drops the functional relu), shortcuts named ``shortcut.0/1``, every channel scaled by
``width`` (``int(64 * width)`` base channels) including bottleneck outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RESNET_GENERATOR_SPECS",
    "ResNetGeneratorSpec",
    "ResNetGeneratorBackbone",
    "resnet_generator",
]


@dataclass(frozen=True)
class ResNetGeneratorSpec:
    """Block type and blocks per stage of one ``ResNetGenerator`` name."""

    bottleneck: bool
    layers: tuple[int, int, int, int]

    @property
    def expansion(self) -> int:
        return 4 if self.bottleneck else 1


RESNET_GENERATOR_SPECS: dict[str, ResNetGeneratorSpec] = {
    "resnet-9": ResNetGeneratorSpec(False, (1, 1, 1, 1)),
    "resnet-18": ResNetGeneratorSpec(False, (2, 2, 2, 2)),
    "resnet-34": ResNetGeneratorSpec(False, (3, 4, 6, 3)),
    "resnet-50": ResNetGeneratorSpec(True, (3, 4, 6, 3)),
    "resnet-101": ResNetGeneratorSpec(True, (3, 4, 23, 3)),
    "resnet-152": ResNetGeneratorSpec(True, (3, 8, 36, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # Stride on the 3x3 conv, as torchvision v1.5 and Lightly do.
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x)
        return F.relu(out)


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    # Empty Sequential (no keys) when shapes already match, exactly like Lightly.
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class ResNetGeneratorBackbone(nn.Sequential):
    """Feature extractor with the exact key layout of the Lightly Worker backbone (``0``..``6``, optional ``7``).

    Args:
        name: one of ``resnet-9/18/34/50/101/152``.
        width: channel multiplier; base channels are ``int(64 * width)``.
        num_ftrs: if given, keep the Worker's 1x1 conv (``backbone.7``, with bias) and output ``num_ftrs``
            features, as ``lightly-embed`` does. Otherwise output the pooled layer4 features.
    """

    def __init__(self, name: str = "resnet-18", width: float = 1.0, num_ftrs: int | None = None) -> None:
        if name not in RESNET_GENERATOR_SPECS:
            raise ValueError(
                f"unknown ResNetGenerator name {name!r}; choose one of {sorted(RESNET_GENERATOR_SPECS)}"
            )
        spec = RESNET_GENERATOR_SPECS[name]
        base = int(64 * width)
        if base < 1:
            raise ValueError(f"width={width} gives {base} base channels; it must give at least 1 (int(64*width))")
        block = Bottleneck if spec.bottleneck else BasicBlock
        modules: list[nn.Module] = [
            nn.BatchNorm2d(3),  # trained input normaliser, index 0 in Worker checkpoints
            nn.Conv2d(3, base, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(base),
        ]
        in_planes = base
        for i, (n_blocks, stride) in enumerate(zip(spec.layers, (1, 2, 2, 2))):
            planes = base * 2**i
            blocks = []
            for s in [stride] + [1] * (n_blocks - 1):
                blocks.append(block(in_planes, planes, s))
                in_planes = planes * block.expansion
            modules.append(nn.Sequential(*blocks))
        if num_ftrs is not None:
            modules.append(nn.Conv2d(in_planes, num_ftrs, 1))
        modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        super().__init__(*modules)
        self.name = name
        self.width = float(width)
        self.num_ftrs = num_ftrs
        self.feature_dim = in_planes
        self.num_features = num_ftrs if num_ftrs is not None else in_planes

    def extra_repr(self) -> str:
        return f"name={self.name!r}, width={self.width}, num_ftrs={self.num_ftrs}"


def resnet_generator(name: str = "resnet-18", width: float = 1.0, num_ftrs: int | None = None) -> ResNetGeneratorBackbone:
    """Build a Lightly ``ResNetGenerator`` backbone (random init). See :class:`ResNetGeneratorBackbone`."""
    return ResNetGeneratorBackbone(name=name, width=width, num_ftrs=num_ftrs)
