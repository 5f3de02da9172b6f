"""Joint-embedding predictive methods on timm ViTs: I-JEPA, CAPI and LeJEPA (module names of Lightly's examples).

* ``ijepa``: the ``encoder`` (a :class:`~sslhub.backbones.masked_vit.MaskedVisionTransformerTIMM` around a ViT
  without class token) encodes the context blocks, :class:`~sslhub.backbones.ijepa_predictor.IJEPAPredictorTIMM`
  predicts the layer-normalised ``target_encoder`` tokens (its EMA) of the target blocks; smooth L1 loss.
  Multi-block masks as Lightly's ``IJEPAMaskCollator`` (:func:`~sslhub.backbones.block_masks.ijepa_multiblock_masks`),
  sampled in the step with the global step as the block-size seed. Evaluation copy: ``target_encoder.vit.``
  (features: mean of the patch tokens, ``global_pool=avg``).
* ``capi``: the ``student_backbone`` encodes one visible block (:func:`~sslhub.backbones.block_masks.
  random_inverse_block_mask`), :class:`~sslhub.backbones.capi_predictor.CAPIPredictorTIMM` predicts the masked
  patches, ``student_head`` scores them against prototypes; the targets are the Sinkhorn-balanced cluster logits
  of the EMA ``teacher_backbone`` under the online-clustering ``teacher_head`` (trained by the same loss on its own
  logits). Evaluation copy: ``teacher_backbone.vit.``. Takes torchvision ViTs too (``backbone.arch: vit_b_16``).
* ``lejepa``: a plain timm ViT ``backbone`` and :class:`~sslhub.heads.vit_heads.LeJEPAProjectionHead`; SIGReg plus
  invariance over multi-crop views (:class:`~sslhub.losses.lejepa.LeJEPALoss`). No EMA; evaluation copy ``backbone.``.

Registered in :data:`sslhub.methods.METHODS` as ``ijepa``, ``capi`` and ``lejepa``.
"""

from __future__ import annotations

import copy
import math
from typing import Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.heads.utils import deactivate_requires_grad, update_momentum
from sslhub.heads.vit_heads import CAPIProjectionHead, LeJEPAProjectionHead
from sslhub.losses.capi import CAPILoss
from sslhub.losses.lejepa import LeJEPALoss
from sslhub.methods import METHODS
from sslhub.methods.vit_methods import _is_torchvision_vit, _MaskedViTMethod, _ViTMethodBase
from sslhub.utils.scheduler import cosine_schedule

__all__ = ["CAPI", "IJEPA", "LeJEPA"]


