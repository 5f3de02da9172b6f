"""The trainer's opt-in fast path: a recipe's ``fast:`` section.

Every key defaults to off, and with all of them off the trainer runs exactly the operations it runs without the
section (float16 autocast with GradScaler on CUDA, float32 on the CPU), so CPU results stay bit for bit the same.

``fast:`` keys:

* ``channels_last`` (bool): model and input batches in NHWC memory format (faster convolutions on tensor cores).
  CUDA only: skipped on a CPU, where it brings nothing and where torch 2.14's backward of a strided 1x1
  convolution with fewer than 8 input channels in NHWC crashes the process (narrow ResNets' shortcuts).
* ``bf16`` (bool): bfloat16 autocast instead of float16; no GradScaler (bfloat16 has float32's range), which also
  removes GradScaler's per-step host synchronisation. Falls back to float16 on a GPU without bfloat16.
* ``compile`` (bool or backend name): ``torch.compile`` of the model step (forward and loss; the backward runs
  through the compiled graph). ``true`` uses inductor on CUDA and is skipped on a CPU (inductor compiles take
  minutes there); a backend name (``inductor``, ``aot_eager``, ``eager``) is used on any device. Where dynamo
  cannot compile the model, the step falls back to eager mode with a warning.
* ``compile_mode`` (str, optional): ``torch.compile``'s ``mode`` (e.g. ``max-autotune-no-cudagraphs``).
* ``fused_optimizer`` (bool): ``fused=True`` for SGD/AdamW on CUDA, multi-tensor (``foreach``) kernels elsewhere
  and for LARS/LAMB.

Steps that a device cannot take are skipped with a log line (:attr:`FastPath.notes`).

The recipe's top-level ``amp`` key (``--amp/--no-amp``) switches mixed precision as a whole: unset means float16
autocast on CUDA and none on the CPU; ``false`` turns autocast (and GradScaler) off everywhere; ``true`` on the CPU
means bfloat16 autocast (the CPU has no float16 kernels worth using).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["FAST_KEYS", "FastPath"]

# key -> accepted types, for the recipe schema
FAST_KEYS: dict[str, tuple[type, ...]] = {
    "channels_last": (bool,),
    "bf16": (bool,),
    "compile": (bool, str),
    "compile_mode": (str, type(None)),
    "fused_optimizer": (bool,),
}
_FUSED = ("sgd", "adamw")  # torch optimizers with fused CUDA kernels that the trainer builds


@dataclass(frozen=True)
class FastPath:
    """The resolved fast path for one run on one device (build it with :meth:`from_recipe`)."""

    device: torch.device
    channels_last: bool = False
    bf16: bool = False
    amp: bool = True
    compile_backend: str | Callable[..., Any] | None = None
    compile_mode: str | None = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], device: torch.device) -> "FastPath":
        """Read ``recipe["fast"]`` for ``device``; log what is skipped there and why.

        Raises:
            ValueError: ``fast`` is not a mapping, or has an unknown key or a value of the wrong type.
        """
        spec = recipe.get("fast") or {}
        if not isinstance(spec, dict):
            raise ValueError(f"recipe field 'fast' must be a mapping of {sorted(FAST_KEYS)}, not {spec!r}")
        for key, value in spec.items():
            if key not in FAST_KEYS:
                raise ValueError(f"unknown recipe field fast.{key}; known: {', '.join(sorted(FAST_KEYS))}")
            if not isinstance(value, FAST_KEYS[key]):
                names = "/".join("null" if t is type(None) else t.__name__ for t in FAST_KEYS[key])
                raise ValueError(f"recipe field fast.{key}={value!r}: expected {names}")
        notes: list[str] = []
        channels_last = spec.get("channels_last", False)
        if channels_last and device.type != "cuda":
            notes.append(f"fast.channels_last: skipped on {device.type} (CUDA only)")
            channels_last = False
        amp = recipe.get("amp")
        bf16 = spec.get("bf16", False) or (amp is True and device.type != "cuda")
        if bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            notes.append("fast.bf16: this GPU has no bfloat16; using float16 autocast with GradScaler")
            bf16 = False
        backend: str | None = None
        compile_ = spec.get("compile", False)
        if compile_ is True:
            if device.type == "cuda":
                backend = "inductor"
            else:
                notes.append(f"fast.compile: skipped on {device.type} (inductor compiles take minutes there; "
                             "set fast.compile=aot_eager to run the compiled step)")  # fmt: skip
        elif isinstance(compile_, str) and compile_:
            backend = compile_
        if backend is not None and not torch._dynamo.is_dynamo_supported():
            notes.append("fast.compile: torch.compile is not supported on this Python/platform; skipped")
            backend = None
        opt_kwargs: dict[str, Any] = {}
        if spec.get("fused_optimizer"):
            name = recipe.get("optimizer", {}).get("name")
            if name in _FUSED and device.type == "cuda":
                opt_kwargs = {"fused": True}
            else:
                opt_kwargs = {"foreach": True}
                if name in _FUSED:
                    notes.append(f"fast.fused_optimizer: fused {name} needs CUDA; using foreach kernels on {device.type}")
        for n in notes:
            logger.info(n)
        return cls(device, channels_last=bool(channels_last), bf16=bool(bf16), amp=amp is not False,
                   compile_backend=backend, compile_mode=spec.get("compile_mode"), optimizer_kwargs=opt_kwargs,
                   notes=tuple(notes))  # fmt: skip

    @property
    def grad_scaler_enabled(self) -> bool:
        """GradScaler only for float16 autocast on CUDA (the trainer's default)."""
        return self.device.type == "cuda" and self.amp and not self.bf16

    def summary(self) -> dict[str, Any]:
        """What the run actually uses (for logs and ``config.yaml``)."""
        backend = self.compile_backend if self.compile_backend is None or isinstance(self.compile_backend, str) else "custom"
        return {"channels_last": self.channels_last, "autocast": self.autocast_dtype, "compile": backend,
                "compile_mode": self.compile_mode, "optimizer_kwargs": dict(self.optimizer_kwargs)}  # fmt: skip

    @property
    def autocast_dtype(self) -> str | None:
        if not self.amp:
            return None
        if self.bf16:
            return "bfloat16"
        return "float16" if self.device.type == "cuda" else None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model in the fast path's memory format (in place; call before DDP wraps it)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def inputs(self, views: list[Tensor]) -> list[Tensor]:
        """Image batches in the model's memory format (the list itself when nothing changes)."""
        if not self.channels_last:
            return views
        return [v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for v in views]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of the model step."""
        if not self.amp:
            return contextlib.nullcontext()
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda")

    def step_fn(self, module: nn.Module) -> Callable[..., Tensor]:
        """``module`` itself, or a compiled step that falls back to ``module`` if dynamo cannot compile it."""
        if self.compile_backend is None:
            return module
        return _GuardedCompile(module, self.compile_backend, self.compile_mode)


class _GuardedCompile:
    """``torch.compile(module)``; on a dynamo/backend failure, one warning and eager mode from then on.

    Only compiler errors are caught (``torch._dynamo.exc.TorchDynamoException``): errors of the model itself
    (shapes, out of memory) surface as they would in eager mode.
    """

    def __init__(self, module: nn.Module, backend: str | Callable[..., Any], mode: str | None) -> None:
        self.module = module
        kwargs: dict[str, Any] = {"backend": backend}
        if mode:
            kwargs["mode"] = mode
        self.compiled: Callable[..., Tensor] | None = torch.compile(module, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as e:
                logger.warning("fast.compile: torch.compile failed (%s: %s); running the model step eagerly",
                               type(e).__name__, str(e).splitlines()[0] if str(e) else "")  # fmt: skip
                self.compiled = None
        return self.module(*args, **kwargs)
