"""Readers for checkpoint layouts written by other SSL projects (one file per upstream layout).

Each reader (see :class:`~sslhub.checkpoints.readers.base.Reader`) recognises its layout from the tensors and
the wrapper dict, names the evaluation copy, drops what is not backbone, remaps keys to the torchvision/timm
names sslhub builds, and applies the facts the tensors cannot tell. :func:`sslhub.checkpoints.layouts.detect`
asks them in the order of :data:`READERS` (most specific anchors first) before its generic Lightly/plain rules.
Adding a layout = one file here, one entry in :data:`READERS`, one fixture test.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from sslhub.checkpoints.readers.barlowtwins_vicreg import BarlowTwins, VICReg
from sslhub.checkpoints.readers.base import Match, Reader
from sslhub.checkpoints.readers.dino import Dino
from sslhub.checkpoints.readers.dinov2 import DinoV2
from sslhub.checkpoints.readers.dinov3 import DinoV3ConvNeXt, DinoV3ViT
from sslhub.checkpoints.readers.ijepa import IJepa
from sslhub.checkpoints.readers.lightly_train import LightlyTrain
from sslhub.checkpoints.readers.mae import MAE
from sslhub.checkpoints.readers.mmpretrain import MMPretrain
from sslhub.checkpoints.readers.moco import MocoV2, MocoV3
from sslhub.checkpoints.readers.msn import MSN
from sslhub.checkpoints.readers.simsiam import SimSiam
from sslhub.checkpoints.readers.solo_learn import SoloLearn
from sslhub.checkpoints.readers.swav import SwAV
from sslhub.checkpoints.readers.timm_hub import TimmHub
from sslhub.checkpoints.readers.transformers_dinov3 import TransformersDinov3ConvNext, TransformersDinov3ViT
from sslhub.checkpoints.readers.transformers_vit import (
    TransformersDinov2,
    TransformersIJepa,
    TransformersViT,
    TransformersViTMAE,
)
from sslhub.checkpoints.readers.vissl import VISSL

__all__ = ["READERS", "Match", "Reader", "get_reader", "match_reader", "unwrap_nested"]

READERS: tuple[Reader, ...] = (
    # files with a config.json (transformers, timm Hub) first: their config says exactly what they are
    TransformersDinov2(), TransformersViT(), TransformersViTMAE(), TransformersIJepa(),
    TransformersDinov3ViT(), TransformersDinov3ConvNext(), TimmHub(),
    MocoV2(), MocoV3(), SimSiam(), SwAV(), BarlowTwins(), VICReg(), Dino(), DinoV3ViT(), DinoV3ConvNeXt(), DinoV2(),
    MAE(), SoloLearn(), MMPretrain(), VISSL(), IJepa(), MSN(), LightlyTrain(),
)  # fmt: skip
_BY_NAME = {r.name: r for r in READERS}


def get_reader(layout: str | None) -> Reader | None:
    """The reader of a layout name (as recorded in sslhub safetensors headers), or None for sslhub's own."""
    return _BY_NAME.get(layout or "")


def match_reader(sd: Mapping[str, torch.Tensor], extras: Mapping[str, Any]) -> tuple[Reader, Match] | None:
    """The first reader whose layout this is."""
    for r in READERS:
        m = r.match(sd, extras)
        if m is not None:
            return r, m
    return None


def unwrap_nested(obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Wrappers deeper than one level (VISSL's ``classy_state_dict``) flattened by their reader."""
    for r in READERS:
        got = r.unwrap(obj)
        if got is not None:
            return got
    return None
