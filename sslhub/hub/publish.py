"""Publishing a backbone to the Hugging Face Hub: ``model.safetensors`` + ``config.json`` + ``README.md`` in one commit.

* ``model.safetensors`` holds the backbone only, in its native key layout (timm keys for timm models; torchvision
  ResNets, whose keys are timm's ``resnetXX`` keys; ResNetGenerator keys as sslhub writes them), with the sslhub
  header that :func:`sslhub.load_pretrained` reads (``backbone_prefix=""``), so it loads with no flags.
* ``config.json`` is what ``timm.create_model("hf-hub:org/name", pretrained=True)`` reads (``architecture``,
  ``num_classes: 0``, ``num_features``, ``model_args``, ``pretrained_cfg`` restricted to timm's ``PretrainedCfg``
  fields), plus a top-level ``sslhub`` block (architecture spec, method, hashes, metrics).
* ``README.md`` is a ``huggingface_hub`` ``ModelCard`` (``library_name: sslhub``, ``pipeline_tag:
  image-feature-extraction``, ``model-index`` from measured metrics). Its sha256 is recorded in
  ``config.json``; a README whose hash no longer matches (edited by someone, or not written by sslhub) is never
  replaced unless asked to (``overwrite_readme``) and can be left alone (``keep_readme``).

The upload uses ``HfApi.create_repo`` and one ``HfApi.create_commit`` whose ``parent_commit`` is the commit the
README check looked at, so a concurrent edit makes the commit fail instead of being overwritten. The token comes
from ``huggingface_hub`` (``HF_TOKEN`` or ``hf auth login``); sslhub only checks that there is one and never
passes, writes or logs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from sslhub._files import staging_dir
from sslhub._version import __version__
from sslhub.hub.hf import CONFIG_NAME, WEIGHTS_NAME, HfHubError

logger = logging.getLogger(__name__)

__all__ = [
    "README_NAME",
    "PublishError",
    "PublishResult",
    "build_config",
    "find_checkpoint",
    "load_metrics",
    "run_dir_metrics",
    "publish",
    "readme_is_ours",
    "render_card",
    "stage_files",
]

README_NAME = "README.md"
METRICS_NAME = "metrics.json"
CONFIG_FORMAT_VERSION = 1
# Families whose published state dict a plain timm model of the same name loads (torchvision ResNet keys are
# timm's resnetXX keys minus ``fc``).
TIMM_COMPATIBLE_FAMILIES = ("timm", "torchvision_resnet")

_PROTOCOLS = {
    "knn": "kNN classification (frozen features)",
    "linear": "Linear probe (frozen features)",
    "finetune": "Fine-tuning",
}
_SHORT = {"knn": "kNN", "linear": "linear probe", "finetune": "fine-tuning"}
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


class PublishError(HfHubError):
    """Publishing cannot proceed (README conflict, missing token, bad metrics...). The message says what to do."""


@dataclass
class PublishResult:
    """What :func:`publish` did."""

    repo_id: str
    files: list[str]
    """Names of the files written (dry run) or committed: ``model.safetensors``, ``config.json``, ``README.md``."""
    readme: str
    """``"written"``, or ``"kept"`` (an existing README was left as it is)."""
    out_dir: Path | None = None
    """The ``dry_run`` folder; None for an upload."""
    commit_oid: str | None = None
    commit_url: str | None = None
    changed: bool = True
    """False when the repo already held exactly these files (no commit was made)."""
    config: dict[str, Any] = field(default_factory=dict)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        raise PublishError(
            f"{run_dir}: no checkpoint found (looked for {', '.join(_RUN_DIR_CANDIDATES)} and *.safetensors/"
            "*.ckpt/*.pth in the folder and its checkpoints/); pass the checkpoint file instead of the folder"
        )
    raise PublishError(
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
        raise PublishError(f"{path}: cannot read metrics JSON ({e})") from None
    if isinstance(data, dict) and "metrics" not in data and "metric" in data:
        data = [data]  # one result, as `sslhub eval ... --json` writes it
    entries = data.get("metrics") if isinstance(data, dict) else data
    return _validate_metrics(entries, str(path))


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
               "metric": "accuracy", "name": f"{_SHORT.get(proto, proto)} top-1 ({details})" if details else None,
               "source": "sslhub"}  # fmt: skip
        if e.get("baseline"):
            out["baseline"] = e["baseline"]
        return out
    return e


def _validate_metrics(entries: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(entries, list):
        raise PublishError(f"{where}: metrics must be a list of entries (or {{'metrics': [...]}})")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise PublishError(f"{where}: metrics[{i}] is not an object")
        e = _from_eval_result(e)
        missing = [k for k in ("protocol", "dataset", "value") if k not in e]
        if missing:
            raise PublishError(f"{where}: metrics[{i}] lacks {', '.join(missing)} (needs protocol, dataset, value)")
        if e["protocol"] not in _PROTOCOLS:
            raise PublishError(f"{where}: metrics[{i}].protocol={e['protocol']!r}; use one of {', '.join(_PROTOCOLS)}")
        if isinstance(e["value"], bool) or not isinstance(e["value"], (int, float)) or not math.isfinite(e["value"]):
            raise PublishError(f"{where}: metrics[{i}].value={e['value']!r} is not a finite number (JSON has no "
                               "NaN/Infinity, and a model card must not show one)")
        out.append({k: v for k, v in dict(e).items() if v is not None})
    return out


def _split_baselines(metrics: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(results, random-init baselines): baselines are shown next to the result they belong to, not as results."""
    return [m for m in metrics if not m.get("baseline")], [m for m in metrics if m.get("baseline")]


