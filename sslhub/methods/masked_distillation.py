"""Self-distillation with masked patches: iBOT and DINOv2 on timm ViTs (layout of Lightly's examples).

Both keep an EMA ``teacher_backbone`` (what :func:`sslhub.load_pretrained` returns: ``teacher_backbone.vit.*`` are
timm's keys) of the ``student_backbone`` (each a :class:`~sslhub.backbones.masked_vit.MaskedVisionTransformerTIMM`).
The student sees the two global crops with DINOv2-style block masks on half of the images
(:func:`~sslhub.backbones.block_masks.random_block_mask`) plus the unmasked local crops; the teacher sees the
unmasked global crops. Losses: DINO on the class tokens (:class:`~sslhub.losses.DINOLoss`), iBOT on the masked
patch tokens (:class:`~sslhub.losses.ibot.IBOTPatchLoss`) and, for DINOv2, KoLeo on the student's global class
tokens (:class:`~sslhub.losses.koleo.KoLeoLoss`, weight 0.1).

Both take torchvision ViTs too (``backbone.arch: vit_b_16`` ...; ``teacher_backbone.vit.*`` are then torchvision's
keys), as :class:`~sslhub.methods.vit_methods.DINOViT` does.

* ``ibot``: one :class:`~sslhub.heads.DINOProjectionHead` per network for class and patch tokens
  (``student_head`` / ``teacher_head``; the student's last layer is not weight-norm-fixed, the teacher's is).
* ``dinov2``: :class:`~sslhub.heads.vit_heads.DINOv2ProjectionHead` under ``student_head.dino_head`` /
  ``teacher_head.dino_head``, plus ``*.ibot_head`` with ``ibot_separate_head``. With DINOv2's timm architecture
  (``vit_*_patch14_dinov2``: LayerScale, learned positions) the teacher loads strictly into
  ``timm.create_model("vit_small_patch14_dinov2", img_size=..., ...)``, so sslhub-trained and released DINOv2
  weights are interchangeable.

Unlike Lightly's examples, the teacher heads start as copies of the student heads (as in the iBOT and DINOv2
code), and a shared iBOT head appears once in the state dict. Teacher temperature: linear warmup over ``warmup_teacher_temp_epochs`` (per epoch, as DINO/iBOT; Lightly's examples
warm up per step). Stochastic depth on the student, the same rate in every block (Lightly's ``mode="uniform"``).

Registered in :data:`sslhub.methods.METHODS` as ``ibot`` and ``dinov2``.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

from sslhub.heads import DINOProjectionHead
from sslhub.heads.utils import deactivate_requires_grad, update_momentum
from sslhub.heads.vit_heads import DINOv2ProjectionHead
from sslhub.losses import DINOLoss
from sslhub.losses.ibot import IBOTPatchLoss
from sslhub.losses.koleo import KoLeoLoss
from sslhub.methods import METHODS
from sslhub.methods.vit_methods import _MaskedViTMethod
from sslhub.utils.scheduler import cosine_schedule

__all__ = ["DINOv2", "DINOv2Head", "IBOT", "set_uniform_drop_path"]


def set_uniform_drop_path(masked_vit: nn.Module, rate: float) -> None:
    """Stochastic depth ``rate`` in every block of a masked timm or torchvision ViT (Lightly's
    ``update_drop_path_rate(..., mode="uniform")``); parameter-free, so the state dict is unchanged."""
    from timm.layers import DropPath

    from sslhub.backbones.masked_vit_torchvision import is_torchvision_vit

    if is_torchvision_vit(masked_vit.vit):
        # torchvision's EncoderBlock has no drop-path slot: after the attention branch's dropout and at the end of
        # the MLP branch (both right before their residual additions), as DINOViT does.
        from torchvision.ops import StochasticDepth

        if rate > 0:
            for layer in masked_vit.vit.encoder.layers:
                layer.dropout = nn.Sequential(layer.dropout, StochasticDepth(rate, "row"))
                layer.mlp.append(StochasticDepth(rate, "row"))
        return
    for blk in masked_vit.vit.blocks:
        blk.drop_path1 = DropPath(rate) if rate > 0 else nn.Identity()
        blk.drop_path2 = DropPath(rate) if rate > 0 else nn.Identity()


class DINOv2Head(nn.Module):
    """``dino_head`` (class token) and ``ibot_head`` (patch tokens) of one DINOv2 network.

    A shared iBOT head is the DINO head itself and is not registered twice, so the state dict holds it once
    (``dino_head.*``; Lightly's example module lists it under both names).
    """

    def __init__(self, dino_head: nn.Module, ibot_head: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.dino_head = dino_head
        if ibot_head is not None and ibot_head is not dino_head:
            self.ibot_head = ibot_head

    def __getattr__(self, name: str) -> nn.Module:
        if name == "ibot_head" and "ibot_head" not in self._modules:
            return self._modules["dino_head"]  # type: ignore[return-value]
        return super().__getattr__(name)  # type: ignore[return-value]


class _MaskedDistillation(_MaskedViTMethod):
    """Shared forward of iBOT and DINOv2; subclasses build the heads and set the loss weights."""

    eval_prefix = "teacher_backbone.vit."
    koleo_weight = 0.0

    def __init__(self, backbone: nn.Module, num_features: int, out_dim: int, warmup_teacher_temp: float,
                 teacher_temp: float, warmup_teacher_temp_epochs: int, student_temp: float, center_momentum: float,
                 momentum_start: float, momentum_end: float, student_drop_path_rate: float, freeze_last_layer: int,
                 mask_ratio_min: float, mask_ratio_max: float, mask_probability: float, pos_embed: str) -> None:  # fmt: skip
        super().__init__(backbone, num_features, pos_embed)
        if self.num_prefix_tokens < 1:
            raise ValueError(f"{type(self).__name__} needs a ViT with a class token (backbone.class_token=true)")
        self.backbone.antialias = False  # as Lightly's examples: no antialiasing when resampling positions
        self.teacher_backbone = self.backbone
        del self.backbone  # one copy in the state dict, under Lightly's name
        self.student_backbone = copy.deepcopy(self.teacher_backbone)
        set_uniform_drop_path(self.student_backbone, student_drop_path_rate)
        deactivate_requires_grad(self.teacher_backbone)
        self.freeze_last_layer = freeze_last_layer
        self.mask_ratio = (mask_ratio_min, mask_ratio_max)
        self.mask_probability = mask_probability
        self.dino_criterion = DINOLoss(output_dim=out_dim, warmup_teacher_temp=warmup_teacher_temp, teacher_temp=teacher_temp,
                                       warmup_teacher_temp_epochs=warmup_teacher_temp_epochs, student_temp=student_temp,
                                       center_momentum=center_momentum)  # fmt: skip
        self.ibot_criterion = IBOTPatchLoss(output_dim=out_dim, teacher_temp=teacher_temp, student_temp=student_temp,
                                            center_momentum=center_momentum)  # fmt: skip
        self.momentum = (momentum_start, momentum_end)

    # heads: (teacher cls, teacher patch, student cls, student patch)
    def _heads(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:  # pragma: no cover - abstract
        raise NotImplementedError

    def teacher_temperature(self, epoch: int) -> float:
        """The teacher temperature of ``epoch`` (linear warmup, then constant)."""
        c = self.dino_criterion
        return float(c.teacher_temp_schedule[epoch]) if epoch < c.warmup_teacher_temp_epochs else float(c.teacher_temp)

    def sample_mask(self, batch_size: int, grid: tuple[int, int], device: torch.device) -> Tensor:
        """(batch, H, W) block masks of the global crops."""
        from sslhub.backbones.block_masks import random_block_mask

        if int(grid[0] * grid[1] * self.mask_ratio[0]) < 4:  # Lightly's (and DINOv2's) blocks have >= 4 patches
            raise ValueError(
                f"{type(self).__name__}: a {grid[0]}x{grid[1]} patch grid with mask_ratio_min={self.mask_ratio[0]} masks "
                "fewer than 4 patches, the smallest block; use larger global crops or smaller patches, or raise "
                "model.mask_ratio_min"
            )
        return random_block_mask((batch_size, *grid), batch_mask_ratio=self.mask_probability,
                                 min_image_mask_ratio=self.mask_ratio[0], max_image_mask_ratio=self.mask_ratio[1],
                                 device=device)  # fmt: skip

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        global_views = torch.cat(views[:2])
        grid = (global_views.shape[-2] // self.patch_size, global_views.shape[-1] // self.patch_size)
        return self.forward_masked(views, self.sample_mask(global_views.shape[0], grid, global_views.device), progress[2])

    def forward_masked(self, views: list[Tensor], block_mask: Tensor, epoch: int) -> Tensor:
        """The loss with the given (2 * batch, H, W) block mask of the global crops."""
        t_cls_head, t_patch_head, s_cls_head, s_patch_head = self._heads()
        global_views = torch.cat(views[:2])
        n_prefix = self.num_prefix_tokens
        mask = block_mask.new_zeros((block_mask.shape[0], n_prefix + block_mask[0].numel()))
        mask[:, n_prefix:] = block_mask.flatten(1)
        with torch.no_grad():
            t_features = self.teacher_backbone.encode(global_views)
            t_cls_out = t_cls_head(t_features[:, 0])
            t_masked_out = t_patch_head(t_features[mask])
        s_features = self.student_backbone.encode(global_views, mask=mask)
        s_global_cls = s_features[:, 0]
        s_cls_out = [s_cls_head(s_global_cls)]
        if len(views) > 2:
            s_cls_out.append(s_cls_head(self.student_backbone.encode(torch.cat(views[2:]))[:, 0]))
        s_masked_out = s_patch_head(s_features[mask])
        temp = self.teacher_temperature(epoch)
        loss = self.dino_criterion(list(t_cls_out.chunk(2)), list(torch.cat(s_cls_out).chunk(len(views))), teacher_temp=temp)
        loss = loss + self.ibot_criterion(t_masked_out, s_masked_out, mask=block_mask, teacher_temp=temp)
        if self.koleo_weight:
            loss = loss + self.koleo_weight * sum(self.koleo_criterion(t) for t in s_global_cls.chunk(2))
        return loss

    def _student_last_layers(self) -> list[nn.Module]:
        return [m for n, m in self.named_modules() if n.startswith("student_head") and n.endswith("last_layer")]

    def before_optimizer_step(self, epoch: int) -> None:
        if epoch < self.freeze_last_layer:
            for layer in self._student_last_layers():
                for p in layer.parameters():
                    p.grad = None

    def after_step(self, step: int, total: int) -> None:
        m = cosine_schedule(step, total, *self.momentum)
        update_momentum(self.student_backbone, self.teacher_backbone, m)
        update_momentum(self.student_head, self.teacher_head, m)


class IBOT(_MaskedDistillation):
    """iBOT: DINO on the class token plus masked-patch distillation, one shared head per network (Lightly's
    ``examples/pytorch/ibot.py``)."""

    def __init__(self, backbone: nn.Module, num_features: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 out_dim: int = 8192, warmup_teacher_temp: float = 0.04, teacher_temp: float = 0.07,
                 warmup_teacher_temp_epochs: int = 30, student_temp: float = 0.1, center_momentum: float = 0.9,
                 momentum_start: float = 0.992, momentum_end: float = 1.0, student_drop_path_rate: float = 0.1,
                 freeze_last_layer: int = 1, mask_ratio_min: float = 0.1, mask_ratio_max: float = 0.5,
                 mask_probability: float = 0.5, pos_embed: str = "skip") -> None:  # fmt: skip
        super().__init__(backbone, num_features, out_dim, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs,
                         student_temp, center_momentum, momentum_start, momentum_end, student_drop_path_rate,
                         freeze_last_layer, mask_ratio_min, mask_ratio_max, mask_probability, pos_embed)  # fmt: skip
        self.student_head = DINOProjectionHead(num_features, hidden_dim, bottleneck_dim, out_dim, norm_last_layer=False)
        self.teacher_head = DINOProjectionHead(num_features, hidden_dim, bottleneck_dim, out_dim)
        self.teacher_head.load_state_dict(self.student_head.state_dict())  # teacher starts as the student (iBOT)
        deactivate_requires_grad(self.teacher_head)

    def _heads(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        return self.teacher_head, self.teacher_head, self.student_head, self.student_head


class DINOv2(_MaskedDistillation):
    """DINOv2: DINO + iBOT + KoLeo (Lightly's ``examples/pytorch/dinov2.py``) with
    :class:`~sslhub.heads.vit_heads.DINOv2ProjectionHead` heads (``*.dino_head``, and ``*.ibot_head`` when separate)."""

    koleo_weight = 0.1

    def __init__(self, backbone: nn.Module, num_features: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 out_dim: int = 65536, ibot_separate_head: bool = False, warmup_teacher_temp: float = 0.04,
                 teacher_temp: float = 0.07, warmup_teacher_temp_epochs: int = 30, student_temp: float = 0.1,
                 center_momentum: float = 0.9, momentum_start: float = 0.992, momentum_end: float = 1.0,
                 student_drop_path_rate: float = 0.1, freeze_last_layer: int = 1, mask_ratio_min: float = 0.1,
                 mask_ratio_max: float = 0.5, mask_probability: float = 0.5, koleo_weight: float = 0.1,
                 pos_embed: str = "skip") -> None:  # fmt: skip
        super().__init__(backbone, num_features, out_dim, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs,
                         student_temp, center_momentum, momentum_start, momentum_end, student_drop_path_rate,
                         freeze_last_layer, mask_ratio_min, mask_ratio_max, mask_probability, pos_embed)  # fmt: skip

        def head() -> DINOv2ProjectionHead:
            return DINOv2ProjectionHead(num_features, hidden_dim, bottleneck_dim, out_dim)

        # Construction order of Lightly's example: teacher dino, student dino, then (separate) teacher/student ibot
        t_dino, s_dino = head(), head()
        t_ibot, s_ibot = (head(), head()) if ibot_separate_head else (None, None)
        self.teacher_head = DINOv2Head(t_dino, t_ibot)
        self.student_head = DINOv2Head(s_dino, s_ibot)
        self.teacher_head.load_state_dict(self.student_head.state_dict())  # teacher starts as the student (DINOv2)
        deactivate_requires_grad(self.teacher_head)
        self.koleo_weight = koleo_weight
        self.koleo_criterion = KoLeoLoss()

    def _heads(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        t, s = self.teacher_head, self.student_head
        return t.dino_head, t.ibot_head, s.dino_head, s.ibot_head


METHODS.update({"ibot": IBOT, "dinov2": DINOv2})
