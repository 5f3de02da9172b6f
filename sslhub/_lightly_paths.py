"""Lightly's module paths under sslhub's packages, for scripts that import a Lightly submodule directly.

``from lightly.loss.msn_loss import MSNLoss`` ports as ``from sslhub.losses.msn_loss import MSNLoss``: the package
rows of README's porting table (``lightly.loss`` -> ``sslhub.losses``, ``lightly.transforms`` -> ``sslhub.transforms``,
``lightly.models.modules`` -> ``sslhub.heads``) hold for Lightly's submodules too. Those submodules are not files
here (sslhub keeps one home per concern): each is a thin module made on first import from the table below, holding
the names the Lightly module defines or imports from Lightly, taken from where sslhub keeps them (``name=other``
where sslhub's name differs). A Lightly module that is not copied (README, "Not copied") is not listed, so its
import fails as usual. Three paths are real files already: ``sslhub.heads.heads`` (its ViT heads resolve lazily),
``sslhub.losses.memory_bank`` and ``sslhub.transforms.jigsaw``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

__all__ = ["LIGHTLY_PATHS", "install"]

# thin module, then "source module: name name=source_name ..." lines (indented)
_TABLE = """
sslhub.heads.capi_predictor_timm
    sslhub.backbones.capi_predictor: CAPIPredictorTIMM
sslhub.heads.center
    sslhub.losses.ibot: Center center_mean center_momentum
sslhub.heads.heads_timm
    sslhub.heads.vit_heads: AIMPredictionHead AIMPredictionHeadBlock
sslhub.heads.ijepa_timm
    sslhub.backbones.ijepa_predictor: IJEPAPredictorTIMM
    sslhub.backbones.decoders: MaskedVisionTransformerDecoderTIMM
sslhub.heads.masked_autoencoder_timm
    sslhub.heads.vit_heads: MAEDecoderTIMM PixioDecoderTIMM
    sslhub.backbones.masked_vit: init_weights=_init_weights
sslhub.heads.masked_causal_vision_transformer
    sslhub.backbones.masked_vit: MaskedCausalVisionTransformer
sslhub.heads.masked_vision_transformer
    sslhub.backbones.masked_vit: MaskedVisionTransformer
sslhub.heads.masked_vision_transformer_decoder
    sslhub.backbones.decoders: MaskedVisionTransformerDecoder
sslhub.heads.masked_vision_transformer_decoder_timm
    sslhub.backbones.decoders: MaskedVisionTransformerDecoder MaskedVisionTransformerDecoderTIMM
    sslhub.backbones.masked_vit: init_weights=_init_weights
sslhub.heads.masked_vision_transformer_timm
    sslhub.backbones.masked_vit: MaskedVisionTransformer MaskedVisionTransformerTIMM init_weights=_init_weights
sslhub.heads.masked_vision_transformer_torchvision
    sslhub.backbones.masked_vit: MaskedVisionTransformer
    sslhub.backbones.masked_vit_torchvision: MaskedVisionTransformerTorchvision
sslhub.heads.memory_bank
    sslhub.losses.memory_bank: MemoryBankModule
sslhub.heads.nn_memory_bank
    sslhub.losses.memory_bank: MemoryBankModule NNMemoryBankModule
sslhub.losses.barlow_twins_loss
    sslhub.losses.regularized: BarlowTwinsLoss
sslhub.losses.capi_loss
    sslhub.losses.capi: CAPILoss sinkhorn_knopp
sslhub.losses.dcl_loss
    sslhub.losses.contrastive: DCLLoss DCLWLoss negative_mises_fisher_weights
sslhub.losses.dense_relational_utils
    sslhub.losses.dense: roi_resample_to_grid
sslhub.losses.detcon_loss
    sslhub.losses.dense: DetConBLoss DetConSLoss
sslhub.losses.dino_loss
    sslhub.losses.clustering: DINOLoss