def _baseline_for(m: Mapping[str, Any], baselines: Sequence[Mapping[str, Any]]) -> str:
    for b in baselines:
        if (b["protocol"], b["dataset"], b.get("split"), b.get("name")) == (m["protocol"], m["dataset"], m.get("split"), m.get("name")):
            return f"{b['value']:.2f}"
    for b in baselines:  # same protocol and data, another setting
        if (b["protocol"], b["dataset"], b.get("split")) == (m["protocol"], m["dataset"], m.get("split")):
            return f"{b['value']:.2f} ({b.get('name') or b['protocol']})"
    return "-"


def _eval_results(metrics: Sequence[Mapping[str, Any]]) -> list[Any]:
    from huggingface_hub import EvalResult

    results = []
    for m in metrics:
        results.append(
            EvalResult(
                # model-index groups metrics by task and dataset, so the protocol is part of each metric.
                task_type="image-classification",
                task_name="Image classification",
                dataset_type=str(m["dataset"]),
                dataset_name=str(m.get("dataset_name") or m["dataset"]),
                dataset_split=m.get("split"),
                metric_type=str(m.get("metric", "accuracy")),
                metric_name=str(m.get("name") or f"{_SHORT[m['protocol']]} {m.get('metric', 'accuracy')}"),
                metric_config=m["protocol"],
                metric_value=m["value"],
                # The Hub's schema wants a name only together with a URL; the card's table shows the name anyway.
                source_name=m.get("source") if m.get("source_url") else None,
                source_url=m.get("source_url"),
            )
        )
    return results


_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A {% if method %}**{{ method }}** {% endif %}self-supervised backbone ({{ arch_desc }}), published with
sslhub. `model.safetensors` holds the backbone only (no projection head, no classifier): it maps images
`(N, 3, H, W)` to `{{ num_features }}`-dimensional features.

## Usage

```python
import sslhub

model = sslhub.load_pretrained("hf-hub:{{ repo_id }}")  # eval mode
features = model(images)  # (N, {{ num_features }})
```
{% if timm_compatible %}
The weights are in timm's layout, so timm alone loads them too:

```python
import timm

model = timm.create_model("hf-hub:{{ repo_id }}", pretrained=True)  # num_classes=0: features only
```
{% endif %}
## Details

| | |
|---|---|
| Method | {{ method or "not recorded" }} |
| Architecture | {{ arch_desc }} |
| Feature dimension | {{ num_features }} |
| Input | {{ input_desc }} |
| Weights | `model.safetensors`, {{ n_tensors }} tensors, sha256 `{{ weights_sha256 }}` |
{% if source_name %}| Converted from | `{{ source_name }}`\
{% if source_sha256 %} (sha256 `{{ source_sha256 }}`){% endif %} |
{% endif %}| Published with | sslhub {{ sslhub_version }} |