class IJEPA(_MaskedViTMethod):
    """I-JEPA (Lightly's ``examples/pytorch/ijepa.py`` on timm modules). Block-mask arguments as the collator's."""

    eval_prefix = "target_encoder.vit."

    def __init__(self, backbone: nn.Module, num_features: int, predictor_embed_dim: int = 384, predictor_depth: int = 12,
                 predictor_num_heads: int = 12, enc_mask_scale: tuple[float, float] = (0.85, 1.0),
                 pred_mask_scale: tuple[float, float] = (0.15, 0.2), aspect_ratio: tuple[float, float] = (0.75, 1.5),
                 nenc: int = 1, npred: int = 4, min_keep: int = 10, allow_overlap: bool = False,
                 momentum_start: float = 0.996, momentum_end: float = 1.0, pos_embed: str = "sincos") -> None:  # fmt: skip
        from sslhub.backbones.ijepa_predictor import IJEPAPredictorTIMM

        if _is_torchvision_vit(backbone):
            raise ValueError("ijepa needs a timm ViT without class token (backbone.class_token=false, global_pool=avg)")
        super().__init__(backbone, num_features, pos_embed)
        if self.num_prefix_tokens:
            raise ValueError("I-JEPA encodes patch tokens only: set backbone.class_token=false and backbone.global_pool=avg")
        self.encoder = self.backbone
        del self.backbone
        self.encoder.mask_token.requires_grad = False  # context tokens are selected, never replaced
        self.predictor = IJEPAPredictorTIMM(num_patches=self.num_patches, depth=predictor_depth, mlp_dim=self.embed_dim,
                                            predictor_embed_dim=predictor_embed_dim, num_heads=predictor_num_heads)  # fmt: skip
        self.target_encoder = copy.deepcopy(self.encoder)
        deactivate_requires_grad(self.target_encoder)
        self.mask_args = dict(enc_mask_scale=tuple(enc_mask_scale), pred_mask_scale=tuple(pred_mask_scale),
                              aspect_ratio=tuple(aspect_ratio), nenc=nenc, npred=npred, min_keep=min_keep,
                              allow_overlap=allow_overlap)  # fmt: skip
        self.momentum = (momentum_start, momentum_end)

    def sample_masks(self, batch_size: int, grid: tuple[int, int], step: int) -> tuple[list[Tensor], list[Tensor]]:
        """Context and target patch indices for one batch (block sizes seeded by ``step``)."""
        from sslhub.backbones.block_masks import ijepa_multiblock_masks

        return ijepa_multiblock_masks(batch_size, grid, seed=step, **self.mask_args)  # type: ignore[arg-type]

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        images = views[0]
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        masks_enc, masks_pred = self.sample_masks(images.shape[0], grid, progress[0])
        dev = images.device
        return self.forward_masked(images, [m.to(dev) for m in masks_enc], [m.to(dev) for m in masks_pred])

    def forward_masked(self, images: Tensor, masks_enc: list[Tensor], masks_pred: list[Tensor]) -> Tensor:
        """Smooth L1 between predicted and target tokens of the target blocks."""
        from sslhub.backbones.ijepa_predictor import apply_masks, repeat_interleave_batch

        with torch.no_grad():
            h = self.target_encoder.encode(images)
            h = F.layer_norm(h, (h.size(-1),))
            h = repeat_interleave_batch(apply_masks(h, masks_pred), len(images), repeat=len(masks_enc))
        z = torch.cat([self.encoder.encode(images, idx_keep=m) for m in masks_enc])
        return F.smooth_l1_loss(self.predictor(z, masks_enc, masks_pred), h)

    def after_step(self, step: int, total: int) -> None:
        start, end = self.momentum  # linear, as I-JEPA
        update_momentum(self.encoder, self.target_encoder, start + (end - start) * min(1.0, step / max(1, total - 1)))


