"""Projection/prediction heads and momentum utilities with Lightly's names and state-dict layout.

Port Lightly code by replacing ``lightly.models.modules`` / ``lightly.models.utils`` imports with
``sslhub.heads``; checkpoints load in both directions.
"""

from sslhub.heads.heads import (
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    DenseCLProjectionHead,
    DINOProjectionHead,
    MMCRProjectionHead,
    MoCoProjectionHead,
    NNCLRPredictionHead,
    NNCLRProjectionHead,
    ProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    SimSiamProjectionHead,
    SMoGPredictionHead,
    SMoGProjectionHead,
    SMoGPrototypes,
    SwaVProjectionHead,
    SwaVPrototypes,
    TiCoProjectionHead,
    VICRegProjectionHead,
    VicRegLLocalProjectionHead,
    WeightNormLinear,
)
from sslhub.heads.utils import (
    activate_requires_grad,
    cosine_schedule,
    cosine_warmup_schedule,
    deactivate_requires_grad,
    normalize_weight,
    update_momentum,
)
from sslhub.losses.memory_bank import MemoryBankModule, NNMemoryBankModule

__all__ = [
    "BYOLPredictionHead",
    "BYOLProjectionHead",
    "BarlowTwinsProjectionHead",
    "DINOProjectionHead",
    "DenseCLProjectionHead",
    "MMCRProjectionHead",
    "MemoryBankModule",
    "MoCoProjectionHead",
    "NNCLRPredictionHead",
    "NNCLRProjectionHead",
    "NNMemoryBankModule",
    "ProjectionHead",
    "SimCLRProjectionHead",
    "SimSiamPredictionHead",
    "SMoGPredictionHead",
    "SMoGProjectionHead",
    "SMoGPrototypes",
    "SimSiamProjectionHead",
    "SwaVProjectionHead",
    "SwaVPrototypes",
    "TiCoProjectionHead",
    "VICRegProjectionHead",
    "VicRegLLocalProjectionHead",
    "WeightNormLinear",
    "activate_requires_grad",
    "cosine_schedule",
    "cosine_warmup_schedule",
    "deactivate_requires_grad",
    "normalize_weight",
    "update_momentum",
]

# Heads of the transformer / masked-modelling methods (issue 4); timm is imported when one is built.
from sslhub.heads.vit_heads import AIMPredictionHead, AIMPredictionHeadBlock, MAEDecoderTIMM, MSNProjectionHead  # noqa: E402

__all__ += ["AIMPredictionHead", "AIMPredictionHeadBlock", "MAEDecoderTIMM", "MSNProjectionHead"]

# Heads of the modern ViT methods (issue 15).
from sslhub.heads.vit_heads import CAPIProjectionHead, DINOv2ProjectionHead, LeJEPAProjectionHead, PixioDecoderTIMM  # noqa: E402

__all__ += ["CAPIProjectionHead", "DINOv2ProjectionHead", "LeJEPAProjectionHead", "PixioDecoderTIMM"]

# Issue 24: DINO's center (lightly.models.modules.center) and Lightly's module paths (sslhub.heads.heads_timm for
# lightly.models.modules.heads_timm, ...: see sslhub._lightly_paths).
from sslhub.losses.ibot import Center, center_mean, center_momentum  # noqa: E402

__all__ += ["Center", "center_mean", "center_momentum"]

from sslhub import _lightly_paths  # noqa: E402

_lightly_paths.install()

# lightly.models.modules also holds the masked ViTs, decoders and predictors, which sslhub keeps in
# sslhub.backbones; they resolve here on first use (timm loads only then), so Lightly's package maps to one.
_BACKBONE_NAMES = {
    "MaskedVisionTransformer": "sslhub.backbones.masked_vit",
    "MaskedVisionTransformerTIMM": "sslhub.backbones.masked_vit",
    "MaskedCausalVisionTransformer": "sslhub.backbones.masked_vit",
    "MaskedVisionTransformerTorchvision": "sslhub.backbones.masked_vit_torchvision",
    "MaskedVisionTransformerDecoder": "sslhub.backbones.decoders",
    "MaskedVisionTransformerDecoderTIMM": "sslhub.backbones.decoders",
    "IJEPAPredictorTIMM": "sslhub.backbones.ijepa_predictor",
    "CAPIPredictorTIMM": "sslhub.backbones.capi_predictor",
}


def __getattr__(name: str) -> object:
    if name in _BACKBONE_NAMES:
        import importlib

        return getattr(importlib.import_module(_BACKBONE_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
