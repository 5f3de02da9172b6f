"""The one registry of checkpoint readers: every layout sslhub loads, one small file each.

Each reader (see :class:`~sslhub.checkpoints.readers.base.Reader`) recognises its layout from the tensors, the
wrapper dict and the safetensors header (never the file name), names the evaluation copy, drops what is not
backbone, remaps keys to the torchvision/timm names sslhub builds, and applies the facts the tensors cannot tell.
The recognise stage (:func:`sslhub.checkpoints.recognise.recognise`) asks them in the order of :data:`READERS`;
the first that answers wins. The order, and why:

1. ``sslhub``: sslhub's own safetensors; the header says everything, nothing is inferred.
2. Files with a ``config.json`` (``transformers`` repos, timm Hub files): the config names the model exactly.
3. Other SSL projects' files (MoCo, DINO, DINOv2/v3, MAE, I-JEPA, MSN, LightlyTrain, ...), most specific anchor
   keys first: each claims only the key patterns its upstream's save code writes.
4. Lightly's layouts: the Worker's ``checkpoint.ckpt`` (``model.backbone.``), then the benchmark Lightning files.
5. ``state-dict``: any plain torchvision/timm/ResNetGenerator state dict (bare or under a common prefix); also
   what reads a ``prefix=`` that asks for another copy than a layout's evaluation one.

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
from sslhub.checkpoints.readers.lightly_benchmark import LightlyBenchmark
from sslhub.checkpoints.readers.lightly_train import LightlyTrain
from sslhub.checkpoints.readers.lightly_worker import LightlyWorker
from sslhub.checkpoints.readers.mae import MAE
from sslhub.checkpoints.readers.mmpretrain import MMPretrain
from sslhub.checkpoints.readers.moco import MocoV2, MocoV3
from sslhub.checkpoints.readers.msn import MSN
from sslhub.checkpoints.readers.simsiam import SimSiam
from sslhub.checkpoints.readers.solo_learn import SoloLearn
from sslhub.checkpoints.readers.sslhub_file import SslhubFile
from sslhub.checkpoints.readers.state_dict import PlainStateDict
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
    SslhubFile(),
    # files with a config.json (transformers, timm Hub): their config says exactly what they are
    TransformersDinov2(), TransformersViT(), TransformersViTMAE(), TransformersIJepa(),
    TransformersDinov3ViT(), TransformersDinov3ConvNext(), TimmHub(),
    # other SSL projects' own files
    MocoV2(), MocoV3(), SimSiam(), SwAV(), BarlowTwins(), VICReg(), Dino(), DinoV3ViT(), DinoV3ConvNeXt(), DinoV2(),
    MAE(), SoloLearn(), MMPretrain(), VISSL(), IJepa(), MSN(), LightlyTrain(),
    # Lightly's layouts, then any plain state dict
    LightlyWorker(), LightlyBenchmark(), PlainStateDict(),
)  # fmt: skip
_BY_NAME = {r.name: r for r in READERS}


def get_reader(layout: str | None) -> Reader | None:
    """The reader of a layout name (as recorded in sslhub safetensors headers), or None for a name no reader has
    (the Worker's legacy layout and older headers' names read as plain state dicts: no remap)."""
    return _BY_NAME.get(layout or "")


def match_reader(sd: Mapping[str, torch.Tensor], extras: Mapping[str, Any]) -> tuple[Reader, Match] | None:
    """The first upstream reader whose key pattern this is (readers that only override ``recognise`` are skipped)."""
    for r in READERS:
        if type(r).match is Reader.match:
            continue
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
