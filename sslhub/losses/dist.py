"""Distributed helpers for losses.

Every helper is a no-op (single-process semantics) when ``torch.distributed`` is unavailable or not
initialised, so losses with ``gather_distributed=True`` also run unchanged on one device.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as torch_dist
from torch import Tensor


def is_initialized() -> bool:
    """Returns True when a default process group exists."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    """Returns the rank of this process (0 when not distributed)."""
    return torch_dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Returns the number of processes (1 when not distributed)."""
    return torch_dist.get_world_size() if is_initialized() else 1


class _Gather(torch.autograd.Function):
    """all_gather whose backward sums, over processes, the gradients for this process's slice.

    Same semantics as ``torch.distributed.nn.functional.all_gather`` (deprecated in recent torch) and
    Lightly's ``GatherLayer``; uses only all_gather/all_reduce, so it works with gloo and nccl.
    """

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        out = [torch.empty_like(tensor) for _ in range(torch_dist.get_world_size())]
        torch_dist.all_gather(out, tensor.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Tensor:  # type: ignore[override]
        stacked = torch.stack(grads)
        torch_dist.all_reduce(stacked)
        return stacked[torch_dist.get_rank()]


class _AllReduceSum(torch.autograd.Function):
    """all_reduce (sum) whose backward is again an all_reduce (sum) of the gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:  # type: ignore[override]
        out = tensor.clone()
        torch_dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone()
        torch_dist.all_reduce(grad)
        return grad


def gather(tensor: Tensor) -> tuple[Tensor, ...]:
    """All-gathers ``tensor`` from every process, keeping gradients; ``(tensor,)`` when not distributed."""
    if world_size() == 1:
        return (tensor,)
    return _Gather.apply(tensor)  # type: ignore[no-any-return]


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Averages ``tensor`` over all processes with gradient support (identity when not distributed).

    The backward pass sums the gradients of all processes (as ``torch.distributed.nn.all_reduce`` that
    Lightly's Barlow Twins loss uses).
    """
    ws = world_size()
    if ws == 1:
        return tensor
    return _AllReduceSum.apply(tensor / ws)  # type: ignore[no-any-return]


@torch.no_grad()
def concat_all_gather(tensor: Tensor) -> Tensor:
    """All-gathers ``tensor`` without gradients and concatenates along dim 0."""
    if world_size() == 1:
        return tensor
    out = [torch.empty_like(tensor) for _ in range(world_size())]
    torch_dist.all_gather(out, tensor.contiguous())
    return torch.cat(out, dim=0)


def eye_rank(n: int, device: torch.device | None = None) -> Tensor:
    """Boolean (n, n * world_size) matrix whose diagonal block for this rank is the identity.

    Marks which columns of gathered similarities are the positives of this process's rows; equal to
    ``torch.eye(n)`` when not distributed.
    """
    rows = torch.arange(n, device=device)
    mask = torch.zeros((n, n * world_size()), dtype=torch.bool, device=device)
    mask[rows, rows + rank() * n] = True
    return mask


def check_available(flag: bool, name: str = "gather_distributed") -> None:
    """Raises ValueError when ``flag`` is set but this torch build lacks torch.distributed."""
    if flag and not torch_dist.is_available():
        raise ValueError(
            f"{name} is True but torch.distributed is not available. Set {name}=False or install a "
            "torch build with distributed support."
        )
