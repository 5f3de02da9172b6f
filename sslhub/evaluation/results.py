"""Evaluation results as plain JSON dicts (consumed by model cards), and shared metric helpers."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from sslhub.checkpoints.io import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["METRICS", "check_labels", "format_result", "make_result", "record_result", "run_dir_of", "topk_accuracy", "write_results"]

RUN_METRICS = "metrics.json"  # in a training run folder; ``sslhub publish RUN_DIR`` reads it

METRICS = ("knn_top1", "linear_top1", "finetune_top1")


def make_result(
    metric: str,
    value: float,
    *,
    dataset: str,
    split: str,
    protocol: Mapping[str, Any],
    weights: str | None,
) -> dict[str, Any]:
    """One result: ``{"metric", "value" (percent), "dataset", "split", "protocol", "weights"}``.

    Raises:
        ValueError: unknown metric, or a value that is not a finite percentage.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 100.0):
        raise ValueError(f"{metric} must be a percentage in [0, 100], got {value}")
    return {
        "metric": metric,
        "value": value,
        "dataset": dataset,
        "split": split,
        "protocol": dict(protocol),
        "weights": weights,
    }


_LABELS = {"knn_top1": "kNN top-1", "linear_top1": "linear top-1", "finetune_top1": "finetune top-1"}


def format_result(result: Mapping[str, Any]) -> str:
    """One line for a result: ``kNN top-1 23.50% on clothing10_demo/val (400 images, 10 classes; k=20, t=0.1,
    32 px)``, with ``[random init]`` for a baseline."""
    p = result.get("protocol") or {}
    where = f"{result.get('dataset')}/{result.get('split')}"
    data = ", ".join(x for x in (f"{p['num_val']} images" if "num_val" in p else "",
                                 f"{p['num_classes']} classes" if "num_classes" in p else "") if x)  # fmt: skip
    keys = [f"{k}={p[k]:g}" if isinstance(p[k], float) else f"{k}={p[k]}" for k in ("k", "t", "epochs", "lr")
            if p.get(k) is not None]  # fmt: skip
    if p.get("input_size"):
        keys.append(f"{p['input_size']} px")
    top5 = f" (top-5 {p['top5']:.2f}%)" if isinstance(p.get("top5"), (int, float)) else ""
    line = f"{_LABELS.get(result['metric'], result['metric'])} {result['value']:.2f}%{top5} on {where}"
    line += f" ({data}; {', '.join(keys)})" if data else f" ({', '.join(keys)})" if keys else ""
    if result.get("baseline"):
        line += f" [{str(result['baseline']).replace('_', ' ')}]"
    return line


def write_results(results: dict[str, Any] | Sequence[dict[str, Any]], dst: str | os.PathLike) -> Path:
    """Atomically write one result (or a list of them) as indented JSON; returns the path."""
    dst = Path(dst)
    try:  # strict JSON: NaN/Infinity are not JSON, and other readers (the Hub, jq, browsers) reject them
        text = json.dumps(results, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError:
        raise ValueError(f"{dst}: the result holds NaN or Infinity, which JSON cannot hold; nothing was written. "
                         "Check the model's weights (sslhub info) and the data") from None
    with atomic_path(dst) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return dst


def run_dir_of(weights: str | os.PathLike) -> Path | None:
    """The training run folder that holds ``weights`` (``RUN/model.safetensors``, ``RUN/checkpoints/last.ckpt``),
    recognised by its ``config.yaml``; None for any other file."""
    p = Path(weights)
    if not p.exists():
        return None
    p = p.resolve()
    for d in ([p] if p.is_dir() else []) + [p.parent, p.parent.parent]:
        if (d / "config.yaml").is_file() and ((d / "metrics.jsonl").is_file() or (d / "model.safetensors").is_file()):
            return d
    return None


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("metric", "dataset", "split", "baseline")
    pa, pb = a.get("protocol") or {}, b.get("protocol") or {}
    return all(a.get(k) == b.get(k) for k in keys) and all(pa.get(k) == pb.get(k) for k in ("k", "t", "input_size"))


def record_result(result: Mapping[str, Any], run_dir: str | os.PathLike) -> Path:
    """Add ``result`` to ``RUN_DIR/metrics.json`` (``{"metrics": [...]}``, the file ``sslhub publish`` reads),
    replacing an earlier result of the same metric, data and protocol. Written atomically; returns the path."""
    path = Path(run_dir) / RUN_METRICS
    entries: list[dict[str, Any]] = []
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = list(data.get("metrics", []) if isinstance(data, dict) else data)
        except (ValueError, TypeError, AttributeError) as e:  # damaged: keep it aside, never lose the new result
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(path, aside)
            logger.warning("%s cannot be read (%s); it was moved to %s and a new one holds this result", path,
                           str(e)[:200], aside)  # fmt: skip
            entries = []
    entries = [e for e in entries if not (isinstance(e, Mapping) and _same(e, result))] + [dict(result)]
    return write_results({"metrics": entries}, path)


def check_labels(labels: Tensor, what: str) -> None:
    """Raise a clear error when ``labels`` has unlabeled (-1) samples, which classification cannot use."""
    if len(labels) == 0:
        raise ValueError(f"the {what} set is empty")
    if bool((labels < 0).any()):
        raise ValueError(
            f"the {what} set has unlabeled images (images directly in the folder, not in a class subfolder); "
            "classification metrics need <folder>/<class>/<image> layout"
        )


def topk_accuracy(scores: Tensor, targets: Tensor, topk: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracies in percent from class scores/logits ``(N, C)`` and targets ``(N,)``."""
    kmax = min(max(topk), scores.shape[1])
    pred = scores.topk(kmax, dim=1).indices
    hit = pred == targets.to(pred.device).unsqueeze(1)
    n = len(targets)
    # Integer counts, so 26 of 100 reads 26.0 and not float32's 25.999999.
    return {k: 100.0 * int(hit[:, : min(k, kmax)].any(dim=1).sum()) / n for k in topk}