## Evaluation
{% if metric_rows %}
| Protocol | Dataset | Split | Metric | Value | Random init | Source |
|---|---|---|---|---|---|---|
{% for row in metric_rows %}| {{ row | join(" | ") }} |
{% endfor %}{% else %}
No evaluation results were published with these weights.
{% endif %}"""


def _arch_desc(spec: Any) -> str:
    if spec.family == "resnet_generator":
        text = f"Lightly ResNetGenerator `{spec.arch}`, width {spec.width:g}"
        return text + (f", num_ftrs {spec.num_ftrs}" if spec.num_ftrs else "")
    family = {"timm": "timm", "torchvision_resnet": "torchvision / timm", "torchvision_vit": "torchvision"}
    extra = "".join(f", {k}={v}" for k, v in sorted(spec.timm_kwargs.items()))
    size = f", img_size={spec.img_size}" if spec.img_size else ""
    return f"{family.get(spec.family, spec.family)} `{spec.arch}`{size}{extra}"


def render_card(
    *,
    repo_id: str,
    spec: Any,
    method: str | None,
    num_features: int,
    pretrained_cfg: Mapping[str, Any],
    weights_sha256: str,
    n_tensors: int,
    metrics: Sequence[Mapping[str, Any]] = (),
    license: str | None = None,
    datasets: Sequence[str] = (),
    tags: Sequence[str] = (),
    source_name: str | None = None,
    source_sha256: str | None = None,
) -> str:
    """The README text (YAML metadata + markdown), rendered with ``huggingface_hub``'s ``ModelCard``."""
    from huggingface_hub import ModelCard, ModelCardData

    timm_ok = spec.family in TIMM_COMPATIBLE_FAMILIES
    all_tags = ["sslhub", "self-supervised-learning", "image-feature-extraction"]
    all_tags += [t for t in (method.lower() if method else None, spec.arch, "timm" if timm_ok else None) if t]
    all_tags += list(tags)
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        library_name="sslhub",
        pipeline_tag="image-feature-extraction",
        license=license,
        datasets=list(datasets) or None,
        tags=list(dict.fromkeys(all_tags)),
        model_name=model_name,
        eval_results=_eval_results(_split_baselines(metrics)[0]) or None,
    )
    size = pretrained_cfg.get("input_size")
    input_desc = (f"{size[1]}x{size[2]}, " if size else "") + (
        f"mean {tuple(pretrained_cfg['mean'])}, std {tuple(pretrained_cfg['std'])}" if "mean" in pretrained_cfg else ""
    )
    card = ModelCard.from_template(
        card_data,
        template_str=_CARD_TEMPLATE,
        title=model_name,
        repo_id=repo_id,
        method=method,
        arch_desc=_arch_desc(spec),
        num_features=num_features,
        timm_compatible=timm_ok,
        input_desc=input_desc,
        weights_sha256=weights_sha256,
        n_tensors=n_tensors,
        source_name=source_name,
        source_sha256=source_sha256,
        sslhub_version=__version__,
        metric_rows=[
            [_PROTOCOLS[m["protocol"]], m.get("dataset_name") or m["dataset"], m.get("split") or "",
             m.get("name") or m.get("metric", "accuracy"), m["value"], _baseline_for(m, _split_baselines(metrics)[1]),
             m.get("source") or ""]
            for m in _split_baselines(metrics)[0]
        ],  # fmt: skip
    )
    return str(card)


def _timm_pretrained_cfg(
    spec: Any, module_cfg: Mapping[str, Any], metadata: Mapping[str, Any], license: str | None
) -> dict[str, Any]:
    """A ``pretrained_cfg`` with only fields of timm's ``PretrainedCfg`` and only facts about *these* weights."""
    from timm.models import PretrainedCfg

    valid = {f.name for f in dataclasses.fields(PretrainedCfg)}
    cfg: dict[str, Any] = {}
    # Architecture facts from the module's own cfg; weight facts (url, tag, license, paper) from timm's
    # default weights must not leak into ours.
    for k in ("first_conv", "classifier", "fixed_input_size"):
        if module_cfg.get(k) is not None:
            cfg[k] = module_cfg[k]
    size = spec.img_size
    input_size = (3, size, size) if size else (metadata.get("input_size") or module_cfg.get("input_size"))
    if input_size:  # unknown for ResNetGenerator runs: left to the reader's default rather than invented
        cfg["input_size"] = list(input_size)
    cfg.update(
        interpolation="bilinear",  # torchvision's Resize default, which Lightly's eval transforms use
        crop_pct=float(metadata.get("crop_pct") or 0.875),
        crop_mode="center",
        mean=list(metadata.get("mean") or module_cfg.get("mean")),
        std=list(metadata.get("std") or module_cfg.get("std")),
        num_classes=0,
    )
    if license:
        cfg["license"] = license
    return {k: v for k, v in cfg.items() if k in valid}


