"""SSL methods as modules: a backbone, the method's heads and loss, and one ``forward(views, progress)`` that
returns the loss. The attribute names (``backbone``, ``projection_head``, ``prediction_head``,
``backbone_momentum`` ...) follow Lightly's examples so state dicts read like Lightly's.

One file per family: :mod:`~sslhub.methods.contrastive`, :mod:`~sslhub.methods.distillation`,
:mod:`~sslhub.methods.redundancy`, :mod:`~sslhub.methods.clustering`, :mod:`~sslhub.methods.dense` and
:mod:`~sslhub.methods.vit_methods`; :mod:`~sslhub.methods.base` holds the base class and the registry.
``METHODS`` maps recipe method names to classes; :func:`build_method` builds one from a recipe.
"""

from sslhub.methods.base import METHODS, SSLMethod, build_method, feature_map, select_most_similar

# Each family module registers its classes in METHODS when imported.
from sslhub.methods.clustering import SMoG, SwAV
from sslhub.methods.contrastive import DCL, DCLW, MACL, NNCLR, PIRL, DirectCLR, MoCo, SimCLR
from sslhub.methods.dense import DenseCL, DetConB, DetConS, VICRegL
from sslhub.methods.distillation import BYOL, DINO, FastSiam, SimSiam, TiCo
from sslhub.methods.redundancy import EMPSSL, MMCR, WMSE, BarlowTwins, FroSSL, VICReg

__all__ = [
    "BYOL", "DCL", "DCLW", "DINO", "EMPSSL", "MACL", "METHODS", "MMCR", "NNCLR", "PIRL", "SMoG", "WMSE",
    "BarlowTwins", "DenseCL", "DetConB", "DetConS", "DirectCLR", "FastSiam", "FroSSL", "MoCo", "SSLMethod",
    "SimCLR", "SimSiam", "SwAV", "TiCo", "VICReg", "VICRegL", "build_method", "feature_map", "select_most_similar",
]  # fmt: skip

from sslhub.methods import vit_methods as _vit_methods  # noqa: E402,F401  (registers dino_vit, mae, simmim, msn, pmsn, aim)
from sslhub.methods import jepa as _jepa, masked_distillation as _masked_distillation  # noqa: E402,F401,I001  (ibot, dinov2, ijepa, capi, lejepa)
from sslhub.methods import teacher_distillation as _teacher_distillation  # noqa: E402,F401  (distillationv1/v2/v3)
