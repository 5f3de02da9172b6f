"""Losses between local features: VICRegL (matched grid locations), DetCon-S/B (mask-pooled regions) and
patch kernel alignment (CKA between token kernels, with :func:`roi_resample_to_grid` for its cross-view use)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.losses import dist
from sslhub.losses.regularized import VICRegLoss, covariance_loss, invariance_loss, variance_loss

__all__ = ["DetConBLoss", "DetConSLoss", "PatchKernelAlignmentLoss", "VICRegLLoss", "nearest_neighbors",
           "roi_resample_to_grid"]


def nearest_neighbors(
    input_maps: Tensor, candidate_maps: Tensor, distances: Tensor, num_matches: int | None
) -> tuple[Tensor, Tensor]:
    """The ``num_matches`` rows of ``input_maps`` (B, N, D) closest to their nearest candidate, and those
    candidates, both ``(B, num_matches, D)``, ordered by increasing distance (``lightly.models.utils``)."""
    if num_matches is None or num_matches == -1 or num_matches > input_maps.size(1):
        num_matches = input_maps.size(1)
    nn_dist, nn_idx = distances.topk(k=1, dim=2, largest=False)  # nearest candidate of each input row
    keep = nn_dist.squeeze(-1).topk(k=num_matches, dim=1, largest=False).indices.unsqueeze(-1)
    d = input_maps.shape[2]
    chosen = torch.gather(candidate_maps, 1, nn_idx.expand(-1, -1, d))
    return torch.gather(input_maps, 1, keep.expand(-1, -1, d)), torch.gather(chosen, 1, keep.expand(-1, -1, d))


class VICRegLLoss(nn.Module):
    """VICRegL loss: VICReg on the global features of every view pair, plus VICReg on local features matched
    by feature distance and by grid location; ``alpha * global + (1 - alpha) * local``.

    Args:
        lambda_param, mu_param, nu_param: Weights of the invariance, variance and covariance terms. The local
            VICReg uses ``0.5 * nu_param``, as the VICRegL code's covariance term is half VICReg's.
        alpha: Weight of the global loss.
        gather_distributed: Variance and covariance over the batches of all processes.
        eps: Numerical stability term of the variance.
        num_matches: Matches kept in the first and in the second nearest-neighbour search.
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        alpha: float = 0.75,
        gather_distributed: bool = False,
        eps: float = 0.0001,
        num_matches: tuple[int, int] = (20, 4),
    ):
        super().__init__()
        self.alpha = alpha
        self.num_matches = num_matches
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.eps = eps
        self.gather_distributed = gather_distributed
        self.vicreg_loss = VICRegLoss(lambda_param=lambda_param, mu_param=mu_param, nu_param=0.5 * nu_param, eps=eps,
                                      gather_distributed=gather_distributed)  # fmt: skip

    def forward(
        self,
        global_view_features: Sequence[tuple[Tensor, Tensor]],
        global_view_grids: Sequence[Tensor],
        local_view_features: Sequence[tuple[Tensor, Tensor]] | None = None,
        local_view_grids: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Loss from ``(global (B, D), local (B, H, W, D))`` feature pairs and grids ``(B, H, W, 2)`` per view."""
        if len(global_view_features) != len(global_view_grids):
            raise ValueError(f"global_view_features and global_view_grids must have same length but found "
                             f"{len(global_view_features)} and {len(global_view_grids)}.")  # fmt: skip
        if (local_view_features is None) != (local_view_grids is None):
            raise ValueError(f"local_view_features and local_view_grids must either both be set or None but found "
                             f"{type(local_view_features)} and {type(local_view_grids)}.")  # fmt: skip
        if local_view_features is not None and len(local_view_features) != len(local_view_grids):  # type: ignore[arg-type]
            raise ValueError(f"local_view_features and local_view_grids must have same length but found "
                             f"{len(local_view_features)} and {len(local_view_grids)}.")  # type: ignore[arg-type]  # fmt: skip
        glob, loc = list(global_view_features), list(local_view_features or [])
        glob_grids, loc_grids = list(global_view_grids), list(local_view_grids or [])
        # pairs: every ordered pair of distinct global views, and every (global, local) pair
        pairs = [(i, glob[j], glob_grids[j]) for i in range(len(glob)) for j in range(len(glob)) if i != j]
        by_anchor = {i: [(f, g) for a, f, g in pairs if a == i] + list(zip(loc, loc_grids)) for i in range(len(glob))}

        global_loss = self._global_loss(glob, loc or None)
        zero = glob[0][0].new_zeros(1)
        local, n_local = zero.clone(), 0
        for i, (_, z_a) in enumerate(glob):
            for (_, z_b), grid_b in by_anchor[i]:
                za, zb = z_a.flatten(1, 2), z_b.flatten(1, 2)
                ga, gb = glob_grids[i].flatten(1, 2), grid_b.flatten(1, 2)
                local = local + self._matched(za, zb, torch.cdist(za, zb), torch.cdist(zb, za))
                local = local + self._matched(za, zb, torch.cdist(ga, gb), torch.cdist(gb, ga))
                n_local += 1
        return self.alpha * global_loss + (1 - self.alpha) * (local / n_local)

    def _global_loss(self, global_view_features: Sequence[tuple[Tensor, Tensor]],
                     local_view_features: Sequence[tuple[Tensor, Tensor]] | None = None) -> Tensor:  # fmt: skip
        """VICReg on the global features (Lightly's ``VICRegLLoss._global_loss``): invariance over every ordered
        pair of distinct global views and every (global, local) pair; variance and covariance of every view."""
        glob, loc = list(global_view_features), list(local_view_features or [])
        zero = glob[0][0].new_zeros(1)
        inv, n_inv = zero.clone(), 0
        for i, (g_a, _) in enumerate(glob):
            for g_b, _ in [f for j, f in enumerate(glob) if j != i] + loc:
                inv = inv + invariance_loss(g_a, g_b)
                n_inv += 1
        var, cov = zero.clone(), zero.clone()
        for g, _ in glob + loc:
            if self.gather_distributed and dist.world_size() > 1:
                g = torch.cat(dist.gather(g))
            var = var + variance_loss(g, eps=self.eps)
            cov = cov + covariance_loss(g)
        n = len(glob) + len(loc)
        return self.lambda_param * (inv / n_inv) + self.mu_param * (var / n) + self.nu_param * (cov / n)

    def _matched(self, z_a: Tensor, z_b: Tensor, d_ab: Tensor, d_ba: Tensor) -> Tensor:
        a, a_nn = nearest_neighbors(z_a, z_b, d_ab, self.num_matches[0])
        b, b_nn = nearest_neighbors(z_b, z_a, d_ba, self.num_matches[1])
        return 0.5 * (self.vicreg_loss(a, a_nn) + self.vicreg_loss(b, b_nn))


class DetConBLoss(nn.Module):
    """DetCon-B loss: contrastive loss between mask-pooled region embeddings of two views; the same region
    of the same image (in the other view) is the positive, all other regions of all images the negatives.
    Predictions of one branch are compared with targets of the other, in both directions.

    Args:
        temperature: Logits are divided by this value.
        gather_distributed: Gather the targets of all processes as negatives.
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        self.eps = 1e-8
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        if abs(self.temperature) < self.eps:
            raise ValueError(f"Illegal temperature: abs({self.temperature}) < 1e-8")
        dist.check_available(gather_distributed)

    def forward(self, pred_view0: Tensor, pred_view1: Tensor, target_view0: Tensor, target_view1: Tensor,
                mask_view0: Tensor, mask_view1: Tensor) -> Tensor:  # fmt: skip
        """Loss for pooled embeddings ``(B, M, D)`` of M sampled regions whose mask ids are ``(B, M)``."""
        b, m, _ = pred_view0.shape
        if self.gather_distributed and dist.world_size() > 1:
            t0, t1 = torch.cat(dist.gather(target_view0)), torch.cat(dist.gather(target_view1))
            same_image = dist.eye_rank(b, pred_view0.device).float()
        else:
            t0, t1 = target_view0, target_view1
            same_image = torch.eye(b, device=pred_view0.device)
        p0, p1 = F.normalize(pred_view0, dim=2), F.normalize(pred_view1, dim=2)
        t0, t1 = F.normalize(t0, dim=2), F.normalize(t1, dim=2)
        same_image = same_image[:, None, :, None]  # (b, 1, b * world, 1)

        def logits(p: Tensor, t: Tensor) -> Tensor:  # (b, m, b * world, m)
            return torch.einsum("abk,uvk->abuv", p, t) / self.temperature

        def same_region(x: Tensor, y: Tensor) -> Tensor:  # (b, m, 1, m)
            return (x.unsqueeze(2) == y.unsqueeze(1)).float().unsqueeze(2)

        area0 = same_region(mask_view0, mask_view0)
        area1 = same_region(mask_view1, mask_view1)
        loss = pred_view0.new_zeros(())
        for p, t_other, t_same, mask, mask_other, area in ((p0, t1, t0, mask_view0, mask_view1, area0),
                                                          (p1, t0, t1, mask_view1, mask_view0, area1)):  # fmt: skip
            pos = same_image * same_region(mask, mask_other)
            # the region itself (same view) is excluded from the softmax, never a positive
            self_logits = logits(p, t_same) - 1e9 * (same_image * area)
            all_logits = torch.cat([logits(p, t_other), self_logits], dim=2).view(b, m, -1)
            labels = torch.cat([pos, torch.zeros_like(pos)], dim=2).view(b, m, -1)
            n_pos = labels.sum(dim=-1, keepdim=True)
            labels = labels / torch.maximum(n_pos, torch.tensor(1))
            weight = torch.gt(n_pos.squeeze(-1), 1e-3).float() / torch.maximum(area.sum(dim=(2, 3)), torch.tensor(self.eps))
            loss = loss + torch.mean(-weight * torch.sum(labels * F.log_softmax(all_logits, dim=-1), dim=-1))
        return loss


class DetConSLoss(nn.Module):
    """DetCon-S loss: :class:`DetConBLoss` with the views' own embeddings as predictions and targets (SimCLR)."""

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = True) -> None:
        super().__init__()
        self.detconbloss = DetConBLoss(temperature=temperature, gather_distributed=gather_distributed)

    def forward(self, view0: Tensor, view1: Tensor, mask_view0: Tensor, mask_view1: Tensor) -> Tensor:
        """Loss for pooled embeddings ``(B, M, D)`` of M sampled regions whose mask ids are ``(B, M)``."""
        return self.detconbloss(view0, view1, view0, view1, mask_view0, mask_view1)


def _double_center(kernel: Tensor, w: Tensor) -> Tensor:
    """H K H over the valid tokens ``w`` (B, N) of each image; invalid rows and columns are zero."""
    n = w.sum(dim=-1).clamp(min=1.0)
    row = (kernel * w[:, None, :]).sum(dim=-1) / n[:, None]
    col = (kernel * w[:, :, None]).sum(dim=1) / n[:, None]
    total = (kernel * w[:, None, :] * w[:, :, None]).sum(dim=(1, 2)) / (n * n)
    return (kernel - row[:, :, None] - col[:, None, :] + total[:, None, None]) * w[:, :, None] * w[:, None, :]


def roi_resample_to_grid(feature_map: Tensor, boxes: Tensor, out_h: int, out_w: int) -> Tensor:
    """Features of one box per image resampled onto a common ``out_h`` x ``out_w`` grid, (B, out_h * out_w, C) in
    row-major order: what :class:`PatchKernelAlignmentLoss` compares when student and teacher saw different crops
    (resample each view over the region both share). ``torchvision.ops.roi_align`` with ``aligned=True``;
    differentiable in ``feature_map``.

    Args:
        feature_map: (B, C, H, W) dense features (e.g. ViT patch tokens reshaped to the patch grid).
        boxes: (B, 4) boxes ``(x0, y0, x1, y1)`` in feature-grid coordinates (x in [0, W], y in [0, H]).
        out_h: Output grid height.
        out_w: Output grid width.
    """
    from torchvision.ops import roi_align

    if feature_map.dim() != 4:
        raise ValueError(f"feature_map must have shape (B, C, H, W) but has shape {tuple(feature_map.shape)}.")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (B, 4) but has shape {tuple(boxes.shape)}.")
    if boxes.shape[0] != feature_map.shape[0]:
        raise ValueError(f"boxes batch size {boxes.shape[0]} does not match feature_map batch size "
                         f"{feature_map.shape[0]}.")  # fmt: skip
    index = torch.arange(feature_map.shape[0], device=feature_map.device, dtype=feature_map.dtype).unsqueeze(1)
    rois = torch.cat([index, boxes.to(feature_map.dtype)], dim=1)
    pooled = roi_align(feature_map, rois, output_size=(out_h, out_w), spatial_scale=1.0, aligned=True)
    return pooled.flatten(2).transpose(1, 2).contiguous()


class PatchKernelAlignmentLoss(nn.Module):
    """``1 - CKA`` between the linear token kernels of student and (detached) teacher dense features, averaged
    over images with at least two valid tokens.

    Args:
        max_tokens: Random subset of tokens per image (valid ones first) to bound the ``N x N`` kernels.
    """

    def __init__(self, max_tokens: int | None = None) -> None:
        super().__init__()
        if max_tokens is not None and max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2 or None but is {max_tokens}.")
        self.max_tokens = max_tokens

    def forward(self, student_features: Tensor, teacher_features: Tensor, mask: Tensor | None = None) -> Tensor:
        """Loss for features ``(B, N, D)``; ``mask`` (B, N, bool) marks tokens to ignore."""
        for name, t in (("student_features", student_features), ("teacher_features", teacher_features)):
            if t.dim() != 3:
                raise ValueError(f"{name} must have shape (B, N, D) but has shape {tuple(t.shape)}.")
        if student_features.shape != teacher_features.shape:
            raise ValueError(f"student_features and teacher_features must have the same shape but have "
                             f"{tuple(student_features.shape)} and {tuple(teacher_features.shape)}.")  # fmt: skip
        b, n, _ = student_features.shape
        if mask is not None:
            if mask.shape != (b, n):
                raise ValueError(f"mask must have shape {(b, n)} but has shape {tuple(mask.shape)}.")
            if mask.dtype != torch.bool:
                raise ValueError(f"mask must have dtype torch.bool but has dtype {mask.dtype}.")
        s, t = student_features, teacher_features.detach()
        valid = s.new_ones(b, n) if mask is None else (~mask).to(device=s.device, dtype=s.dtype)
        if self.max_tokens is not None and n > self.max_tokens:
            scores = torch.rand(b, n, device=s.device).masked_fill(valid == 0, torch.inf)
            idx = scores.topk(self.max_tokens, dim=1, largest=False).indices
            s = torch.gather(s, 1, idx.unsqueeze(-1).expand(-1, -1, s.shape[-1]))
            t = torch.gather(t, 1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
            valid = torch.gather(valid, 1, idx)
        s, t, w = s.float(), t.float(), valid.float()
        k_s = _double_center(s @ s.transpose(-2, -1), w)
        k_t = _double_center(t @ t.transpose(-2, -1), w)
        denom = (k_s * k_s).sum(dim=(1, 2)).clamp_min(1e-6).sqrt() * (k_t * k_t).sum(dim=(1, 2)).clamp_min(1e-6).sqrt()
        per_image = 1.0 - (k_s * k_t).sum(dim=(1, 2)) / denom
        ok = valid.sum(dim=-1) >= 2
        okf = ok.to(per_image.dtype)
        if not bool(ok.any()):
            return (student_features * 0.0).sum()
        return (per_image * okf).sum() / okf.sum().clamp(min=1.0)