def build_config(
    state: Any,
    *,
    num_features: int,
    module_cfg: Mapping[str, Any],
    weights_sha256: str,
    readme_sha256: str | None,
    metrics: Sequence[Mapping[str, Any]] = (),
    license: str | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """``config.json``: timm's hub config plus the ``sslhub`` block."""
    spec, meta = state.spec, state.metadata
    pretrained_cfg = _timm_pretrained_cfg(spec, module_cfg, meta, license)
    config: dict[str, Any] = {"architecture": spec.arch, "num_classes": 0, "num_features": num_features}
    if spec.family == "timm":
        model_args = dict(spec.timm_kwargs)
        if spec.img_size:
            model_args["img_size"] = spec.img_size
        if model_args:
            config["model_args"] = model_args
    config["pretrained_cfg"] = pretrained_cfg
    config["sslhub"] = {
        "format": "sslhub",
        "format_version": CONFIG_FORMAT_VERSION,
        "sslhub_version": __version__,
        "family": spec.family,
        "arch": spec.arch,
        "width": spec.width,
        "num_ftrs": spec.num_ftrs,
        "img_size": spec.img_size,
        "timm_kwargs": dict(spec.timm_kwargs),
        "num_features": num_features,
        "method": method,
        "layout": meta.get("layout"),
        "timm_compatible": spec.family in TIMM_COMPATIBLE_FAMILIES,
        "weights": WEIGHTS_NAME,
        "weights_sha256": weights_sha256,
        "readme_sha256": readme_sha256,
        "source_name": meta.get("source_name"),
        "source_sha256": meta.get("source_sha256"),
        "metrics": list(metrics),
    }
    return config


def _safetensors_header(state: Any, num_features: int, method: str | None) -> dict[str, Any]:
    """The header :func:`sslhub.checkpoints.load.load_backbone_state` reads (same fields as ``sslhub convert``)."""
    spec, meta = state.spec, state.metadata
    return {
        "format": "sslhub",
        "sslhub_version": __version__,
        "layout": meta.get("layout") or "sslhub",
        "family": spec.family,
        "arch": spec.arch,
        "width": f"{spec.width:g}" if spec.width is not None else None,
        "num_ftrs": str(spec.num_ftrs) if spec.num_ftrs else None,
        "img_size": str(spec.img_size) if spec.img_size else None,
        "timm_kwargs": json.dumps(spec.timm_kwargs),
        "backbone_prefix": "",  # the file holds the backbone alone
        "method": method,
        "num_features": str(num_features),
        "source_name": meta.get("source_name"),
        "source_sha256": meta.get("source_sha256"),
    }


def _canonicalize_safetensors(path: Path) -> None:
    """Rewrite the header with its metadata keys sorted, in place (atomically).

    safetensors writes its metadata map in a random order, so two writes of the same tensors differ in bytes.
    Published files should depend on their content only: the same sha256 in the card, and no new LFS object or
    commit when nothing changed. Tensor entries keep their offsets; the data section is copied unchanged.
    """
    import shutil

    from sslhub.checkpoints.io import atomic_path

    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None)
        ordered: dict[str, Any] = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
        ordered.update(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"], kv[0])))
        text = json.dumps(ordered, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes for aligned tensors
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as out:
                out.write(len(text).to_bytes(8, "little"))
                out.write(text)
                shutil.copyfileobj(f, out)


def _load_state(source: Path | str, arch: str | None, width: float | None, prefix: str | None) -> Any:
    from sslhub.checkpoints.load import load_backbone_state

    state = load_backbone_state(source, arch=arch, width=width, prefix=prefix, dtype=None)
    if state.spec.family == "resnet_generator" and state.spec.num_ftrs:
        # Keep the Worker's num_ftrs conv: features="embedding" then works on the published file too.
        state = load_backbone_state(source, arch=arch, width=width, prefix=prefix, keep_num_ftrs=True, dtype=None)
    return state


def stage_files(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    repo_id: str,
    arch: str | None = None,
    width: float | None = None,
    prefix: str | None = None,
    method: str | None = None,
    metrics: Sequence[Mapping[str, Any]] | None = None,
    license: str | None = None,
    datasets: Sequence[str] = (),
    tags: Sequence[str] = (),
    write_readme: bool = True,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write ``model.safetensors``, ``config.json`` and (unless ``write_readme=False``) ``README.md`` to ``out_dir``.

    Every file is written atomically. Returns the paths written and the config dict. ``source`` is a checkpoint
    file (any format :func:`sslhub.load_pretrained` reads) or a run folder (see :func:`find_checkpoint`); a run
    folder's ``metrics.json`` is used when ``metrics`` is None.
    """
    from sslhub.backbones import create_backbone
    from sslhub.checkpoints.io import atomic_path, save_safetensors, sha256_file

    src = Path(source) if Path(str(source)).exists() else None
    if src is not None and src.is_dir():
        if metrics is None:
            metrics = run_dir_metrics(src)
        src = find_checkpoint(src)
    metrics = _validate_metrics(list(metrics or []), "metrics")
    out_dir = Path(out_dir)
    outputs = {name: out_dir / name for name in (WEIGHTS_NAME, CONFIG_NAME, README_NAME)}
    if src is not None:
        for p in outputs.values():
            if p.exists() and p.resolve() == src.resolve():
                raise PublishError(f"{p} is the checkpoint being published; choose another output folder")

    state = _load_state(src if src is not None else str(source), arch, width, prefix)
    if src is not None and not state.metadata.get("source_sha256"):
        # Provenance of the file the backbone was cut from (the published file is a different, smaller one);
        # an sslhub file that already names its own origin keeps that.
        state.metadata["source_name"] = src.name
        state.metadata["source_sha256"] = sha256_file(src)
    method = method or state.metadata.get("method")
    module = create_backbone(meta=True, **state.spec.kwargs(keep_num_ftrs=False))
    num_features = int(module.num_features)
    module_cfg = dict(getattr(module, "pretrained_cfg", {}) or {})

    save_safetensors(state.state_dict, outputs[WEIGHTS_NAME], _safetensors_header(state, num_features, method))
    _canonicalize_safetensors(outputs[WEIGHTS_NAME])
    weights_sha256 = sha256_file(outputs[WEIGHTS_NAME])
    pretrained_cfg = _timm_pretrained_cfg(state.spec, module_cfg, state.metadata, license)
    readme = render_card(
        repo_id=repo_id,
        spec=state.spec,
        method=method,
        num_features=num_features,
        pretrained_cfg=pretrained_cfg,
        weights_sha256=weights_sha256,
        n_tensors=len(state.state_dict),
        metrics=metrics,
        license=license,
        datasets=datasets,
        tags=tags,
        source_name=state.metadata.get("source_name"),
        source_sha256=state.metadata.get("source_sha256"),
    )
    readme_bytes = readme.encode("utf-8")
    config = build_config(
        state,
        num_features=num_features,
        module_cfg=module_cfg,
        weights_sha256=weights_sha256,
        # A README that sslhub did not write this time is not ours to vouch for.
        readme_sha256=_sha256_bytes(readme_bytes) if write_readme else None,
        metrics=metrics,
        license=license,
        method=method,
    )
    written = {WEIGHTS_NAME: outputs[WEIGHTS_NAME]}
    if write_readme:
        with atomic_path(outputs[README_NAME]) as tmp:
            tmp.write_bytes(readme_bytes)
        written[README_NAME] = outputs[README_NAME]
    _write_config(outputs[CONFIG_NAME], config)
    written[CONFIG_NAME] = outputs[CONFIG_NAME]
    return written, config


def readme_is_ours(readme: bytes, config_text: str | bytes | None) -> bool:
    """True if ``readme`` is exactly what sslhub wrote with that ``config.json`` (its ``readme_sha256``)."""
    if config_text is None:
        return False
    try:
        recorded = json.loads(config_text).get("sslhub", {}).get("readme_sha256")
    except (ValueError, AttributeError):
        return False
    return isinstance(recorded, str) and recorded == _sha256_bytes(readme)


def _readme_decision(
    existing: bytes | None, config_text: str | bytes | None, where: str, overwrite: bool, keep: bool
) -> bool:
    """Whether to write README.md; raises when an edited README would be replaced without consent."""
    if existing is None or overwrite:
        return True
    if keep:
        return False
    if readme_is_ours(existing, config_text):
        return True
    raise PublishError(
        f"{where} has a README.md that sslhub did not write or that was edited after the last publish; it is "
        "not replaced silently. Pass --overwrite-readme (overwrite_readme=True) to replace it, or --keep-readme "
        "(keep_readme=True) to publish the weights and config and leave the README as it is."
    )


def _read_optional(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def publish(
    source: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: str | os.PathLike | None = None,
    overwrite_readme: bool = False,
    keep_readme: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    arch: str | None = None,
    width: float | None = None,
    prefix: str | None = None,
    method: str | None = None,
    metrics: Sequence[Mapping[str, Any]] | str | os.PathLike | None = None,
    license: str | None = None,
    datasets: Iterable[str] = (),
    tags: Iterable[str] = (),
) -> PublishResult:
    """Publish a backbone to the Hugging Face Hub as one commit (or, with ``dry_run``, write the files only).

    Args:
        source: a checkpoint (any format :func:`sslhub.load_pretrained` reads, or a registry name / URL /
            ``hf-hub:`` id) or a training run folder (see :func:`find_checkpoint`; its ``metrics.json`` is used).
        repo_id: ``"org/name"``; the repo is created if needed.
        private: create the repo private (an existing repo keeps its visibility).
        dry_run: write the three files to this folder and upload nothing.
        overwrite_readme: replace a README.md that sslhub did not write or that was edited since.
        keep_readme: leave an existing README.md as it is (weights and config are still published).
        revision: branch to commit to (default ``main``).
        commit_message: default ``"Publish <method> <arch> backbone (sslhub <version>)"``.
        arch, width, prefix: as for :func:`sslhub.load_pretrained`, when the checkpoint cannot tell.
        method: SSL method name for the card (default: detected from the checkpoint).
        metrics: measured metrics (see :func:`load_metrics`), or a path to such a JSON file.
        license, datasets, tags: model card metadata (``license`` also goes into ``pretrained_cfg``).

    Returns:
        A :class:`PublishResult`.

    Raises:
        PublishError: README conflict, no token, bad metrics, ...; huggingface_hub's HTTP errors pass through.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"--repo-id {repo_id!r} is not a valid Hugging Face repo id ({e}); use 'org/name'") from None
    if "/" not in repo_id:
        raise PublishError(f"--repo-id {repo_id!r}: use 'org/name' (the user or organisation, then the repo name)")
    if overwrite_readme and keep_readme:
        raise PublishError("overwrite_readme and keep_readme contradict each other; pass at most one")
    if metrics is not None and not isinstance(metrics, (list, tuple)):
        metrics = load_metrics(metrics)  # a path
    elif metrics is not None:  # checked as a file's would be (finite numbers: the card and config.json are JSON)
        metrics = _validate_metrics(list(metrics), "metrics")
    stage_kwargs: dict[str, Any] = dict(
        repo_id=repo_id, arch=arch, width=width, prefix=prefix, method=method, metrics=metrics,
        license=license, datasets=list(datasets), tags=list(tags),
    )  # fmt: skip

    if dry_run is not None:
        out = Path(dry_run)
        existing = _read_optional(out / README_NAME)
        config_text = _read_optional(out / CONFIG_NAME)
        write_readme = _readme_decision(existing, config_text, str(out), overwrite_readme, keep_readme)
        files, config = stage_files(source, out, write_readme=write_readme, **stage_kwargs)
        logger.debug("dry run: wrote %s to %s (nothing uploaded)", ", ".join(files), out)
        return PublishResult(repo_id, list(files), "written" if write_readme else "kept", out_dir=out, config=config)

    return _upload(source, repo_id, private=private, revision=revision, commit_message=commit_message,
                   overwrite_readme=overwrite_readme, keep_readme=keep_readme, stage_kwargs=stage_kwargs)  # fmt: skip


def _remote_file(api: Any, repo_id: str, filename: str, commit: str, siblings: set[str]) -> bytes | None:
    if filename not in siblings:
        return None
    return Path(api.hf_hub_download(repo_id, filename, revision=commit)).read_bytes()


def _write_config(path: Path, config: Mapping[str, Any]) -> None:
    from sslhub.checkpoints.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(config, indent=2, allow_nan=False) + "\n")


def _hub_error(e: Exception, repo_id: str, branch: str) -> PublishError:
    """A huggingface_hub HTTP error as a message that says what to do (its text never holds the token)."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    where = f"hf-hub:{repo_id}@{branch}"
    if status == 412:
        return PublishError(f"{where} changed while publishing (someone committed meanwhile); run publish again")
    if status in (401, 403):
        return PublishError(f"{where}: the Hub refused the token ({first}); use a token with write access to {repo_id}")
    return PublishError(f"{where}: the Hub answered {status or 'an error'}: {first}")


def _upload(
    source: str | os.PathLike,
    repo_id: str,
    *,
    private: bool,
    revision: str | None,
    commit_message: str | None,
    overwrite_readme: bool,
    keep_readme: bool,
    stage_kwargs: dict[str, Any],
) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if not get_token():
        raise PublishError(
            "no Hugging Face token found: log in with `hf auth login` or set HF_TOKEN to a token with write access "
            f"to {repo_id}"
        )
    api = HfApi()  # token, endpoint and cache come from huggingface_hub's own configuration
    branch = revision or "main"
    with staging_dir("publish") as tmp:
        # Read and convert the checkpoint before touching the Hub: a bad input creates no repo.
        files, config = stage_files(source, tmp, write_readme=True, **stage_kwargs)
        try:
            try:
                info = api.repo_info(repo_id, revision=branch, files_metadata=False)
            except RepositoryNotFoundError:
                logger.info("creating %s repo %s", "private" if private else "public", repo_id)
                api.create_repo(repo_id, private=private, exist_ok=True)
                info = api.repo_info(repo_id, revision=branch, files_metadata=False)
            else:
                if private and not info.private:
                    logger.warning("%s exists and is public; --private applies only when creating a repo", repo_id)
            head = info.sha
            siblings = {s.rfilename for s in (info.siblings or [])}
            remote_readme = _remote_file(api, repo_id, README_NAME, head, siblings)
            remote_config = _remote_file(api, repo_id, CONFIG_NAME, head, siblings) if remote_readme else None
            where = f"hf-hub:{repo_id}@{branch}"
            write_readme = _readme_decision(remote_readme, remote_config, where, overwrite_readme, keep_readme)
            if not write_readme:
                # The person's README stays; the config must not vouch for it as sslhub's.
                del files[README_NAME]
                config["sslhub"]["readme_sha256"] = None
                _write_config(files[CONFIG_NAME], config)
            meta = config["sslhub"]
            default = f"Publish {meta['method'] or 'SSL'} {meta['arch']} backbone (sslhub {__version__})"
            message = commit_message or default
            ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
            logger.info("uploading %s to %s (branch %s) as one commit", ", ".join(files), repo_id, branch)
            commit = api.create_commit(
                repo_id,
                ops,
                commit_message=message,
                revision=branch,
                parent_commit=head,  # fail rather than overwrite a commit made since the README check
            )
        except RevisionNotFoundError:
            raise PublishError(
                f"hf-hub:{repo_id} has no branch {branch!r}; create it first (HfApi().create_branch) or omit --revision"
            ) from None
        except HfHubHTTPError as e:
            raise _hub_error(e, repo_id, branch) from None
    changed = commit.oid != head  # huggingface_hub skips a commit that would change nothing
    if changed:
        logger.info("published %s: %s", repo_id, commit.commit_url)
    else:
        logger.info("%s already holds exactly these files; no new commit", repo_id)
    return PublishResult(
        repo_id,
        list(files),
        "written" if write_readme else "kept",
        commit_oid=commit.oid,
        commit_url=commit.commit_url,
        changed=changed,
        config=config,
    )
