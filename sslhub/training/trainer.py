"""The training loop: plain PyTorch, one CPU, one GPU, or many under ``torchrun`` (DDP).

Images are decoded once per item to ``uint8`` tensors by the DataLoader and augmented as a batch by the
recipe's transform (``sslhub.transforms`` accept uint8 batches, with per-sample randomness): on the GPU, or,
on a CPU device with DataLoader workers, in the workers as each batch is collated, so that augmentation (where
the time goes on CPU) overlaps the model step. State for ``--resume`` is written atomically after every epoch;
data order and worker seeds depend only on (seed, epoch) and the RNG state travels in the checkpoint, so an
interrupted run resumed from ``last.ckpt`` ends with the same weights as an uninterrupted one (CPU,
deterministic mode).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import math
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from sslhub._version import __version__
from sslhub.backbones import create_backbone
from sslhub.checkpoints.io import atomic_path, load_torch_file, save_safetensors, save_torch
from sslhub.checkpoints.remap import non_finite
from sslhub.data import AugmentingCollate, ImageFolderDataset, collate_skip_invalid
from sslhub.errors import SslhubError
from sslhub.methods import METHODS, SSLMethod, build_method
from sslhub.training.fast import FastPath
from sslhub.training.loggers import resolve_loggers, start_loggers
from sslhub.training.optim import LARGE_BATCH_OPTIMIZERS, build_large_batch_optimizer, norm_bias_groups
from sslhub.transforms.recipe import build_recipe_transform
from sslhub.training.preempt import Preempted, SkipSampler, StopSignals, check_training_state
from sslhub.training.run_dir import (RunDirError, nothing_to_resume, prepare_run_dir, recipe_for_run, remove_run_files,
                                     restore_metrics, resumed_max_steps, run_lock)
from sslhub.utils.scheduler import cosine_schedule

logger = logging.getLogger(__name__)

_build_transform = build_recipe_transform  # the old private name (now in sslhub.transforms.recipe)

__all__ = ["Preempted", "TrainingError", "train"]


class TrainingError(SslhubError, RuntimeError):
    """Training stopped (non-finite loss, bad data); the message says where and what was kept."""


def _dist() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; initialises the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _build_model(recipe: dict[str, Any], gather: bool) -> SSLMethod:
    bb = dict(recipe["backbone"])
    arch = bb.pop("arch")
    kwargs = dict(recipe.get("model") or {})
    worker = recipe.get("worker")
    if worker and arch.startswith("resnet-") and recipe["method"] == "simclr":
        # The Lightly Worker's SimCLR: num_ftrs conv in the backbone, projection head without BatchNorm.
        bb["num_ftrs"] = worker["num_ftrs"]
        kwargs.update(hidden_dim=worker["num_ftrs"], batch_norm=False)
    backbone = create_backbone(arch, **{k: v for k, v in bb.items() if v is not None})
    if gather and "gather_distributed" in inspect.signature(METHODS[recipe["method"]]).parameters:
        kwargs["gather_distributed"] = True
    return build_method(recipe["method"], backbone, backbone.num_features, **kwargs)


def _lr_lambda(recipe: dict[str, Any], steps_per_epoch: int, epochs: int):
    warm = int(recipe.get("schedule", {}).get("warmup_epochs", 0) * steps_per_epoch)
    total = max(1, epochs * steps_per_epoch)
    floor = float(recipe.get("schedule", {}).get("min_lr_ratio", 0.0))
    warm = min(warm, total // 2)

    def fn(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        p = (step - warm) / max(1, total - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    return fn


class _LossLog:
    """An epoch's losses without a host-device sync per step.

    On a GPU, reading a loss (``.item()``, ``if not torch.isfinite(loss)``) makes the host wait until the device
    has drained its queue, so the host cannot queue the next kernels meanwhile. The running sum and the first
    non-finite step stay on the device and are read every ``every`` steps (every step on the CPU, where reading
    is free). A non-finite loss on the GPU is seen up to ``every`` steps late; GradScaler skips those steps.
    """

    def __init__(self, device: torch.device, every: int = 25) -> None:
        self.every = every if device.type == "cuda" else 1
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.bad = torch.full((), -1, dtype=torch.long, device=device)  # first step with a non-finite loss
        self.count = 0
        self.last = float("nan")  # the running mean as last read back (for the progress bar)

    def add(self, loss: torch.Tensor, step: int) -> int | None:
        """Record the loss of ``step``; returns the first non-finite step once it has been read back."""
        value = loss.detach().double()
        self.total += value
        self.bad = torch.where((self.bad < 0) & ~torch.isfinite(value), step, self.bad)
        self.count += 1
        if self.count % self.every == 0:
            return self.read()
        return None

    def read(self) -> int | None:
        """Sync now: update ``last`` and return the first non-finite step, if any."""
        bad = int(self.bad)
        self.last = float(self.total) / max(1, self.count)
        return bad if bad >= 0 else None

    @property
    def mean(self) -> float:
        return float(self.total) / max(1, self.count)


def _nonfinite(step: int, epoch: int, ckpt_path: Path) -> TrainingError:
    return TrainingError(
        f"the loss is not finite at epoch {epoch + 1}, step {step}; training stopped. "
        f"The last good state is {ckpt_path if ckpt_path.exists() else 'not written yet'}; "
        "try a lower optimizer.lr (--set optimizer.lr=...) or a longer warmup"
    )


def _check_weights(model: nn.Module, epoch: int, ckpt_path: Path) -> None:
    """Raise if a weight or buffer is not finite (one host-device sync for all of them)."""
    bad = non_finite(model.state_dict())
    if not bad:
        return
    raise TrainingError(
        f"after epoch {epoch + 1} {len(bad)} weight tensor(s) are not finite (first: {bad[0]}); training stopped and "
        f"nothing of this epoch was saved. The last good state is "
        f"{ckpt_path if ckpt_path.exists() else 'not written yet'}; try a lower optimizer.lr (--set "
        "optimizer.lr=...), a longer warmup or optimizer.clip_grad"
    )


def _weight_decay_schedule(recipe: dict[str, Any], total_steps: int):
    """``optimizer.weight_decay_end`` turns on a cosine weight-decay schedule (DINO: 0.04 -> 0.4) for the groups
    that decay at all; without it, ``None`` (constant weight decay)."""
    o = recipe["optimizer"]
    if o.get("weight_decay_end") is None:
        return None
    start, end = float(o.get("weight_decay", 0.0)), float(o["weight_decay_end"])

    def fn(step: int) -> float:
        return cosine_schedule(min(step, total_steps - 1), total_steps, start, end)

    return fn


def _optimizer(recipe: dict[str, Any], model: nn.Module, batch_size: int,
               fast_kwargs: dict[str, Any] | None = None) -> torch.optim.Optimizer:  # fmt: skip
    o = recipe["optimizer"]
    lr = float(o["lr"])
    ref = float(o.get("reference_batch_size", 256))
    scaling = o.get("lr_scaling", "linear")
    lr *= {"linear": batch_size / ref, "sqrt": math.sqrt(batch_size / ref), "none": 1.0}[scaling]
    wd = float(o.get("weight_decay", 0.0))
    if hasattr(model, "param_groups"):  # ViT methods: no decay on biases, norms, tokens, position embeddings
        params: Any = model.param_groups(wd)
    elif o.get("exclude_norm_bias", o["name"] in LARGE_BATCH_OPTIMIZERS):  # SimCLR/BYOL's LARS: no decay, no scaling
        params = norm_bias_groups(model, wd)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    kw = fast_kwargs or {}  # fast.fused_optimizer: fused=True (CUDA) or foreach=True
    if o["name"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(o.get("momentum", 0.9)), weight_decay=wd, **kw)
    if o["name"] == "adamw":
        betas = tuple(o.get("betas", (0.9, 0.999)))
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas, **kw)
    if o["name"] in LARGE_BATCH_OPTIMIZERS:
        return build_large_batch_optimizer(o, params, lr, wd, foreach=bool(kw))
    raise ValueError(f"unknown optimizer {o['name']!r}; use sgd, adamw, lars or lamb")


def _monitor(backbone: nn.Module, train_ds: ImageFolderDataset, val_ds: ImageFolderDataset | None,
             device: torch.device, knn: dict[str, Any], input_size: int, num_workers: int | None = None,
             progress: bool = False) -> dict[str, float]:  # fmt: skip
    """kNN top-1 on the validation folder (when labelled) and the collapse monitor.

    The kNN is ``sslhub eval knn``'s own code path (:func:`~sslhub.evaluation.knn.knn_eval_with_features`: same
    preprocessing, same features as ``load_pretrained`` gives for the saved weights), so the monitor's last value
    and ``sslhub eval knn RUN/model.safetensors`` with the same k, t and input size are the same number.
    """
    from sslhub.backbones import feature_view
    from sslhub.data import DatasetError
    from sslhub.evaluation.features import extract_features
    from sslhub.evaluation.knn import knn_eval_with_features

    view = feature_view(backbone)
    kw: dict[str, Any] = dict(input_size=input_size, batch_size=256, device=device, num_workers=num_workers,
                              progress=progress)  # fmt: skip
    out: dict[str, float] = {}
    try:
        if val_ds is not None and len(train_ds.classes) > 1 and min(train_ds.targets) >= 0:
            k = min(int(knn.get("k", 200)), len(train_ds))  # a bank smaller than k: all of it votes (no warning)
            result, feats = knn_eval_with_features(view, train_ds, val_ds, k=k, t=float(knn.get("t", 0.1)),
                                                   desc="monitor: ", **kw)  # fmt: skip
            out["knn_top1"] = float(result["value"])
        else:
            feats = extract_features(view, train_ds, desc="monitor: train features", **kw)
    except DatasetError as e:
        raise TrainingError(f"{e}, so no embedding was computed; check the images (see the warnings above)") from None
    f_train = feats.features
    if not torch.isfinite(f_train).all():
        raise TrainingError("the backbone's embeddings are not finite (NaN or inf)")
    z = nn.functional.normalize(f_train, dim=1)
    # std of l2-normalised embeddings: ~1/sqrt(D) when spread out, -> 0 when the representation collapses
    out["embedding_std"] = float(z.std(dim=0).mean())
    out["embedding_std_ratio"] = out["embedding_std"] * math.sqrt(z.shape[1])
    return {k: out[k] for k in ("embedding_std", "embedding_std_ratio", "knn_top1") if k in out}


def _stop_requested(stop: StopSignals, world: int, dev: torch.device) -> bool:
    """Whether a stop signal arrived (on any rank: all ranks stop at the same step, or DDP would hang)."""
    if world == 1:
        return stop.signum is not None
    import torch.distributed as dist

    flag = torch.tensor([stop.signum or 0], device=dev)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and stop.signum is None:
        stop.signum = int(flag.item())
    return bool(flag.item())


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _metadata(recipe: dict[str, Any], model: SSLMethod, epochs_done: int) -> dict[str, Any]:
    bb = model.eval_backbone
    cfg = bb.pretrained_cfg
    return {
        "format": "sslhub",
        "sslhub_version": __version__,
        "layout": "sslhub",
        "family": cfg["family"],
        "arch": cfg["arch"],
        "width": f"{cfg['width']:g}" if cfg.get("width") else None,
        "num_ftrs": str(cfg["num_ftrs"]) if cfg.get("num_ftrs") else None,
        "backbone_prefix": model.eval_prefix,
        "method": recipe["method"],
        "recipe": recipe["name"],
        "epochs": str(epochs_done),
        "input_size": str(recipe["input_size"]),
        "img_size": str(cfg["img_size"]) if cfg.get("img_size") else None,
        "timm_kwargs": json.dumps(cfg.get("timm_kwargs") or {}),
    }


def _worker_checkpoint(model: SSLMethod) -> dict[str, Any] | None:
    """``{"state_dict": model.state_dict(prefix="model.")}`` as the Lightly Worker writes it (SimCLR only)."""
    keys = {k for k in model.state_dict() if not k.startswith("criterion")}
    if type(model).__name__ != "SimCLR" or "backbone.7.weight" not in keys:
        return None
    return {"state_dict": {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k in keys}}


_RUN = threading.local()  # the ExitStack of the train() call in progress in this thread


def _holds_run(fn):
    """Give ``fn`` an ExitStack (``_RUN.stack``) for what it holds while it runs (the run lock, signal handlers);
    released however it ends."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = getattr(_RUN, "stack", None)
        with contextlib.ExitStack() as stack:
            _RUN.stack = stack
            try:
                return fn(*args, **kwargs)
            finally:
                _RUN.stack = outer

    return wrapper


