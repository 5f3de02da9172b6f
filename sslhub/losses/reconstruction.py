"""Pixel reconstruction targets and losses of masked image modelling: MAE, SimMIM and AIM.

``patchify``/``unpatchify``/``normalize_mean_var`` have Lightly's names and semantics
(``lightly.models.utils``). Targets are the patches of the (already ImageNet-normalised) input images,
optionally normalised per patch to zero mean and unit variance ("norm_pix_loss", MAE's best setting).

- MAE: Masked Autoencoders Are Scalable Vision Learners, 2021, https://arxiv.org/abs/2111.06377
- SimMIM: a Simple Framework for Masked Image Modeling, 2021, https://arxiv.org/abs/2111.09886
- AIM: Scalable Pre-training of Large Autoregressive Image Models, 2024, https://arxiv.org/abs/2401.08541
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["AIMLoss", "MAELoss", "SimMIMLoss", "normalize_mean_var", "patchify", "unpatchify"]


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """(N, C, H, W) -> (N, num_patches, patch_size**2 * C), patches row by row, pixels (row, col, channel)."""
    n, c, h, w = images.shape
    if h != w or h % patch_size:
        raise ValueError(f"patchify needs square images with a side divisible by {patch_size}, got {h}x{w}")
    g = h // patch_size
    x = images.reshape(n, c, g, patch_size, g, patch_size)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, g * g, patch_size**2 * c)


def unpatchify(patches: Tensor, patch_size: int, channels: int = 3) -> Tensor:
    """Inverse of :func:`patchify`: (N, num_patches, patch_size**2 * C) -> (N, C, H, W)."""
    n, num = patches.shape[:2]
    g = int(num**0.5)
    if g * g != num:
        raise ValueError(f"{num} patches do not form a square grid")
    x = patches.reshape(n, g, g, patch_size, patch_size, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, g * patch_size, g * patch_size)


def normalize_mean_var(x: Tensor, dim: int = -1, eps: float = 1.0e-6) -> Tensor:
    """Zero mean, unit (unbiased) variance along ``dim``: ``(x - mean) / sqrt(var + eps)``."""
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


class MAELoss(nn.Module):
    """Mean squared error between predicted and target patches of the masked tokens.

    Args:
        norm_pix_loss: Normalise each target patch to zero mean and unit variance first (MAE's default in
            its released configs; Lightly's examples use raw patches, i.e. ``False``).
        eps: Variance epsilon of the normalisation.
    """

    def __init__(self, norm_pix_loss: bool = True, eps: float = 1.0e-6) -> None:
        super().__init__()
        self.norm_pix_loss = norm_pix_loss
        self.eps = eps

    def target(self, patches: Tensor) -> Tensor:
        """The regression target for ``patches`` (normalised or not)."""
        return normalize_mean_var(patches, dim=-1, eps=self.eps) if self.norm_pix_loss else patches

    def forward(self, predictions: Tensor, patches: Tensor) -> Tensor:
        """``predictions`` and ``patches``: (batch, num_masked, patch_dim) for the same (masked) tokens."""
        return self._loss(predictions, self.target(patches))

    def _loss(self, predictions: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(predictions, target)


class SimMIMLoss(MAELoss):
    """L1 error between predicted and target patches of the masked tokens (SimMIM).

    ``norm_pix_loss`` defaults to False: SimMIM regresses the (ImageNet-normalised) pixels themselves.
    """

    def __init__(self, norm_pix_loss: bool = False, eps: float = 1.0e-6) -> None:
        super().__init__(norm_pix_loss=norm_pix_loss, eps=eps)

    def _loss(self, predictions: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(predictions, target)


class AIMLoss(MAELoss):
    """AIM's autoregressive pixel loss.

    The token at position k (after causal attention over positions <= k) predicts patch k + 1, and only
    patches outside the bidirectional prefix are counted: ``mean over {k+1 : mask[k+1]}`` of the per-patch
    squared error, as in the paper's objective. ``shift=False`` compares position k with patch k over all
    tokens, which is what Lightly's AIM benchmark does (``MSELoss(predictions, normalize_mean_var(patches))``).

    Args:
        norm_pix_loss: Normalise each target patch (AIM's default).
        shift: Predict the next patch (True) or the same position (False, Lightly's benchmark).
        eps: Variance epsilon of the normalisation.
    """

    def __init__(self, norm_pix_loss: bool = True, shift: bool = True, eps: float = 1.0e-6) -> None:
        super().__init__(norm_pix_loss=norm_pix_loss, eps=eps)
        self.shift = shift

    def forward(self, predictions: Tensor, patches: Tensor, mask: Optional[Tensor] = None) -> Tensor:  # type: ignore[override]
        """Loss for ``predictions`` and ``patches`` (batch, N, patch_dim) of all N tokens.

        Args:
            predictions: Head outputs for every token.
            patches: ``patchify(images, patch_size)``.
            mask: (batch, N) boolean from :func:`~sslhub.backbones.masked_vit.random_prefix_mask`, True for
                tokens after the prefix; None counts every target.
        """
        target = self.target(patches)
        if self.shift:
            predictions, target = predictions[:, :-1], target[:, 1:]
            mask = None if mask is None else mask[:, 1:]
        err = (predictions - target).pow(2).mean(dim=-1)
        if mask is None:
            return err.mean()
        w = mask.to(err.dtype)
        return (err * w).sum() / w.sum().clamp_min(1.0)
