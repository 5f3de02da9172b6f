"""Streaming, sharded, resumable embedding of a whole dataset, split over ``torchrun`` ranks.

Memory stays flat in the number of images: each process holds one shard of vectors at a time (``shard_size`` x
``D`` floats) plus the compact input index. Shard ``i`` covers input items ``[i * shard_size, (i + 1) *
shard_size)`` and goes to rank ``i % world_size``; batches never cross a shard boundary, so every image meets the
same batch whatever the number of processes or restarts, and the files are bit-identical to a one-process,
uninterrupted run (same device type assumed).

Resuming: each finished shard is written atomically, then its sha256 is recorded in ``DIR/.progress/``. A rerun of
the same command keeps the shards whose file matches its record and redoes the others; rank 0 finally writes
``manifest.json`` with every shard's checksum and removes ``.progress``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sslhub._files import clean_stale_temps, sha256_file, write_json_atomic
from sslhub.checkpoints.io import save_safetensors
from sslhub.data import DatasetError, collate_skip_invalid
from sslhub.data.sources import ImageSource, open_source
from sslhub.evaluation import distributed as D
from sslhub.evaluation.features import default_num_workers, model_input_size, normalize_batch, resize_size_for
from sslhub.evaluation.shards import FORMAT, MANIFEST, PROGRESS_DIR, EmbeddingsError, read_manifest, shard_name

logger = logging.getLogger(__name__)

__all__ = ["ShardRun", "embed_to_shards", "iter_embeddings", "plan_batches", "prepare_source", "rank_shards"]

DEFAULT_SHARD_SIZE = 8192


@dataclass
class ShardRun:
    """What :func:`embed_to_shards` did (on this rank; totals are the whole run's)."""

    folder: Path
    num_embeddings: int
    dim: int
    skipped: int
    shards: int
    shards_done_here: int
    shards_kept: int


def rank_shards(num_shards: int, rank: int, world_size: int) -> list[int]:
    """The shards rank ``rank`` handles: every ``world_size``-th, from ``rank``."""
    return list(range(rank, num_shards, world_size))


def plan_batches(first: int, stop: int, batch_size: int) -> list[range]:
    """Index batches of items ``[first, stop)``, cut at ``stop`` (ranges: a plan for 10M images stays small)."""
    return [range(a, min(a + batch_size, stop)) for a in range(first, stop, batch_size)]


def prepare_source(source: Any, model: nn.Module, input_size: int, crop_pct: float | None,
                   classes: list[str] | None = None) -> ImageSource:  # fmt: skip
    """``source`` opened (:func:`~sslhub.data.sources.open_source`), decoding to the model's ``uint8`` crops."""
    from torchvision.transforms import v2

    src = open_source(source, classes=classes)
    return src.with_decoding(resize_size_for(model, input_size, crop_pct), v2.CenterCrop(input_size))


def _check_folder(out: Path, config: dict[str, Any], force: bool) -> bool:
    """Whether ``out`` needs to be wiped first; raises when it holds something this run must not touch."""
    if out.exists() and not out.is_dir():
        raise EmbeddingsError(f"{out} is a file; pass a folder (ending in /) for sharded output, or --out x.csv")
    manifest = read_manifest(out) if out.is_dir() else None
    if manifest is None:
        if out.is_dir() and any(p.name != PROGRESS_DIR and not p.name.startswith(".") for p in out.iterdir()):
            raise EmbeddingsError(
                f"{out} exists and is not an sslhub embedding folder; choose a new or empty folder"
            )
        return False
    if force:
        return True
    if manifest.get("complete"):
        raise EmbeddingsError(f"{out} already holds a finished embedding run; pass --force to replace it")
    differ = sorted(k for k in set(config) | set(manifest.get("config", {}))
                    if config.get(k) != manifest.get("config", {}).get(k))  # fmt: skip
    if differ:
        k = differ[0]
        raise EmbeddingsError(
            f"{out} holds an unfinished run with other settings ({k}: {manifest['config'].get(k)!r} there, "
            f"{config.get(k)!r} now); rerun it with the same settings to resume, or pass --force to start over"
        )
    return False


def _wipe(out: Path) -> None:
    for p in out.glob("shard-*.safetensors"):
        p.unlink()
    shutil.rmtree(out / PROGRESS_DIR, ignore_errors=True)
    (out / MANIFEST).unlink(missing_ok=True)


def _record_path(out: Path, index: int) -> Path:
    return out / PROGRESS_DIR / f"{shard_name(index)}.json"


def _finished(out: Path, index: int) -> dict[str, Any] | None:
    """The record of shard ``index`` if its file is there and matches the recorded checksum."""
    rec_path, shard = _record_path(out, index), out / shard_name(index)
    try:
        record = json.loads(rec_path.read_text())
    except (OSError, ValueError):
        return None
    if not shard.is_file() or sha256_file(shard) != record.get("sha256"):
        logger.warning("%s does not match its recorded checksum; embedding it again", shard)
        return None
    return record


@torch.inference_mode()
def embed_to_shards(
    model: nn.Module,
    source: str | os.PathLike | ImageSource,
    out: str | os.PathLike,
    *,
    input_size: int | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    crop_pct: float | None = None,
    num_workers: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    dtype: str = "float32",
    force: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> ShardRun:
    """Embed every image of ``source`` into a shard folder ``out``, resuming an unfinished run there.

    Under ``torchrun`` each process takes its share of the shards (see the module docstring) and rank 0 writes
    the manifest; started plainly, one process does all. Read the result with
    :func:`~sslhub.evaluation.load_embeddings`.

    Args:
        model: ``(N, 3, H, W) -> (N, D)`` feature extractor (raw outputs are stored, as ``lightly-embed`` does).
        source: image folder, file list, CSV manifest or WebDataset tars (see :func:`sslhub.data.sources.open_source`).
        out: the shard folder (created).
        input_size, crop_pct, batch_size, num_workers: as :func:`~sslhub.evaluation.extract_features`.
        device: default: this rank's GPU if any, else the CPU.
        shard_size: input images per shard.
        dtype: ``"float32"`` or ``"float16"`` vectors.
        force: replace a finished run (or another run's unfinished one) in ``out``.
        metadata: recorded in the manifest (e.g. the weights).

    Raises:
        EmbeddingsError: ``out`` holds something else, or a finished run without ``force``, or the model gave
            non-finite values.
        DatasetError: the input has no readable image.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be positive")
    rank, world_size = D.init_from_env()
    dev = D.rank_device(device)
    out = Path(out)
    size = model_input_size(model, input_size)
    src = prepare_source(source, model, size, crop_pct)
    n = len(src)
    num_shards = math.ceil(n / shard_size)
    config = {
        "input": src.description,
        "input_fingerprint": src.fingerprint(),
        "num_items": n,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "input_size": size,
        "resize_size": resize_size_for(model, size, crop_pct),
        "dtype": dtype,
        **{k: v for k, v in (metadata or {}).items()},
    }
    wipe = _check_folder(out, config, force)
    D.barrier()  # every rank has looked at the folder before rank 0 changes it
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if wipe:
            _wipe(out)
        (out / PROGRESS_DIR).mkdir(exist_ok=True)
        clean_stale_temps(out)
        if read_manifest(out) is None:
            write_json_atomic(out / MANIFEST, {"format": FORMAT, "version": 1, "complete": False, "config": config})
    D.barrier()

    mine = rank_shards(num_shards, rank, world_size)
    todo = [i for i in mine if _finished(out, i) is None]
    kept = len(mine) - len(todo)
    if kept:
        logger.info("rank %d: %d of its %d shards already finished and verified; resuming", rank, kept, len(mine))
    plan: list[tuple[int, range]] = []
    for i in todo:
        plan.extend((i, b) for b in plan_batches(i * shard_size, min((i + 1) * shard_size, n), batch_size))
    np_dtype = np.float16 if dtype == "float16" else np.float32
    vecs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    names: list[str] = []
    desc = "embed" if world_size == 1 else f"embed rank {rank}"
    batches = iter_embeddings(model, src, [b for _, b in plan], dev, num_workers, desc=desc)
    for step, ((shard, _), got) in enumerate(zip(plan, batches, strict=True)):
        if got is not None:
            y, targets, files = got
            if not bool(torch.isfinite(y).all()):
                raise EmbeddingsError(
                    f"the model gave non-finite embeddings (NaN or inf) for images of {shard_name(shard)} "
                    f"(first: {files[0]}); the checkpoint is broken or the input is out of range. Nothing "
                    "was written for this shard"
                )
            vecs.append(y)
            labels.append(targets)
            names.extend(files)
        if step + 1 == len(plan) or plan[step + 1][0] != shard:
            _write_shard(out, shard, shard_size, n, vecs, labels, names, np_dtype)
            vecs, labels, names = [], [], []

    D.barrier()
    result = None
    if rank == 0:
        result = _finish(out, config, num_shards, metadata)
    D.barrier()
    if rank != 0:
        m = read_manifest(out) or {}
        result = (int(m.get("num_embeddings", 0)), int(m.get("dim", 0)), int(m.get("skipped", 0)))
    assert result is not None
    return ShardRun(out, result[0], result[1], result[2], num_shards, len(todo), kept)


@torch.inference_mode()
def iter_embeddings(
    model: nn.Module,
    src: ImageSource,
    batches: Sequence[Sequence[int]],
    device: torch.device,
    num_workers: int | None = None,
    *,
    desc: str = "embed",
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]] | None]:
    """``(features (B, D) float32 CPU, labels, names)`` for each index batch of ``src`` in order; ``None`` for a
    batch whose images were all unreadable. ``src`` yields ``uint8`` crops (normalized here, on the device)."""
    if num_workers is None:  # the CPU cores are shared by the processes torchrun started on this machine
        per_rank = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        num_workers = min(default_num_workers(), max(0, per_rank - 1)) if len(batches) > 4 else 0
    loader = DataLoader(src, batch_sampler=batches, num_workers=num_workers, collate_fn=collate_skip_invalid,
                        pin_memory=device.type == "cuda")  # fmt: skip
    normalize = normalize_batch(model)
    model.to(device)
    was_training = model.training
    model.eval()
    bar = tqdm(total=sum(len(b) for b in batches), desc=desc, unit="img", leave=False)
    try:
        for batch_idx, batch in zip(batches, loader, strict=True):
            bar.update(len(batch_idx))
            if batch is None:
                yield None
                continue
            images, targets, files = batch
            y = model(normalize(images.to(device, non_blocking=True))).flatten(start_dim=1).float().cpu()
            yield y, torch.as_tensor(targets, dtype=torch.long), list(files)
    finally:
        bar.close()
        model.train(was_training)


def _write_shard(out: Path, index: int, shard_size: int, n: int, vecs: list[torch.Tensor],
                 labels: list[torch.Tensor], names: list[str], np_dtype: Any) -> None:  # fmt: skip
    items = min((index + 1) * shard_size, n) - index * shard_size
    emb = torch.cat(vecs) if vecs else torch.zeros((0, 0))
    emb = emb.to(torch.float16 if np_dtype == np.float16 else torch.float32)
    lab = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    path = out / shard_name(index)
    # One metadata key: safetensors writes its metadata map in hash order, and shards must be byte-reproducible.
    meta = {"filenames": json.dumps(names)}
    save_safetensors({"embeddings": emb.contiguous(), "labels": lab}, path, meta)
    record = {"rows": len(names), "skipped": items - len(names), "dim": int(emb.shape[1]) if len(names) else None,
              "sha256": sha256_file(path), "first_item": index * shard_size, "items": items}  # fmt: skip
    write_json_atomic(_record_path(out, index), record)
    logger.debug("wrote %s (%d rows)", path, len(names))


def _finish(out: Path, config: dict[str, Any], num_shards: int,
            metadata: Mapping[str, Any] | None) -> tuple[int, int, int]:  # fmt: skip
    shards, dims = [], set()
    for i in range(num_shards):
        rec_path = _record_path(out, i)
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            raise EmbeddingsError(f"shard {i} of {out} was not finished by any rank; run the command again") from None
        keys = ("rows", "skipped", "first_item", "items", "sha256")
        shards.append({"file": shard_name(i), **{k: rec[k] for k in keys}})
        if rec.get("dim"):
            dims.add(int(rec["dim"]))
    total = sum(s["rows"] for s in shards)
    skipped = sum(s["skipped"] for s in shards)
    if total == 0:
        raise DatasetError(f"no image of {config['input']} could be decoded ({skipped} skipped)")
    if len(dims) != 1:
        raise EmbeddingsError(f"the shards of {out} have different dimensions {sorted(dims)}; pass --force to redo")
    if skipped:
        logger.warning("skipped %d unreadable image(s) of %d", skipped, config["num_items"])
    manifest = {
        "format": FORMAT,
        "version": 1,
        "complete": True,
        "config": config,
        "num_embeddings": total,
        "dim": dims.pop(),
        "dtype": config["dtype"],
        "skipped": skipped,
        "shards": shards,
    }
    write_json_atomic(out / MANIFEST, manifest)
    shutil.rmtree(out / PROGRESS_DIR, ignore_errors=True)
    return total, manifest["dim"], skipped

