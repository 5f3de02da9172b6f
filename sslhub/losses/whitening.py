"""W-MSE: whitening of embedding sub-batches (:class:`Whitening2d`) and the MSE between whitened views."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["WMSELoss", "Whitening2d", "norm_mse_loss"]


def norm_mse_loss(x0: Tensor, x1: Tensor) -> Tensor:
    """MSE between L2-normalised rows: ``2 - 2 * mean cosine similarity``."""
    return torch.sub(input=2, other=(F.normalize(x0) * F.normalize(x1)).sum(dim=-1).mean(), alpha=2)


class Whitening2d(nn.Module):
    """Whitens a batch ``(N, num_features)`` with the inverse Cholesky factor of its covariance (W-MSE).

    Buffers ``running_mean`` ``(1, C, 1, 1)`` and ``running_variance`` ``(C, C)`` (Lightly's names and shapes)
    are used in eval mode when ``track_running_stats``.

    Args:
        num_features: Embedding size.
        momentum: Momentum of the running statistics.
        track_running_stats: Keep running statistics for evaluation.
        eps: Shrinks the covariance towards the identity: ``(1 - eps) * cov + eps * I``.
    """

    running_mean: Tensor
    running_variance: Tensor

    def __init__(self, num_features: int, momentum: float = 0.01, track_running_stats: bool = True, eps: float = 0):
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        self.eps = eps
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros([1, num_features, 1, 1]))
            self.register_buffer("running_variance", torch.eye(num_features))

    def forward(self, x: Tensor) -> Tensor:
        """Whitened ``x`` (N, C)."""
        use_running = not self.training and self.track_running_stats
        mean = self.running_mean.view(1, -1) if use_running else x.mean(0, keepdim=True)
        xn = x - mean
        cov = xn.T @ xn / (xn.shape[0] - 1)
        eye = torch.eye(self.num_features, dtype=cov.dtype, device=cov.device)
        shrunk = (1 - self.eps) * (self.running_variance if use_running else cov) + self.eps * eye
        inv_sqrt = torch.linalg.solve_triangular(torch.linalg.cholesky(shrunk), eye, upper=False)
        out = xn @ inv_sqrt.T
        if self.training and self.track_running_stats:
            m = self.momentum
            self.running_mean.copy_(m * mean.detach().view(1, -1, 1, 1) + (1 - m) * self.running_mean)
            self.running_variance.copy_(m * cov.detach() + (1 - m) * self.running_variance)
        return out


class WMSELoss(nn.Module):
    """W-MSE loss: whiten random sub-batches of ``w_size`` embeddings per view, then ``loss_fn`` between every
    pair of views, averaged over pairs and ``w_iter`` repetitions.

    Args:
        embedding_dim: Embedding size.
        momentum, eps, track_running_stats: Of the :class:`Whitening2d` layer.
        w_iter: Whitening repetitions per step.
        w_size: Sub-batch size for whitening (at least twice ``embedding_dim``).
        loss_fn: Loss between two whitened views.
        num_samples: Views per image; the input stacks them along the batch: ``(num_samples * B, D)``.
    """

    def __init__(
        self,
        embedding_dim: int = 128,
        momentum: float = 0.01,
        eps: float = 0.0,
        track_running_stats: bool = True,
        w_iter: int = 1,
        w_size: int = 256,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = norm_mse_loss,
        num_samples: int = 2,
    ):
        super().__init__()
        self.whitening = Whitening2d(num_features=embedding_dim, momentum=momentum, eps=eps,
                                     track_running_stats=track_running_stats)  # fmt: skip
        if embedding_dim * 2 > w_size:
            raise ValueError("w_size should be at least twice the size of embedding_dim to avoid instabiliy")
        self.w_iter = w_iter
        self.w_size = w_size
        self.loss_f = loss_fn
        self.num_samples = num_samples
        self.num_pairs = num_samples * (num_samples - 1) // 2

    def forward(self, input: Tensor) -> Tensor:
        """Loss for ``input`` of shape ``(num_samples * batch_size, dim)`` (view-major)."""
        if input.shape[0] % self.num_samples != 0:
            raise RuntimeError("input batch size must be divisible by num_samples")
        bs = input.shape[0] // self.num_samples
        if bs < self.w_size:
            raise ValueError("batch size must be greater than or equal to w_size")
        loss = torch.tensor(0.0, device=input.device, requires_grad=True)
        for _ in range(self.w_iter):
            z = torch.empty_like(input)
            for idx in torch.randperm(bs).view(-1, self.w_size):  # the same draws as Lightly's loss
                for i in range(self.num_samples):
                    z[idx + i * bs] = self.whitening(input[idx + i * bs])
            for i in range(self.num_samples - 1):
                for j in range(i + 1, self.num_samples):
                    loss = loss + self.loss_f(z[i * bs:(i + 1) * bs], z[j * bs:(j + 1) * bs])
        return loss / (self.w_iter * self.num_pairs)
