"""Augmentation pipelines with Lightly's names, arguments and defaults, built on torchvision.transforms.v2.

Port Lightly code by replacing ``from lightly.transforms import X`` with ``from sslhub.transforms import X``.
Unlike Lightly's, every pipeline also accepts uint8 image batches (N, 3, H, W) with per-sample
randomness, and all randomness comes from torch's generator.

Modules: ``base`` (ViewTransform, MultiViewTransform, MultiCropTranform, MultiViewTransformV2, ToTensor), ``ops``
(blur, solarization, rotations), ``methods`` (SimCLR, MoCo, BYOL, SimSiam, VICReg, TiCo, SwaV, DINO),
``multi_view`` (MMCR, FastSiam, SMoG, W-MSE), ``dense`` (VICRegL, DetCon-S, AddGridTransform), ``jigsaw``
(Jigsaw, PIRL), ``frequency`` (FDA and the Fourier-domain ops), ``vit`` (MAE, AIM, MSN) and ``batched`` (the
vectorised batch engine).
"""

from sslhub.transforms.base import (
    IMAGENET_NORMALIZE,
    MultiCropTranform,
    MultiCropTransform,
    MultiViewTransform,
    ViewTransform,
)
from sslhub.transforms.methods import (
    BYOLTransform,
    BYOLView1Transform,
    BYOLView2Transform,
    DenseCLTransform,
    DINOTransform,
    DINOViewTransform,
    MoCoV1Transform,
    MoCoV2Transform,
    SimCLRTransform,
    SimCLRViewTransform,
    SimSiamTransform,
    SimSiamViewTransform,
    SwaVTransform,
    SwaVViewTransform,
    TiCoTransform,
    TiCoView1Transform,
    TiCoView2Transform,
    VICRegTransform,
    VICRegViewTransform,
)
from sslhub.transforms.ops import (
    GaussianBlur,
    RandomRotate,
    RandomRotateDegrees,
    RandomSolarization,
    random_rotation_transform,
)

__all__ = [
    "BYOLTransform",
    "BYOLView1Transform",
    "BYOLView2Transform",
    "DINOTransform",
    "DINOViewTransform",
    "DenseCLTransform",
    "GaussianBlur",
    "IMAGENET_NORMALIZE",
    "MoCoV1Transform",
    "MoCoV2Transform",
    "MultiCropTransform",
    "MultiCropTranform",
    "MultiViewTransform",
    "RandomRotate",
    "RandomRotateDegrees",
    "RandomSolarization",
    "SimCLRTransform",
    "SimCLRViewTransform",
    "SimSiamTransform",
    "SimSiamViewTransform",
    "SwaVTransform",
    "SwaVViewTransform",
    "TiCoTransform",
    "TiCoView1Transform",
    "TiCoView2Transform",
    "VICRegTransform",
    "VICRegViewTransform",
    "ViewTransform",
    "random_rotation_transform",
]

# Transforms of the masked-modelling methods (issue 4).
from sslhub.transforms.vit import AIMTransform, MAETransform, MSNTransform, MSNViewTransform  # noqa: E402

__all__ += ["AIMTransform", "MAETransform", "MSNTransform", "MSNViewTransform"]

# Issue 14: the remaining image-level methods and Lightly's helper transforms.
from sslhub.transforms.base import MultiViewTransformV2, ToTensor  # noqa: E402
from sslhub.transforms.dense import (  # noqa: E402
    AddGridTransform,
    DetConSTransform,
    DetConSViewTransform,
    VICRegLTransform,
    VICRegLViewTransform,
)
from sslhub.transforms.frequency import (  # noqa: E402
    AmplitudeRescaleTransform,
    FDATransform,
    FDAView1Transform,
    FDAView2Transform,
    GaussianMixtureMask,
    IRFFT2DTransform,
    PhaseShiftTransform,
    RandomFrequencyMaskTransform,
    RFFT2DTransform,
)
from sslhub.transforms.jigsaw import Jigsaw, PIRLTransform  # noqa: E402
from sslhub.transforms.multi_view import (  # noqa: E402
    FastSiamTransform,
    MMCRTransform,
    SMoGTransform,
    SmoGViewTransform,
    WMSETransform,
)

__all__ += [
    "AddGridTransform",
    "AmplitudeRescaleTransform",
    "DetConSTransform",
    "DetConSViewTransform",
    "Jigsaw",
    "PIRLTransform",
    "VICRegLTransform",
    "VICRegLViewTransform",
    "FDATransform",
    "FDAView1Transform",
    "FDAView2Transform",
    "FastSiamTransform",
    "GaussianMixtureMask",
    "IRFFT2DTransform",
    "MMCRTransform",
    "MultiViewTransformV2",
    "PhaseShiftTransform",
    "RFFT2DTransform",
    "RandomFrequencyMaskTransform",
    "SMoGTransform",
    "SmoGViewTransform",
    "ToTensor",
    "WMSETransform",
]

# Transforms of iBOT, CAPI and I-JEPA (issue 15).
from sslhub.transforms.modern_vit import CAPITransform, IBOTTransform, IBOTViewTransform, IJEPATransform  # noqa: E402

__all__ += ["CAPITransform", "IBOTTransform", "IBOTViewTransform", "IJEPATransform"]

# Issue 24: the rest of Lightly's transform names, and Lightly's module paths (sslhub.transforms.simclr_transform
# for lightly.transforms.simclr_transform, ...: see sslhub._lightly_paths).
from sslhub.transforms.dense import ImageGridTransform  # noqa: E402
from sslhub.transforms.methods import DistillationTransform  # noqa: E402

__all__ += ["DistillationTransform", "ImageGridTransform"]

from sslhub import _lightly_paths  # noqa: E402

_lightly_paths.install()