sslhub.losses.directclr_loss
    sslhub.losses.contrastive: DirectCLRLoss NTXentLoss
sslhub.losses.emp_ssl_loss
    sslhub.losses.multiview: EMPSSLLoss invariance_loss=emp_ssl_invariance_loss tcr_loss
sslhub.losses.frossl_loss
    sslhub.losses.multiview: FroSSLLoss
sslhub.losses.hypersphere_loss
    sslhub.losses.contrastive: HypersphereLoss
sslhub.losses.ibot_loss
    sslhub.losses.ibot: Center IBOTPatchLoss IBOTPlusPlusPatchLoss
sslhub.losses.koleo_loss
    sslhub.losses.koleo: KoLeoLoss
sslhub.losses.lejepa_loss
    sslhub.losses.lejepa: LeJEPALoss SIGReg lejepa_invariance_loss
sslhub.losses.macl_loss
    sslhub.losses.contrastive: MACLLoss
sslhub.losses.mmcr_loss
    sslhub.losses.multiview: MMCRLoss
sslhub.losses.msn_loss
    sslhub.losses.msn: MSNLoss prototype_probabilities sharpen sinkhorn=msn_sinkhorn
sslhub.losses.negative_cosine_similarity
    sslhub.losses.regularized: NegativeCosineSimilarity
sslhub.losses.ntx_ent_loss
    sslhub.losses.memory_bank: MemoryBankModule
    sslhub.losses.contrastive: NTXentLoss
sslhub.losses.patch_kernel_alignment_loss
    sslhub.losses.dense: PatchKernelAlignmentLoss
sslhub.losses.pmsn_loss
    sslhub.losses.msn: MSNLoss PMSNCustomLoss PMSNLoss
sslhub.losses.regularizer
    sslhub.losses.regularizers: CO2Regularizer DSERegularizer
sslhub.losses.regularizer.co2
    sslhub.losses.regularizers: CO2Regularizer
    sslhub.losses.memory_bank: MemoryBankModule
sslhub.losses.regularizer.dse
    sslhub.losses.regularizers: DSERegularizer
sslhub.losses.swav_loss
    sslhub.losses.clustering: SwaVLoss sinkhorn
sslhub.losses.tico_loss
    sslhub.losses.regularized: TiCoLoss
sslhub.losses.vicreg_loss
    sslhub.losses.regularized: VICRegLoss covariance_loss invariance_loss variance_loss
sslhub.losses.vicregl_loss
    sslhub.losses.dense: VICRegLLoss
    sslhub.losses.regularized: VICRegLoss covariance_loss invariance_loss variance_loss
sslhub.losses.visreg_loss
    sslhub.losses.regularized: VISRegLoss VISRegLossComponents visreg_center_loss visreg_scale_loss
    sslhub.losses.regularized: visreg_shape_loss
sslhub.losses.wmse_loss
    sslhub.losses.whitening: WMSELoss Whitening2d norm_mse_loss
sslhub.transforms.add_grid_transform
    sslhub.transforms.dense: AddGridTransform
sslhub.transforms.aim_transform
    sslhub.transforms.vit: AIMTransform MAETransform
sslhub.transforms.amplitude_rescale_transform
    sslhub.transforms.frequency: AmplitudeRescaleTransform
sslhub.transforms.byol_transform
    sslhub.transforms.methods: BYOLTransform BYOLView1Transform BYOLView2Transform
    sslhub.transforms.ops: GaussianBlur RandomSolarization random_rotation_transform
    sslhub.transforms.base: MultiViewTransform
sslhub.transforms.capi_transform
    sslhub.transforms.modern_vit: CAPITransform
sslhub.transforms.densecl_transform
    sslhub.transforms.methods: DenseCLTransform MoCoV2Transform
sslhub.transforms.detcon_transform
    sslhub.transforms.dense: AddGridTransform DetConSTransform DetConSViewTransform
    sslhub.transforms.base: MultiViewTransformV2
