"""iBOT patch losses with Lightly's names, arguments and defaults (``lightly.loss.IBOTPatchLoss`` ...), and the
teacher :class:`Center` they keep (state-dict key ``center.center``, as Lightly's).

- iBOT, 2021, https://arxiv.org/abs/2111.07832
- DINOv2, 2023, https://arxiv.org/abs/2304.07193
- TIPSv2 (iBOT++), 2026, https://arxiv.org/abs/2604.12012
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.losses import dist

__all__ = ["Center", "IBOTPatchLoss", "IBOTPlusPlusPatchLoss", "center_mean", "center_momentum"]


def center_mean(x: Tensor, dim: tuple[int, ...]) -> Tensor:
    """Mean of ``x`` over ``dim`` (kept), averaged over all processes (``lightly.models.modules.center``)."""
    batch_center = x.mean(dim=dim, keepdim=True)
    if dist.world_size() > 1:
        torch_dist.all_reduce(batch_center)
        batch_center = batch_center / dist.world_size()
    return batch_center


@torch.no_grad()
def center_momentum(center: Tensor, batch_center: Tensor, momentum: float) -> Tensor:
    """EMA step ``center * momentum + batch_center * (1 - momentum)``."""
    return center * momentum + batch_center * (1 - momentum)


class Center(nn.Module):
    """EMA of the mean of a feature tensor (DINO's teacher center), Lightly's ``Center``.

    Args:
        size: Shape of the center; the dimensions of size 1 are averaged over (e.g. ``(1, dim)`` for
            ``(batch, dim)`` features).
        mode: Only ``"mean"`` is supported.
        momentum: EMA momentum of the center update.
    """

    center: Tensor

    def __init__(self, size: tuple[int, ...], mode: str = "mean", momentum: float = 0.9) -> None:
        super().__init__()
        if mode != "mean":
            raise ValueError(f"Unknown mode '{mode}'. Valid modes are ['mean'].")
        self.size = tuple(size)
        self.dim = tuple(i for i, s in enumerate(self.size) if s == 1)
        self.register_buffer("center", torch.zeros(self.size))
        self.momentum = momentum

    @property
    def value(self) -> Tensor:
        """The current center."""
        return self.center

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """EMA update with the (all-process) mean of ``x`` over the size-1 dimensions."""
        self.center = center_momentum(self.center, center_mean(x, self.dim), self.momentum)


class IBOTPatchLoss(nn.Module):
    """iBOT's masked-patch self-distillation loss as DINOv2 uses it: cross-entropy between the centered,
    sharpened teacher and the student output of every masked patch, averaged per image, then over the batch.

    Args:
        output_dim: Head output dimension (size of the center).
        teacher_temp: Teacher temperature (overridable per call).
        student_temp: Student temperature.
        center_mode: Only ``"mean"``.
        center_momentum: EMA momentum of the center.
    """

    def __init__(self, output_dim: int = 65536, teacher_temp: float = 0.04, student_temp: float = 0.1,
                 center_mode: str = "mean", center_momentum: float = 0.9) -> None:  # fmt: skip
        super().__init__()
        self.teacher_temp = teacher_temp
        self.student_temp = student_temp
        self.center = Center(size=(1, output_dim), mode=center_mode, momentum=center_momentum)

    def _cross_entropy(self, teacher_out: Tensor, student_out: Tensor, teacher_temp: float | None) -> Tensor:
        temp = torch.tensor(teacher_temp if teacher_temp is not None else self.teacher_temp)
        teacher = F.softmax((teacher_out - self.center.value) / temp, dim=-1)
        return -torch.sum(teacher * F.log_softmax(student_out / self.student_temp, dim=-1), dim=-1)

    def forward(self, teacher_out: Tensor, student_out: Tensor, mask: Tensor, teacher_temp: float | None = None) -> Tensor:
        """Loss over the masked patches.

        Args:
            teacher_out: (num_masked, dim) teacher head outputs of the masked patches (in ``mask`` order).
            student_out: (num_masked, dim) student head outputs of the same patches.
            mask: (batch, H, W) boolean patch mask with exactly ``num_masked`` True entries.
            teacher_temp: Overrides the teacher temperature.
        """
        loss = self._cross_entropy(teacher_out, student_out, teacher_temp)
        num_masked = mask.sum(dim=(1, 2), keepdim=True).clamp(min=1.0)
        weight = (1.0 / num_masked).expand_as(mask)[mask]
        loss = (loss * weight).sum() / mask.shape[0]
        self.center.update(teacher_out)
        return loss


class IBOTPlusPlusPatchLoss(IBOTPatchLoss):
    """iBOT++ (TIPSv2): the iBOT loss on every patch token, masked and visible.

    With a mask, the per-image loss is ``mean over masked + visible_loss_weight * mean over visible``
    (``visible_loss_weight=0`` is iBOT); without one, the plain mean over all tokens. Inputs are full patch
    logits (B, N, K), or (B * N, K) with a mask to infer B.
    """

    def forward(  # type: ignore[override]
        self,
        teacher_out: Tensor,
        student_out: Tensor,
        mask: Tensor | None = None,
        teacher_temp: float | None = None,
        visible_loss_weight: float = 1.0,
    ) -> Tensor:
        """Loss over all patch tokens; ``mask`` (B, H, W) or (B, N) marks the masked ones (True)."""
        if teacher_out.shape != student_out.shape:
            raise ValueError(
                f"teacher_out and student_out must have the same shape but got {tuple(teacher_out.shape)} and "
                f"{tuple(student_out.shape)}."
            )
        if teacher_out.dim() not in (2, 3):
            raise ValueError(f"teacher_out must be rank 2 or 3 but got rank {teacher_out.dim()}.")
        if teacher_out.dim() == 3:
            batch = teacher_out.shape[0]
            teacher_flat, student_flat = teacher_out.flatten(0, 1), student_out.flatten(0, 1)
        else:
            if mask is None:
                raise ValueError("mask is required when teacher_out has rank 2 so that the batch size B can be inferred.")
            batch = mask.shape[0]
            if teacher_out.shape[0] % batch:
                raise ValueError(
                    f"teacher_out length {teacher_out.shape[0]} is not divisible by batch size {batch} inferred from mask."
                )
            teacher_flat, student_flat = teacher_out, student_out
        tokens = teacher_flat.shape[0] // batch
        ce = self._cross_entropy(teacher_flat, student_flat, teacher_temp).view(batch, tokens)
        if mask is None:
            loss = ce.mean()
        else:
            masked = mask.reshape(batch, tokens).to(dtype=ce.dtype)
            masked_loss = (ce * masked).sum(dim=1) / masked.sum(dim=1).clamp(min=1.0)
            visible_loss = (ce * (1.0 - masked)).sum(dim=1) / (1.0 - masked).sum(dim=1).clamp(min=1.0)
            loss = (masked_loss + visible_loss_weight * visible_loss).mean()
        self.center.update(teacher_flat)
        return loss