class CAPI(_MaskedViTMethod):
    """CAPI (Lightly's ``examples/pytorch/capi.py``): clustering targets of the teacher for the masked patches."""

    eval_prefix = "teacher_backbone.vit."

    def __init__(self, backbone: nn.Module, num_features: int, num_clusters: int = 16384, mask_ratio: float = 0.65,
                 predictor_depth: int = 12, predictor_num_heads: int = 6, teacher_temperature: float = 0.06,
                 student_temperature: float = 0.12, sinkhorn_iterations: int = 3, momentum_start: float = 0.996,
                 momentum_end: float = 1.0, pos_embed: str = "sincos", gather_distributed: bool = False) -> None:  # fmt: skip
        from sslhub.backbones.capi_predictor import CAPIPredictorTIMM

        super().__init__(backbone, num_features, pos_embed)
        self.student_backbone = self.backbone
        del self.backbone
        self.student_backbone.mask_token.requires_grad = False  # masked patches are dropped, not replaced
        self.mask_ratio = mask_ratio
        side = math.isqrt(self.num_patches)  # square grid (timm and torchvision ViTs)
        self.student_head = CAPIProjectionHead(input_dim=self.embed_dim, num_clusters=num_clusters, weight_norm=True)
        self.predictor = CAPIPredictorTIMM(embed_dim=self.embed_dim, grid_size=side, depth=predictor_depth,
                                           num_heads=predictor_num_heads)  # fmt: skip
        self.teacher_backbone = copy.deepcopy(self.student_backbone)
        self.teacher_head = CAPIProjectionHead(input_dim=self.embed_dim, num_clusters=num_clusters, bias=True)
        deactivate_requires_grad(self.teacher_backbone)
        self.criterion = CAPILoss(teacher_temperature=teacher_temperature, student_temperature=student_temperature,
                                  sinkhorn_iterations=sinkhorn_iterations, gather_distributed=gather_distributed)  # fmt: skip
        self.momentum = (momentum_start, momentum_end)

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        from sslhub.backbones.block_masks import random_inverse_block_mask

        images = views[0]
        seq = self.num_prefix_tokens + (images.shape[-2] // self.patch_size) * (images.shape[-1] // self.patch_size)
        idx_keep, idx_mask = random_inverse_block_mask((images.shape[0], seq), mask_ratio=self.mask_ratio,
                                                       num_prefix_tokens=self.num_prefix_tokens, device=images.device)  # fmt: skip
        return self.forward_masked(images, idx_keep, idx_mask)

    def forward_masked(self, images: Tensor, idx_keep: Tensor, idx_mask: Tensor) -> Tensor:
        """Student loss on the masked patches plus the online-clustering loss of the teacher head."""
        n = self.num_prefix_tokens
        visible = self.student_backbone.encode(images, idx_keep=idx_keep)
        predicted = self.predictor(context=visible[:, n:], context_positions=idx_keep[:, n:] - n, query_positions=idx_mask - n)
        student_logits = self.student_head(predicted)
        with torch.no_grad():
            features = self.teacher_backbone.encode(images)
        teacher_logits = self.teacher_head(features)[:, n:]
        student_loss = self.criterion(teacher_logits=teacher_logits, student_logits=student_logits, teacher_index=idx_mask - n)
        clustering_loss = self.criterion(teacher_logits=teacher_logits, student_logits=teacher_logits)
        return student_loss + clustering_loss

    def after_step(self, step: int, total: int) -> None:
        update_momentum(self.student_backbone, self.teacher_backbone, cosine_schedule(step, total, *self.momentum))


class LeJEPA(_ViTMethodBase):
    """LeJEPA (Lightly's ``examples/pytorch/lejepa.py``): each view runs through backbone and projector on its own
    (the projector's BatchNorm sees one view at a time, as there). Views: the first ``n_global_views`` are global."""

    eval_prefix = "backbone."

    def __init__(self, backbone: nn.Module, num_features: int, hidden_dim: int = 2048, out_dim: int = 64,
                 num_layers: int = 3, lambda_param: float = 0.05, sigreg_knots: int = 17, sigreg_t_max: float = 3.0,
                 sigreg_num_vectors: int = 1024, n_global_views: int = 2, drop_path_rate: float = 0.1,
                 gather_distributed: bool = False) -> None:  # fmt: skip
        from sslhub.backbones.masked_vit import annotate_vit, require_timm_vit

        vit = require_timm_vit(backbone, "LeJEPA")
        super().__init__(annotate_vit(vit), num_features)
        _set_linear_drop_path(vit, drop_path_rate)
        self.projection_head = LeJEPAProjectionHead(num_features, hidden_dim, out_dim, num_layers)
        self.n_global_views = n_global_views
        self.criterion = LeJEPALoss(lambda_param=lambda_param, gather_distributed=gather_distributed, sigreg_knots=sigreg_knots,
                                    sigreg_t_max=sigreg_t_max, sigreg_num_vectors=sigreg_num_vectors)  # fmt: skip

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        proj = [self.projection_head(self.backbone(v)) for v in views]
        g = self.n_global_views
        return self.criterion(local_proj=torch.stack(proj[g:]), global_proj=torch.stack(proj[:g]))


def _set_linear_drop_path(vit: nn.Module, rate: Union[float, int]) -> None:
    """timm's ``drop_path_rate``: linear from 0 in the first block to ``rate`` in the last (parameter-free)."""
    from timm.layers import DropPath

    blocks = list(vit.blocks)
    for i, blk in enumerate(blocks):
        r = rate * i / max(1, len(blocks) - 1)
        blk.drop_path1 = DropPath(r) if r > 0 else nn.Identity()
        blk.drop_path2 = DropPath(r) if r > 0 else nn.Identity()


METHODS.update({"ijepa": IJEPA, "capi": CAPI, "lejepa": LeJEPA})