sslhub.transforms.dino_transform
    sslhub.transforms.methods: DINOTransform DINOViewTransform
    sslhub.transforms.ops: GaussianBlur RandomSolarization random_rotation_transform
    sslhub.transforms.base: MultiViewTransform
sslhub.transforms.fast_siam_transform
    sslhub.transforms.multi_view: FastSiamTransform
    sslhub.transforms.base: MultiViewTransform
    sslhub.transforms.methods: SimSiamViewTransform
sslhub.transforms.fda_transform
    sslhub.transforms.frequency: AmplitudeRescaleTransform FDATransform FDAView1Transform FDAView2Transform
    sslhub.transforms.frequency: GaussianMixtureMask IRFFT2DTransform PhaseShiftTransform RFFT2DTransform
    sslhub.transforms.frequency: RandomFrequencyMaskTransform
    sslhub.transforms.ops: GaussianBlur RandomSolarization random_rotation_transform
    sslhub.transforms.base: MultiViewTransform
sslhub.transforms.gaussian_blur
    sslhub.transforms.ops: GaussianBlur
sslhub.transforms.gaussian_mixture_masks_transform
    sslhub.transforms.frequency: GaussianMixtureMask
sslhub.transforms.ibot_transform
    sslhub.transforms.ops: GaussianBlur RandomSolarization
    sslhub.transforms.modern_vit: IBOTTransform IBOTViewTransform
    sslhub.transforms.base: MultiViewTransform
sslhub.transforms.ijepa_transform
    sslhub.transforms.modern_vit: IJEPATransform
sslhub.transforms.image_grid_transform
    sslhub.transforms.dense: ImageGridTransform
sslhub.transforms.irfft2d_transform
    sslhub.transforms.frequency: IRFFT2DTransform
sslhub.transforms.mae_transform
    sslhub.transforms.vit: MAETransform
sslhub.transforms.mmcr_transform
    sslhub.transforms.methods: BYOLView1Transform
    sslhub.transforms.multi_view: MMCRTransform
    sslhub.transforms.base: MultiViewTransform
sslhub.transforms.moco_transform
    sslhub.transforms.methods: MoCoV1Transform MoCoV2Transform SimCLRTransform
sslhub.transforms.msn_transform
    sslhub.transforms.ops: GaussianBlur
    sslhub.transforms.vit: MSNTransform MSNViewTransform
    sslhub.transforms.base: MultiViewTransform
sslhub.transforms.multi_crop_transform
    sslhub.transforms.base: MultiCropTranform MultiViewTransform
sslhub.transforms.multi_view_transform
    sslhub.transforms.base: MultiViewTransform
sslhub.transforms.multi_view_transform_v2
    sslhub.transforms.base: MultiViewTransformV2
sslhub.transforms.phase_shift_transform
    sslhub.transforms.frequency: PhaseShiftTransform
sslhub.transforms.pirl_transform
    sslhub.transforms.jigsaw: Jigsaw PIRLTransform
    sslhub.transforms.base: MultiViewTransform
sslhub.transforms.random_crop_and_flip_with_grid
    sslhub.transforms.dense: RandomResizedCropAndFlip
sslhub.transforms.random_frequency_mask_transform
    sslhub.transforms.frequency: RandomFrequencyMaskTransform
sslhub.transforms.rfft2d_transform
    sslhub.transforms.frequency: RFFT2DTransform
sslhub.transforms.rotation
    sslhub.transforms.ops: RandomRotate RandomRotateDegrees random_rotation_transform
sslhub.transforms.simclr_transform
    sslhub.transforms.ops: GaussianBlur random_rotation_transform
    sslhub.transforms.base: MultiViewTransform
    sslhub.transforms.methods: SimCLRTransform SimCLRViewTransform
