"""Clustering / self-distillation losses: SwaV (with Sinkhorn-Knopp) and DINO."""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.losses import dist


@torch.no_grad()
def sinkhorn(out: Tensor, iterations: int = 3, epsilon: float = 0.05, gather_distributed: bool = False) -> Tensor:
    """Soft codes from prototype scores with the (distributed) Sinkhorn-Knopp algorithm of SwaV.

    Args:
        out: Scores of shape (batch_size, n_prototypes).
        iterations: Number of normalisation rounds.
        epsilon: Entropy regularisation (temperature).
        gather_distributed: Normalise over the batches of all processes.
    """
    ws = dist.world_size() if gather_distributed else 1
    Q = torch.exp(out / epsilon).t()  # (K, B)
    total = Q.sum()
    if ws > 1:
        torch_dist.all_reduce(total)
    Q /= total
    B = Q.shape[1] * ws
    for _ in range(iterations):
        rows = Q.sum(dim=1, keepdim=True)  # every prototype gets equal mass
        if ws > 1:
            torch_dist.all_reduce(rows)
        Q /= rows
        Q /= Q.sum(dim=0, keepdim=True)  # every sample gets mass 1/B
        Q /= B
    Q *= B
    return Q.t()


class SwaVLoss(nn.Module):
    """SwaV swapped-prediction loss over multi-crop views.

    Args:
        temperature: Temperature of the prediction softmax.
        sinkhorn_iterations: Number of Sinkhorn-Knopp iterations.
        sinkhorn_epsilon: Temperature of the Sinkhorn-Knopp algorithm.
        sinkhorn_gather_distributed: Compute codes over the batches of all processes.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        dist.check_available(sinkhorn_gather_distributed, "sinkhorn_gather_distributed")
        self.temperature = temperature
        self.sinkhorn_iterations = sinkhorn_iterations
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_gather_distributed = sinkhorn_gather_distributed

    def subloss(self, z: Tensor, q: Tensor) -> Tensor:
        """Cross-entropy between codes ``q`` and the softmax of prototype scores ``z``."""
        return -(q * F.log_softmax(z / self.temperature, dim=1)).sum(dim=1).mean()

    def forward(
        self,
        high_resolution_outputs: list[Tensor],
        low_resolution_outputs: list[Tensor],
        queue_outputs: list[Tensor] | None = None,
    ) -> Tensor:
        """Loss from prototype scores of the high- and low-resolution crops (lists of (batch, K)).

        ``queue_outputs[i]`` (scores of queued features) is appended to the i-th high-resolution crop
        when computing its codes. Returns a 0-d tensor.
        """
        n_crops = len(high_resolution_outputs) + len(low_resolution_outputs)
        loss = high_resolution_outputs[0].new_zeros(())
        for i, high in enumerate(high_resolution_outputs):
            with torch.no_grad():
                scores = high.detach()
                if queue_outputs is not None:
                    scores = torch.cat((scores, queue_outputs[i].detach()))
                q = sinkhorn(scores, self.sinkhorn_iterations, self.sinkhorn_epsilon, self.sinkhorn_gather_distributed)
                q = q[: len(high)]  # drop the queue's codes
            others = [z for v, z in enumerate(high_resolution_outputs) if v != i] + list(low_resolution_outputs)
            subloss = high.new_zeros(())
            for z in others:
                subloss = subloss + self.subloss(z, q)
            loss = loss + subloss / (n_crops - 1)
        return loss / len(high_resolution_outputs)


class DINOLoss(nn.Module):
    """DINO self-distillation loss with teacher centering and teacher-temperature warmup.

    Args:
        output_dim: Dimension of the head output (size of the ``center`` buffer).
        warmup_teacher_temp: Teacher temperature at epoch 0 of the warmup.
        teacher_temp: Teacher temperature after warmup.
        warmup_teacher_temp_epochs: Length of the linear warmup (used when ``epoch`` is passed).
        student_temp: Student temperature.
        center_momentum: EMA momentum of the center.
        center_mode: Only ``"mean"`` is supported.
    """

    center: Tensor

    def __init__(
        self,
        output_dim: int = 65536,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 30,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        center_mode: str = "mean",
    ) -> None:
        super().__init__()
        if center_mode != "mean":
            raise ValueError(f"Unknown mode '{center_mode}'. Valid modes are ['mean'].")
        self.teacher_temp = teacher_temp
        self.student_temp = student_temp
        self.register_buffer("center", torch.zeros(1, 1, output_dim))
        self.center_momentum = center_momentum
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.teacher_temp_schedule = torch.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs)

    def forward(
        self,
        teacher_out: list[Tensor],
        student_out: list[Tensor],
        teacher_temp: float | None = None,
        epoch: int | None = None,
    ) -> Tensor:
        """Mean cross-entropy between every teacher view and every *other* student view, then a center update.

        Views with the same index are skipped, so the teacher views must be the first student views.
        ``teacher_temp`` overrides the temperature; otherwise ``epoch`` selects it from the warmup schedule.
        """
        if teacher_temp is not None:
            temp: float | Tensor = teacher_temp
        elif epoch is not None and epoch < self.warmup_teacher_temp_epochs:
            temp = self.teacher_temp_schedule[epoch]
        else:
            temp = self.teacher_temp
        teacher = torch.stack(teacher_out)  # (t, b, d)
        t_out = F.softmax((teacher - self.center) / temp, dim=-1)
        s_out = F.log_softmax(torch.stack(student_out) / self.student_temp, dim=-1)  # (s, b, d)
        loss = -torch.einsum("tbd,sbd->ts", t_out, s_out)
        loss.fill_diagonal_(0)
        n_terms = loss.numel() - loss.diagonal().numel()
        if n_terms == 0:
            raise ValueError(
                "DINOLoss requires at least two views in total (the diagonal matching the same view index "
                f"is excluded), but got {len(teacher_out)} teacher view(s) and {len(student_out)} student "
                "view(s), which leaves no cross-view terms to compute the loss from."
            )
        loss = loss.sum() / (n_terms * teacher.shape[1])
        self.update_center(teacher)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        """EMA update of the center with the (all-process) mean of ``teacher_out`` (views, batch, dim)."""
        batch_center = teacher_out.mean(dim=(0, 1), keepdim=True)
        if dist.world_size() > 1:
            torch_dist.all_reduce(batch_center)
            batch_center = batch_center / dist.world_size()
        self.center.data = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)
