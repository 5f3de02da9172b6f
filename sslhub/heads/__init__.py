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