@_holds_run
def train(
    recipe: str | dict[str, Any],
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    val: str | os.PathLike | None = None,
    epochs: int | None = None,
    overrides: Iterable[str] = (),
    resume: bool = False,
    device: str | None = None,
    num_workers: int | None = 0,
    deterministic: bool = False,
    max_steps_per_epoch: int | None = None,
    progress: bool = True,
    augment_on: str = "auto",
    force: bool = False,
    loggers: Iterable[str] | None = None,
) -> Path:
    """Train a recipe on a folder of images and write a run directory.

    Args:
        recipe: a recipe name (``sslhub.list_recipes()``) or a resolved recipe dict.
        data: image folder (class subfolders optional; labels only used for monitoring).
        out: run directory: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.ckpt``,
            ``model.safetensors`` and, for SimCLR on ResNetGenerator, a Worker-compatible ``checkpoint.ckpt``.
        val: labelled image folder for per-epoch kNN accuracy.
        epochs: overrides the recipe's epochs.
        overrides: ``key=value`` strings applied to the recipe.
        resume: continue the run in ``out``: its recipe from ``out/config.yaml`` (``overrides`` and ``epochs`` may
            only change what :data:`sslhub.training.run_dir.RESUME_COMPATIBLE` allows), its state from
            ``out/checkpoints/last.ckpt``; without one, :class:`RunDirError` (a run is never started over).
        device: ``cpu``/``cuda``; default cuda when available.
        num_workers: DataLoader worker processes (default 0); None chooses from the machine as the command
            line does (:mod:`sslhub.utils.machine`: cores - 1, and the torch threads the workers leave).
        deterministic: ``torch.use_deterministic_algorithms(True)`` (reproducible resume on CPU).
        max_steps_per_epoch: cap steps per epoch (smoke tests); a resumed run keeps the cap it was started with.
        augment_on: where the batched augmentation runs: ``"workers"`` (in the DataLoader workers, as each
            batch is collated, in parallel with the model step; needs ``num_workers > 0``), ``"device"`` (in the
            training process on ``device``, e.g. on the GPU), or ``"auto"``: workers on a CPU device when there
            are workers, else the device.
        force: replace the run that ``out`` holds: once the arguments are checked, the files sslhub wrote there
            are deleted (no other file). Without ``force`` or ``resume``, a folder that holds a run is refused.
        loggers: experiment loggers, ``tensorboard``/``mlflow``/``wandb`` (:mod:`sslhub.training.loggers`);
            default TensorBoard when it is installed, ``["none"]`` for none.

    Returns:
        The run directory.

    Raises:
        TrainingError: the run cannot give a sound result (non-finite loss, weights or embeddings; no optimizer
            step because no batch of readable images); the last good checkpoint is kept.
        RunDirError: ``out`` holds a run (without ``resume``/``force``), another process trains into it, or a
            resume conflicts with its config or has no state to continue from.
        Preempted: SIGTERM/SIGINT stopped the run after saving a resumable state (``--resume`` continues it).
    """
    t_start = time.perf_counter()  # metrics' elapsed_s: wall clock of the whole run, set-up and monitor included
    out = Path(out)
    if epochs is not None and int(epochs) < 1:
        raise ValueError(f"epochs={epochs}: train for at least 1 epoch")
    rank, world, local_rank = _dist()
    logger_names = resolve_loggers(loggers)  # an unknown or missing logger fails before anything is touched
    prepare_run_dir(out, resume=resume, force=force, delete=False)  # checks only: --force deletes once all passed
    if resume and not (out / "checkpoints" / "last.ckpt").is_file():
        raise nothing_to_resume(out)
    r = recipe_for_run(recipe, out, overrides=overrides, epochs=epochs, resume=resume)
    max_steps_per_epoch = resumed_max_steps(out, max_steps_per_epoch) if resume else max_steps_per_epoch
    warmup = float((r.get("schedule") or {}).get("warmup_epochs", 0) or 0)
    if warmup * 2 > int(r["epochs"]):
        # _lr_lambda clips the warmup to half the run, so a short run still reaches the peak lr
        logger.warning("schedule.warmup_epochs=%g is more than half of epochs=%d: the warmup is clipped to %g epochs "
                       "(set --set schedule.warmup_epochs=N to choose)", warmup, int(r["epochs"]), int(r["epochs"]) / 2)  # fmt: skip
    try:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as e:
        raise ValueError(f"--device {device!r}: {e}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here; use --device cpu")
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    ckpt_path = out / "checkpoints" / "last.ckpt"
    fast = FastPath.from_recipe(r, dev)  # the recipe's opt-in `fast:` section; all off: the default path exactly
    from sslhub.utils.machine import loader_settings, torch_threads

    num_workers = loader_settings(dev, num_workers=num_workers, epochs=2).num_workers  # None: from the machine
    # measured on an H100 box: 16 main-process threads next to 12 loader workers made the small CPU ops of
    # batched augmentation ~100x slower (4 threads: 2.5x faster); on a busy 2-core machine 2 threads were 5.5x
    # slower than 1. torch_threads has the rule.
    torch.set_num_threads(min(torch.get_num_threads(), torch_threads(num_workers, dev)))
    seed = int(r.get("seed", 1))
    torch.manual_seed(seed + rank)
    random.seed(seed + rank)
    if deterministic:
        torch.use_deterministic_algorithms(True)

    if augment_on not in ("auto", "workers", "device"):
        raise ValueError(f"augment_on={augment_on!r}: use 'auto', 'workers' or 'device'")
    if augment_on == "workers" and num_workers == 0:
        raise ValueError("augment_on='workers' needs DataLoader workers (num_workers > 0); use 'device' or 'auto'")
    # On a CPU device, augmenting in the main process serialises it with the model step; in the workers it
    # overlaps. On a GPU the batch is augmented there unless asked otherwise (fast, and CPU cores stay free).
    in_workers = augment_on == "workers" or (augment_on == "auto" and num_workers > 0 and dev.type == "cpu")
    transform = build_recipe_transform(r)
    size = int(r["input_size"])
    load_size = int(r.get("load_size", size))
    ds = ImageFolderDataset(data, decode_size=load_size)
    batch_size = int(r["batch_size"])
    if len(ds) < batch_size * world:
        batch_size = max(2, len(ds) // world)
        logger.warning("%s has %d images, fewer than the batch size; using batch_size=%d", data, len(ds), batch_size)
    from sslhub.folders import split_folders
    from sslhub.training.progress import RunClock, batch_fit_warning, format_duration

    if split_folders(data) and rank == 0:  # the command line refuses this; the library says it
        logger.warning("%s holds the split folders %s, read here as classes: training sees every split (the "
                       "held-out images too). Pass the training split as data and another as val", data,
                       ", ".join(split_folders(data)))  # fmt: skip
    fit = batch_fit_warning(len(ds), batch_size * world, int(r["epochs"]))
    if fit and rank == 0:
        logger.warning("%s: %s", data, fit)
    gen = torch.Generator()  # data order: reseeded every epoch
    sampler: Any
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = RandomSampler(ds, generator=gen)
    sampler = SkipSampler(sampler)  # a run resumed mid-epoch skips the batches it did before it was stopped
    worker_gen = torch.Generator()  # the workers' seeds, apart from the order: persistent workers draw none later
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, generator=worker_gen,
                        drop_last=True, num_workers=num_workers,
                        collate_fn=AugmentingCollate(transform) if in_workers else collate_skip_invalid,
                        pin_memory=dev.type == "cuda",  # pinned: the copy to the GPU does not block the host
                        # Workers that only decode are deterministic, so they can live across epochs (no restart of
                        # every worker each epoch). Augmenting workers are recreated per epoch: their RNG is seeded
                        # from (seed, epoch) at creation, which keeps a resumed run identical.
                        persistent_workers=num_workers > 0 and not in_workers)  # fmt: skip
    # the monitor evaluates as `sslhub eval knn` does (its own preprocessing of these folders, see _monitor)
    val_ds = ImageFolderDataset(val, classes=ds.classes) if val is not None else None
    if rank == 0:  # recipe, device and data are checked: take the folder, then (--force) clear the old run
        _RUN.stack.enter_context(run_lock(out))
        prepare_run_dir(out, resume=resume, force=force, delete=False)  # again: another run may have ended meanwhile
        if force:
            remove_run_files(out)

    model = fast.prepare_model(_build_model(r, gather=world > 1).to(dev))
    if world > 1 and r.get("sync_batchnorm"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    step_fn = fast.step_fn(train_model)  # train_model, or its compiled step
    opt = _optimizer(r, model, batch_size * world, fast.optimizer_kwargs)
    steps_per_epoch = len(loader) if max_steps_per_epoch is None else min(len(loader), max_steps_per_epoch)
    total_steps = steps_per_epoch * int(r["epochs"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(r, steps_per_epoch, int(r["epochs"])))
    wd_at = _weight_decay_schedule(r, total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=fast.grad_scaler_enabled)

    start_epoch, step, elapsed_before = 0, 0, 0.0
    rows: list[dict[str, Any]] = []
    metrics_file = out / "metrics.jsonl"
    mid: dict[str, Any] = {}  # where a preempted run stopped inside its epoch (empty: at an epoch's end)
    if resume:
        state = check_training_state(load_torch_file(ckpt_path), ckpt_path)
        if int(state["epoch"]) > int(r["epochs"]):
            raise ValueError(f"--epochs {r['epochs']}: the run in {out} has done {state['epoch']} epochs already; "
                             "pass at least that many")
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise RunDirError(f"{ckpt_path} does not fit the run's config.yaml ({str(e).splitlines()[0][:300]}); it is "
                              "not this run's training state. Restore it, or start over with --force") from None
        start_epoch, step = int(state["epoch"]), int(state["global_step"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        mid = state.get("mid_epoch") or {}
        if rank == 0:  # rows a killed run wrote after its last checkpoint go: they are computed again
            rows = restore_metrics(metrics_file, state.get("metrics"), start_epoch)
        logger.info("resumed %s at epoch %d (step %d%s)", ckpt_path, start_epoch + (1 if mid else 0), step,
                    f", batch {mid['batch']} of the epoch" if mid else "")  # fmt: skip
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump({"recipe": r, "seed": seed, "world_size": world, "data": str(data),
                                           "val": str(val) if val else None, "sslhub_version": __version__,
                                           "augment_on": "workers" if in_workers else "device",
                                           "max_steps_per_epoch": max_steps_per_epoch},
                                          sort_keys=False))  # fmt: skip
        bb = r.get("backbone") or {}
        logger.info("%s: %s %s%s, %d px, batch %d, %d epochs of %d steps on %d images; resolved recipe in %s "
                    "(-v prints it)", r["name"], r["method"], bb.get("arch"),
                    f" width {bb['width']:g}" if isinstance(bb.get("width"), (int, float)) else "", size, batch_size,
                    int(r["epochs"]), steps_per_epoch, len(ds), out / "config.yaml")  # fmt: skip
        logger.debug("resolved recipe:\n%s", yaml.safe_dump(r, sort_keys=False).rstrip())
    log = start_loggers(logger_names, out, r, data, resume_step=step if resume and ckpt_path.exists() else None,
                        rank=rank)  # fmt: skip
    from tqdm.auto import tqdm

    baseline: dict[str, float] = dict(mid.get("baseline") or {})
    if rank == 0 and start_epoch == 0 and not mid and val_ds is not None and r.get("monitor_every", 1) and r.get("monitor_random_init", True):
        # the kNN of the untrained network: what training has to beat (colour statistics alone score well above
        # chance on small data); recorded in the first row as knn_top1_random_init. Forked RNG: the training
        # stream stays as it is without this measurement.
        with torch.random.fork_rng(devices=[]):
            init = _monitor(model.eval_backbone, ds, val_ds, dev, r.get("knn", {}), size, None, progress)
        if "knn_top1" in init:
            baseline["knn_top1_random_init"] = init["knn_top1"]
            logger.info("random init: kNN top-1 %.2f%%", init["knn_top1"])
    stop = _RUN.stack.enter_context(StopSignals())  # SIGTERM/SIGINT: save where we are, then exit

    def preempt(epoch: int, batch: int, epoch_state: dict[str, Any] | None) -> Preempted:
        where = f"epoch {epoch + 1}, batch {batch} of {steps_per_epoch}" if epoch_state else f"the end of epoch {epoch}"
        if rank == 0 and epoch_state is not None:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict(), "rng": _rng_state(), "epoch": epoch, "global_step": step,
                     "recipe": r["name"], "metrics": rows, "elapsed_s": elapsed_before + time.perf_counter() - t_start,
                     "mid_epoch": {"batch": batch, **epoch_state, "baseline": baseline}}  # fmt: skip
            save_torch(state, ckpt_path)
        return Preempted(f"stopped by {stop.name} at {where} (step {step}); the state is saved in {ckpt_path}. "
                         f"Continue with the same command and --resume", stop.signum or 0)  # fmt: skip

    clock = RunClock(total_steps, step)
    for epoch in range(start_epoch, int(r["epochs"])):
        if world > 1:
            sampler.set_epoch(epoch)
        gen.manual_seed(seed * 1000 + epoch)  # data order depends on (seed, epoch) only
        worker_gen.manual_seed(seed * 1000 + epoch + 1)  # so do the seeds of workers created this epoch
        model.train()
        t0, seen, losses, first_step = time.perf_counter(), 0, _LossLog(dev), step
        skip = int(mid.get("batch", 0)) if epoch == start_epoch else 0
        if skip:  # resumed mid-epoch: the batches done before the stop, and the epoch's running figures
            sampler.skip = skip * batch_size
            seen, first_step = int(mid["seen"]), int(mid["first_step"])
            losses.total.fill_(float(mid["loss_total"]))
            losses.count = int(mid["loss_count"])
        bar = tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{r['epochs']}", disable=not progress or rank != 0, leave=False)
        for i, batch in enumerate(loader, start=skip):
            if i >= steps_per_epoch:
                break
            if batch is None:
                continue
            clock.started()
            if in_workers:
                views = [v.to(dev, non_blocking=True) for v in batch[0]]
            else:
                images = batch[0].to(dev, non_blocking=True)
                with torch.no_grad():
                    views = [v.to(dev) for v in transform(images)]
            views = fast.inputs(views)
            with fast.autocast():
                loss = step_fn(views, (step, total_steps, epoch))
            bad = losses.add(loss, step)
            if bad is not None:
                raise _nonfinite(bad, epoch, ckpt_path)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            model.before_optimizer_step(epoch)
            if wd_at is not None:  # a function of the step only, so a resumed run continues it exactly
                wd = wd_at(step)
                for g in opt.param_groups:
                    if g["weight_decay"] > 0:  # groups without decay (norms, biases, tokens) stay at 0
                        g["weight_decay"] = wd
            if r["optimizer"].get("clip_grad"):
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), float(r["optimizer"]["clip_grad"]))
            scaler.step(opt)
            scaler.update()
            sched.step()
            model.after_step(step, total_steps)
            step += 1
            seen += batch[1].shape[0] * world
            if losses.count % losses.every == 0:  # values were just read back: no extra sync
                bar.set_postfix(loss=f"{losses.last:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}",
                                img_s=f"{seen / (time.perf_counter() - t0):.0f}",
                                run_eta=format_duration(clock.eta(step)))  # the whole run, not the epoch  # fmt: skip
            bar.update(1)
            if _stop_requested(stop, world, dev) and i + 1 < steps_per_epoch:
                bad = losses.read()
                if bad is not None:
                    raise _nonfinite(bad, epoch, ckpt_path)
                bar.close()
                raise preempt(epoch, i + 1, {"seen": seen, "first_step": first_step, "loss_total": float(losses.total),
                                             "loss_count": losses.count})  # fmt: skip
        bad = losses.read()
        if bad is not None:
            raise _nonfinite(bad, epoch, ckpt_path)
        bar.close()
        if step == first_step:
            raise TrainingError(
                f"epoch {epoch + 1} made no optimizer step: no batch of {batch_size} readable images came out of "
                f"{data} ({ds.skipped} unreadable image file(s) found so far in this process, see the warnings above). "
                "Fix or remove the broken images, or lower batch_size"
            )
        _check_weights(model, epoch, ckpt_path)
        elapsed = time.perf_counter() - t0
        if rank == 0:
            row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "loss": losses.mean,
                                   "lr": sched.get_last_lr()[0], "images_per_s": seen / elapsed, "time_s": elapsed}  # fmt: skip
            if wd_at is not None:
                row["weight_decay"] = max(g["weight_decay"] for g in opt.param_groups)
            every = int(r.get("monitor_every", 1) or 0)  # 0 switches the per-epoch kNN/std monitor off
            if every and ((epoch + 1) % every == 0 or epoch + 1 == int(r["epochs"])):
                try:
                    row.update(_monitor(model.eval_backbone, ds, val_ds, dev, r.get("knn", {}), size, None,
                                        progress))  # fmt: skip
                except TrainingError as e:
                    raise TrainingError(f"epoch {epoch + 1}: {e}; training stopped. The last good state is "
                                        f"{ckpt_path if ckpt_path.exists() else 'not written yet'}") from None
            if epoch == start_epoch:
                row.update(baseline)
            row["elapsed_s"] = elapsed_before + time.perf_counter() - t_start
            ratio = row.get("embedding_std_ratio")
            if ratio is not None and not math.isfinite(ratio):
                raise TrainingError(f"epoch {epoch + 1}: the embedding std ratio is {ratio}; the embeddings are "
                                    f"broken. The last good state is {ckpt_path if ckpt_path.exists() else 'not written yet'}")
            if ratio is not None and ratio < 0.02:
                logger.warning("epoch %d: embedding std ratio %.3f is near 0: the representation may be collapsing",
                               epoch + 1, row["embedding_std_ratio"])  # fmt: skip
            logger.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
            clock.epoch_done(epoch + 1, int(r["epochs"]), row["images_per_s"], step)
            rows.append(row)
            # The rows travel in the checkpoint, so a resume restores exactly the rows of the epochs it has.
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict(), "rng": _rng_state(), "epoch": epoch + 1, "global_step": step,
                     "recipe": r["name"], "metrics": rows, "elapsed_s": row["elapsed_s"]}  # fmt: skip
            save_torch(state, ckpt_path)
            with open(metrics_file, "a") as f:
                f.write(json.dumps(row) + "\n")
            log.log_metrics(row, step)
        if _stop_requested(stop, world, dev) and epoch + 1 < int(r["epochs"]):
            raise preempt(epoch + 1, 0, None)  # the state of this epoch's end is saved already
    if rank == 0:
        sd = {k: v for k, v in model.state_dict().items() if not k.startswith("criterion.")}
        save_safetensors(sd, out / "model.safetensors", _metadata(r, model, int(r["epochs"])))
        worker = _worker_checkpoint(model)
        if worker is not None:
            save_torch(worker, out / "checkpoint.ckpt")
        if metrics_file.exists():
            from sslhub.plots import write_curves

            write_curves(metrics_file, out / "curves.png")
            log.log_image("curves", out / "curves.png", step)
        log.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return out
