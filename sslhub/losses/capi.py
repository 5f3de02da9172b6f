"""CAPI loss with Lightly's name, arguments and defaults (``lightly.loss.CAPILoss``) and its positionwise
Sinkhorn-Knopp normalisation.

- CAPI: Cluster and Predict Latent Patches for Improved Masked Image Modeling, 2025, https://arxiv.org/abs/2502.08769
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.losses import dist

__all__ = ["CAPILoss", "positionwise_sinkhorn_knopp", "sinkhorn_knopp"]


@torch.no_grad()
def positionwise_sinkhorn_knopp(logits: Tensor, iterations: int = 3, gather_distributed: bool = False,
                                epsilon: float = 1e-8) -> Tensor:  # fmt: skip
    """Soft cluster assignments of ``logits`` (batch, seq, clusters), balanced over the batch separately at each
    sequence position (CAPI's guard against positional collapse); each token's row sums to 1.

    With ``gather_distributed`` the batch sums (and the stabilising max) run over all processes.
    """
    world = dist.world_size() if gather_distributed else 1
    q = logits.transpose(0, 1)  # (seq, batch, clusters): normalise each position on its own
    shift = torch.amax(q, dim=1, keepdim=True)  # cancels in the normalisation; keeps exp finite
    if world > 1:
        torch_dist.all_reduce(shift, op=torch_dist.ReduceOp.MAX)
    q = torch.exp(q - shift)
    for _ in range(iterations):
        over_batch = q.sum(dim=1, keepdim=True)
        if world > 1:
            torch_dist.all_reduce(over_batch)
        q = q / (over_batch + epsilon)
        q = q / (q.sum(dim=2, keepdim=True) + epsilon)
    return q.transpose(0, 1)


sinkhorn_knopp = positionwise_sinkhorn_knopp  # Lightly's name (lightly.loss.capi_loss.sinkhorn_knopp)


class CAPILoss(nn.Module):
    """Cross-entropy between Sinkhorn-balanced teacher cluster assignments and student cluster logits.

    Passing the teacher logits as ``student_logits`` gives CAPI's online-clustering loss that trains the
    teacher head's prototypes.

    Args:
        teacher_temperature: Applied to the teacher logits before Sinkhorn-Knopp.
        student_temperature: Applied to the student logits.
        sinkhorn_iterations: Sinkhorn-Knopp iterations.
        gather_distributed: Balance over the batches of all processes.
    """

    def __init__(self, teacher_temperature: float = 0.06, student_temperature: float = 0.12, sinkhorn_iterations: int = 3,
                 gather_distributed: bool = False) -> None:  # fmt: skip
        super().__init__()
        dist.check_available(gather_distributed)
        self.teacher_temperature = teacher_temperature
        self.student_temperature = student_temperature
        self.sinkhorn_iterations = sinkhorn_iterations
        self.gather_distributed = gather_distributed

    def forward(self, teacher_logits: Tensor, student_logits: Tensor, teacher_index: Tensor | None = None) -> Tensor:
        """Mean cross-entropy over the predicted tokens.

        Args:
            teacher_logits: (batch, num_teacher_tokens, clusters); balanced over all of these tokens.
            student_logits: (batch, num_predicted, clusters).
            teacher_index: (batch, num_predicted) row-major positions of the predicted tokens among the teacher
                tokens; without it the two are assumed aligned.
        """
        targets = positionwise_sinkhorn_knopp(teacher_logits.detach() / self.teacher_temperature,
                                              self.sinkhorn_iterations, self.gather_distributed)  # fmt: skip
        if teacher_index is not None:
            targets = torch.gather(targets, 1, teacher_index.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))
        log_probs = F.log_softmax(student_logits / self.student_temperature, dim=-1)
        return -torch.sum(targets * log_probs, dim=-1).mean()