sslhub.transforms.simsiam_transform
    sslhub.transforms.ops: GaussianBlur random_rotation_transform
    sslhub.transforms.base: MultiViewTransform
    sslhub.transforms.methods: SimSiamTransform SimSiamViewTransform
sslhub.transforms.smog_transform
    sslhub.transforms.ops: GaussianBlur RandomSolarization
    sslhub.transforms.base: MultiViewTransform
    sslhub.transforms.multi_view: SMoGTransform SmoGViewTransform
sslhub.transforms.solarize
    sslhub.transforms.ops: RandomSolarization
sslhub.transforms.swav_transform
    sslhub.transforms.ops: GaussianBlur random_rotation_transform
    sslhub.transforms.base: MultiCropTranform
    sslhub.transforms.methods: SwaVTransform SwaVViewTransform
sslhub.transforms.tico_transform
    sslhub.transforms.methods: BYOLTransform BYOLView1Transform BYOLView2Transform TiCoTransform
    sslhub.transforms.methods: TiCoView1Transform TiCoView2Transform
sslhub.transforms.torchvision_v2_compatibility
    sslhub.transforms.base: ToTensor
    torchvision.transforms: torchvision_transforms=v2
    torchvision.transforms.v2: functional
sslhub.transforms.vicreg_transform
    sslhub.transforms.ops: GaussianBlur RandomSolarization random_rotation_transform
    sslhub.transforms.base: MultiViewTransform
    sslhub.transforms.methods: VICRegTransform VICRegViewTransform
sslhub.transforms.vicregl_transform
    sslhub.transforms.ops: GaussianBlur RandomSolarization
    sslhub.transforms.dense: ImageGridTransform RandomResizedCropAndFlip VICRegLTransform VICRegLViewTransform
sslhub.transforms.wmse_transform
    sslhub.transforms.ops: GaussianBlur
    sslhub.transforms.base: MultiViewTransform
    sslhub.transforms.multi_view: WMSETransform
sslhub.transforms.utils
    sslhub.transforms.base: IMAGENET_NORMALIZE
"""


def _parse(text: str) -> dict[str, list[tuple[str, str, str]]]:
    paths: dict[str, list[tuple[str, str, str]]] = {}
    current = ""
    for line in text.strip().splitlines():
        if not line.startswith(" "):
            current = line.strip()
            paths[current] = []
            continue
        source, names = line.strip().split(": ")
        for entry in names.split():
            name, _, source_name = entry.partition("=")
            paths[current].append((name, source, source_name or name))
    return paths


# thin module -> [(name, sslhub module, name there)]
LIGHTLY_PATHS: dict[str, list[tuple[str, str, str]]] = _parse(_TABLE)
_PACKAGES = {p.rsplit(".", 1)[0] for p in LIGHTLY_PATHS if p.rsplit(".", 1)[0] in LIGHTLY_PATHS}


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name, f"Lightly's ``{_lightly_name(spec.name)}`` names in sslhub (thin module).")
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        names = []
        for name, source, source_name in LIGHTLY_PATHS[module.__name__]:
            setattr(module, name, getattr(importlib.import_module(source), source_name))
            names.append(name)
        module.__all__ = names  # type: ignore[attr-defined]


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the thin modules of :data:`LIGHTLY_PATHS` (only those names; everything else is left to Python)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:  # fmt: skip
        if fullname not in LIGHTLY_PATHS:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=fullname in _PACKAGES)


def _lightly_name(name: str) -> str:
    for ours, theirs in (("sslhub.losses", "lightly.loss"), ("sslhub.transforms", "lightly.transforms"),
                         ("sslhub.heads", "lightly.models.modules")):  # fmt: skip
        if name.startswith(ours + "."):
            return theirs + name[len(ours):]
    return name


_FINDER = _Finder()


def install() -> None:
    """Make the thin modules importable (idempotent; the packages call it on import)."""
    if not any(f is _FINDER for f in sys.meta_path):
        sys.meta_path.append(_FINDER)
