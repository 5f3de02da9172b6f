"""What a training run folder holds for others to read: its checkpoint file and its measured metrics.

Used by ``sslhub publish`` (cards, ``config.json``) and anything else that reports a run: ``metrics.json`` (written
by ``sslhub eval`` on the run's weights, or given by hand) and the training monitor's ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

from sslhub.errors import SslhubError

logger = logging.getLogger(__name__)

__all__ = ["METRICS_NAME", "PROTOCOLS", "PROTOCOL_SHORT", "RunResultsError", "find_checkpoint", "load_metrics",
           "run_dir_metrics", "validate_metrics"]

METRICS_NAME = "metrics.json"
PROTOCOLS = {
    "knn": "kNN classification (frozen features)",
    "linear": "Linear probe (frozen features)",
    "finetune": "Fine-tuning",
}
PROTOCOL_SHORT = {"knn": "kNN", "linear": "linear probe", "finetune": "fine-tuning"}
# Run folders: the file sslhub picks when given a directory, in order of preference.
_RUN_DIR_CANDIDATES = (
    "model.safetensors",
    "backbone.safetensors",
    "checkpoints/last.ckpt",
    "last.ckpt",
    "checkpoint.ckpt",
    "artifacts/checkpoint.ckpt",
)
_CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt")


class RunResultsError(SslhubError, ValueError):
    """A run folder without a usable checkpoint, or metrics that cannot be read; the message says what to do."""


def find_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint file to publish from a run folder.

    Preference: ``model.safetensors``, ``backbone.safetensors``, ``checkpoints/last.ckpt``, ``last.ckpt``,
    ``checkpoint.ckpt``, ``artifacts/checkpoint.ckpt``; otherwise the only checkpoint file in the folder or its
    ``checkpoints/`` subfolder.
    """
    run_dir = Path(run_dir)
    for name in _RUN_DIR_CANDIDATES:
        if (run_dir / name).is_file():
            return run_dir / name
    found = sorted(
        p
        for d in (run_dir, run_dir / "checkpoints")
        if d.is_dir()
        for p in d.iterdir()
        if p.is_file() and p.suffix in _CHECKPOINT_SUFFIXES
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise RunResultsError(
            f"{run_dir}: no checkpoint found (looked for {', '.join(_RUN_DIR_CANDIDATES)} and *.safetensors/"
            "*.ckpt/*.pth in the folder and its checkpoints/); pass the checkpoint file instead of the folder"
        )
    raise RunResultsError(
        f"{run_dir}: several checkpoints ({', '.join(str(p.relative_to(run_dir)) for p in found[:8])}); "
        "pass the one to publish instead of the folder"
    )


def load_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read measured metrics: a JSON list of entries, or ``{"metrics": [...]}``.

    Each entry: ``protocol`` (``knn``, ``linear`` or ``finetune``), ``dataset`` (id, e.g. ``cifar10``),
    ``value`` (number), and optionally ``dataset_name`` (pretty name), ``split``, ``metric`` (default
    ``accuracy``), ``name`` (e.g. ``"kNN top-1"``), ``source`` (who measured it, e.g. ``"sslhub"``),
    ``source_url``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunResultsError(f"{path}: cannot read metrics JSON ({e})") from None
    if isinstance(data, dict) and "metrics" not in data and "metric" in data:
        data = [data]  # one result, as `sslhub eval ... --json` writes it
    entries = data.get("metrics") if isinstance(data, dict) else data
    return validate_metrics(entries, str(path))


def run_dir_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """What a training run folder measured: ``metrics.json`` (written by ``sslhub eval`` on the run's weights)
    plus the last kNN of the training monitor (``metrics.jsonl``), with its random-init baseline if measured."""
    run_dir = Path(run_dir)
    out = load_metrics(run_dir / METRICS_NAME) if (run_dir / METRICS_NAME).is_file() else []
    out += _monitor_metrics(run_dir)
    return out


def _monitor_metrics(run_dir: Path) -> list[dict[str, Any]]:
    import yaml

    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        return []
    rows = []
    for n, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:  # a line cut by a killed run (or an edit): the others still count
            logger.warning("%s: line %d is not JSON (cut?); it is skipped", log, n)
            continue
        if isinstance(row, dict):
            rows.append(row)
    knn_rows = [r for r in rows if isinstance(r.get("knn_top1"), (int, float)) and math.isfinite(r["knn_top1"])]
    if not knn_rows:
        return []
    last = knn_rows[-1]
    cfg: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    recipe = cfg.get("recipe") or {}
    val = Path(str(cfg.get("val"))) if cfg.get("val") else None
    dataset, split = (val.resolve().parent.name, val.resolve().name) if val else ("unknown", None)
    knn = recipe.get("knn") or {}
    protocol = {"k": knn.get("k", 200), "t": knn.get("t", 0.1), "input_size": recipe.get("input_size"),
                "epoch": last.get("epoch")}  # fmt: skip
    details = ", ".join(f"{k}={v}" for k, v in protocol.items() if v is not None)
    entry = {"protocol": "knn", "dataset": dataset, "split": split, "value": float(last["knn_top1"]),
             "metric": "accuracy", "name": f"kNN top-1 (training monitor: {details})", "source": "sslhub train"}  # fmt: skip
    out = [entry]
    init = next((r["knn_top1_random_init"] for r in rows if isinstance(r.get("knn_top1_random_init"), (int, float))), None)
    if init is not None:
        out.append({**entry, "value": float(init), "baseline": "random_init"})
    return out


def _from_eval_result(e: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the result dicts of :mod:`sslhub.evaluation` (``metric: knn_top1``, ``protocol: {k, t, ...}``)."""
    metric = e.get("metric")
    if isinstance(e.get("protocol"), Mapping) and isinstance(metric, str) and metric.endswith("_top1"):
        proto = metric[: -len("_top1")]
        shown = ("k", "t", "input_size", "epochs", "lr", "layer_decay")  # the protocol, not the bookkeeping
        details = ", ".join(f"{k}={e['protocol'][k]}" for k in shown if isinstance(e["protocol"].get(k), (int, float, str)))
        out = {"protocol": proto, "dataset": e.get("dataset"), "value": e.get("value"), "split": e.get("split"),
               "metric": "accuracy", "name": f"{PROTOCOL_SHORT.get(proto, proto)} top-1 ({details})" if details else None,
               "source": "sslhub"}  # fmt: skip
        if e.get("baseline"):
            out["baseline"] = e["baseline"]
        return out
    return e


def validate_metrics(entries: Any, where: str) -> list[dict[str, Any]]:
    """Checked metric entries (see :func:`load_metrics`); ``where`` names their origin in error messages."""
    if not isinstance(entries, list):
        raise RunResultsError(f"{where}: metrics must be a list of entries (or {{'metrics': [...]}})")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise RunResultsError(f"{where}: metrics[{i}] is not an object")
        e = _from_eval_result(e)
        missing = [k for k in ("protocol", "dataset", "value") if k not in e]
        if missing:
            raise RunResultsError(f"{where}: metrics[{i}] lacks {', '.join(missing)} (needs protocol, dataset, value)")
        if e["protocol"] not in PROTOCOLS:
            raise RunResultsError(f"{where}: metrics[{i}].protocol={e['protocol']!r}; use one of {', '.join(PROTOCOLS)}")
        if isinstance(e["value"], bool) or not isinstance(e["value"], (int, float)) or not math.isfinite(e["value"]):
            raise RunResultsError(f"{where}: metrics[{i}].value={e['value']!r} is not a finite number (JSON has no "
                                  "NaN/Infinity, and a model card must not show one)")
        out.append({k: v for k, v in dict(e).items() if v is not None})
    return out
