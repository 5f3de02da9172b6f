"""What a published repo says about its weights: ``README.md`` (a ``huggingface_hub`` model card) and
``config.json`` (timm's hub config plus the ``sslhub`` block), rendered from a backbone state and its metrics."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from sslhub._version import __version__
from sslhub.backbones.pretrained_cfg import DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION, default_crop_pct
from sslhub.hub.hf import WEIGHTS_NAME
from sslhub.training.run_results import PROTOCOL_SHORT, PROTOCOLS

__all__ = ["CONFIG_FORMAT_VERSION", "TIMM_COMPATIBLE_FAMILIES", "build_config", "render_card", "timm_pretrained_cfg"]

CONFIG_FORMAT_VERSION = 1
# Families whose published state dict a plain timm model of the same name loads (torchvision ResNet keys are
# timm's resnetXX keys minus ``fc``).
TIMM_COMPATIBLE_FAMILIES = ("timm", "torchvision_resnet")

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
                metric_name=str(m.get("name") or f"{PROTOCOL_SHORT[m['protocol']]} {m.get('metric', 'accuracy')}"),
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
            [PROTOCOLS[m["protocol"]], m.get("dataset_name") or m["dataset"], m.get("split") or "",
             m.get("name") or m.get("metric", "accuracy"), m["value"], _baseline_for(m, _split_baselines(metrics)[1]),
             m.get("source") or ""]
            for m in _split_baselines(metrics)[0]
        ],  # fmt: skip
    )
    return str(card)


def timm_pretrained_cfg(
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
    # the crop sslhub.load_pretrained declares for these weights (timm's own for timm models, else by size)
    crop_pct = metadata.get("crop_pct") or (module_cfg.get("crop_pct") if spec.family == "timm" else None)
    if not crop_pct:
        crop_pct = default_crop_pct(int(input_size[-1])) if input_size else DEFAULT_CROP_PCT
    cfg.update(
        interpolation=DEFAULT_INTERPOLATION,  # what sslhub's evaluation resizes with
        crop_pct=float(crop_pct),
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
    pretrained_cfg = timm_pretrained_cfg(spec, module_cfg, meta, license)
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
