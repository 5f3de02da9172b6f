"""Large-batch optimizers for recipes: LARS (SimCLR, BYOL) and LAMB, and the no-decay parameter groups they use.

:class:`LARS` computes what ``lightly.utils.lars.LARS`` computes (bit for bit on its per-parameter path), without
its two host-device synchronisations per parameter (``if p_norm != 0 and g_norm != 0`` reads both norms back to
the host): the condition is applied on the device with ``torch.where``. ``clip_lr=True`` (off by default, as in
Lightly) caps the layer-wise rate at the global one, as solo-learn's LARS does (its CIFAR recipes use it). ``foreach=True`` does the same update
with multi-tensor kernels (a few kernels per step instead of ~10 per parameter; equal to rounding).
LAMB is timm's (:class:`timm.optim.Lamb`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.optim import Optimizer

__all__ = ["LARS", "LARGE_BATCH_OPTIMIZERS", "build_large_batch_optimizer", "norm_bias_groups"]

LARGE_BATCH_OPTIMIZERS = ("lars", "lamb")


class LARS(Optimizer):
    """SGD with layer-wise adaptive rate scaling ("Large batch training of convolutional networks", You et al.
    2017), as Lightly implements it (``lightly.utils.lars.LARS``; same arguments and defaults).

    For a parameter ``p`` with gradient ``g`` in a group with ``weight_decay != 0``, when ``|p| != 0`` and
    ``|g| != 0``: ``g <- (g + wd * p) * trust_coefficient * |p| / (|g| + wd * |p| + eps)``; then SGD momentum
    (PyTorch's convention) and ``p <- p - lr * buf``. Groups with ``weight_decay == 0`` (biases and norms, see
    :func:`norm_bias_groups`) get plain SGD: no decay and no scaling, as in SimCLR and BYOL.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum: momentum factor.
        dampening: dampening for momentum.
        weight_decay: L2 penalty; 0 also switches the LARS scaling off for the group.
        nesterov: Nesterov momentum.
        trust_coefficient: the LARS trust coefficient (``eta``).
        eps: added to the denominator.
        clip_lr: use ``min(trust_ratio / lr, 1)`` as the scale (solo-learn's ``clip_lr``): a layer's step is at most
            the plain SGD step.
        foreach: multi-tensor implementation (fewer kernel launches on a GPU; equal to rounding, not bit for bit).
    """

    def __init__(self, params: Any, lr: float, momentum: float = 0, dampening: float = 0, weight_decay: float = 0,
                 nesterov: bool = False, trust_coefficient: float = 0.001, eps: float = 1e-8,
                 clip_lr: bool = False, foreach: bool = False) -> None:  # fmt: skip
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        trust_coefficient=trust_coefficient, eps=eps, clip_lr=clip_lr, foreach=foreach)  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One optimisation step (``closure`` re-evaluates the loss, as in :class:`torch.optim.SGD`)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group.get("foreach"):
                grads = self._scaled_grads_foreach(params, group)
            else:
                grads = [self._scaled_grad(p, group) for p in params]
            self._momentum_step(params, grads, group)
        return loss

    @staticmethod
    def _scaled_grad(p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        wd = group["weight_decay"]
        g = p.grad
        if wd == 0:
            return g
        p_norm = torch.norm(p)
        g_norm = torch.norm(g)
        # the same operations, in the same order, as lightly.utils.lars.LARS; the norm test stays on the device
        lars_lr = p_norm / (g_norm + p_norm * wd + group["eps"])
        lars_lr *= group["trust_coefficient"]
        if group.get("clip_lr"):
            lars_lr = torch.clamp(lars_lr / group["lr"], max=1.0)
        return torch.where((p_norm != 0) & (g_norm != 0), g.add(p, alpha=wd) * lars_lr, g)

    @staticmethod
    def _scaled_grads_foreach(params: list[torch.Tensor], group: dict[str, Any]) -> list[torch.Tensor]:
        wd = group["weight_decay"]
        grads = [p.grad for p in params]
        if wd == 0:
            return grads
        p_norm = torch.stack(torch._foreach_norm(params))
        g_norm = torch.stack(torch._foreach_norm(grads))
        lars_lr = p_norm / (g_norm + p_norm * wd + group["eps"]) * group["trust_coefficient"]
        if group.get("clip_lr"):
            lars_lr = torch.clamp(lars_lr / group["lr"], max=1.0)
        ok = (p_norm != 0) & (g_norm != 0)
        # (g + wd * p) * s == g * s + p * (wd * s) where the norms are non-zero, else g unchanged
        scale_g = torch.where(ok, lars_lr, torch.ones_like(lars_lr)).unbind()
        scale_p = torch.where(ok, lars_lr * wd, torch.zeros_like(lars_lr)).unbind()
        out = torch._foreach_mul(grads, list(scale_g))
        torch._foreach_add_(out, torch._foreach_mul(params, list(scale_p)))
        return list(out)

    def _momentum_step(self, params: list[torch.Tensor], grads: list[torch.Tensor], group: dict[str, Any]) -> None:
        momentum, dampening = group["momentum"], group["dampening"]
        if momentum != 0:
            steps = []
            for p, d_p in zip(params, grads):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
                steps.append(d_p.add(buf, alpha=momentum) if group["nesterov"] else buf)
            grads = steps
        if group.get("foreach"):
            torch._foreach_add_(params, grads, alpha=-group["lr"])
        else:
            for p, d_p in zip(params, grads):
                p.add_(d_p, alpha=-group["lr"])


def norm_bias_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: weights of convolutions and linear layers with ``weight_decay``; biases and
    normalisation parameters (every parameter with at most one dimension) without, which for LARS also means
    without layer-wise scaling (SimCLR, BYOL; Lightly's ``get_weight_decay_parameters`` splits ResNets the same way).
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_large_batch_optimizer(options: dict[str, Any], params: Iterable[Any], lr: float, weight_decay: float,
                                foreach: bool = False) -> Optimizer:  # fmt: skip
    """LARS or LAMB from a recipe's ``optimizer`` section (``name``: ``lars`` or ``lamb``).

    LARS reads ``momentum`` (0.9), ``trust_coefficient`` (0.001, Lightly's default), ``eps`` (1e-8) and
    ``clip_lr`` (false); LAMB
    reads ``betas`` ((0.9, 0.999)) and ``eps`` (1e-6, timm's default).
    """
    name = options["name"]
    if name == "lars":
        return LARS(params, lr=lr, momentum=float(options.get("momentum", 0.9)), weight_decay=weight_decay,
                    trust_coefficient=float(options.get("trust_coefficient", 0.001)),
                    eps=float(options.get("eps", 1e-8)), clip_lr=bool(options.get("clip_lr", False)),
                    foreach=foreach)  # fmt: skip
    if name == "lamb":
        from timm.optim import Lamb

        return Lamb(params, lr=lr, betas=tuple(options.get("betas", (0.9, 0.999))), weight_decay=weight_decay,
                    eps=float(options.get("eps", 1e-6)), foreach=foreach or None)  # fmt: skip
    raise ValueError(f"unknown large-batch optimizer {name!r}; use one of {LARGE_BATCH_OPTIMIZERS}")
