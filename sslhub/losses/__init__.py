"""Self-supervised losses with Lightly's names, arguments and defaults.

Port Lightly code by replacing ``from lightly.loss import X`` with ``from sslhub.losses import X``.
"""

from sslhub.losses.clustering import DINOLoss, SwaVLoss, sinkhorn
from sslhub.losses.contrastive import DCLLoss, DCLWLoss, NTXentLoss, negative_mises_fisher_weights
from sslhub.losses.memory_bank import MemoryBankModule, NNMemoryBankModule
from sslhub.losses.regularized import BarlowTwinsLoss, NegativeCosineSimilarity, TiCoLoss, VICRegLoss

__all__ = [
    "BarlowTwinsLoss",
    "DCLLoss",
    "DCLWLoss",
    "DINOLoss",
    "MemoryBankModule",
    "NNMemoryBankModule",
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "SwaVLoss",
    "TiCoLoss",
    "VICRegLoss",
    "negative_mises_fisher_weights",
    "sinkhorn",
]

# Transformer / masked-modelling losses (issue 4).
from sslhub.losses.msn import MSNLoss, PMSNCustomLoss, PMSNLoss  # noqa: E402
from sslhub.losses.reconstruction import AIMLoss, MAELoss, SimMIMLoss  # noqa: E402

__all__ += ["AIMLoss", "MAELoss", "MSNLoss", "PMSNCustomLoss", "PMSNLoss", "SimMIMLoss"]

# Lightly 1.6's remaining image-level losses (issue 14).
from sslhub.losses.contrastive import DirectCLRLoss, MACLLoss  # noqa: E402
from sslhub.losses.dense import DetConBLoss, DetConSLoss, PatchKernelAlignmentLoss, VICRegLLoss, roi_resample_to_grid  # noqa: E402
from sslhub.losses.multiview import EMPSSLLoss, FroSSLLoss, MMCRLoss  # noqa: E402
from sslhub.losses.regularized import VISRegLoss, VISRegLossComponents  # noqa: E402
from sslhub.losses.whitening import Whitening2d, WMSELoss  # noqa: E402

__all__ += ["DetConBLoss", "DetConSLoss", "DirectCLRLoss", "EMPSSLLoss", "FroSSLLoss", "MACLLoss", "MMCRLoss",
            "PatchKernelAlignmentLoss", "VICRegLLoss", "VISRegLoss", "VISRegLossComponents", "WMSELoss", "Whitening2d",
            "roi_resample_to_grid"]  # fmt: skip

# Losses of the modern ViT methods (issue 15): iBOT/DINOv2, CAPI, LeJEPA.
from sslhub.losses.capi import CAPILoss  # noqa: E402
from sslhub.losses.ibot import IBOTPatchLoss, IBOTPlusPlusPatchLoss  # noqa: E402
from sslhub.losses.koleo import KoLeoLoss  # noqa: E402
from sslhub.losses.lejepa import LeJEPALoss, SIGReg  # noqa: E402

__all__ += ["CAPILoss", "IBOTPatchLoss", "IBOTPlusPlusPatchLoss", "KoLeoLoss", "LeJEPALoss", "SIGReg"]

# The rest of Lightly's loss names (issue 24): the alignment/uniformity loss and lightly.loss.regularizer.
from sslhub.losses.contrastive import HypersphereLoss  # noqa: E402
from sslhub.losses.regularizers import CO2Regularizer, DSERegularizer  # noqa: E402

__all__ += ["CO2Regularizer", "DSERegularizer", "HypersphereLoss"]

# Lightly's module paths (``sslhub.losses.msn_loss`` for ``lightly.loss.msn_loss``, ...): see sslhub._lightly_paths.
from sslhub import _lightly_paths  # noqa: E402

_lightly_paths.install()
