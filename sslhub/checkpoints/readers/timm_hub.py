"""timm's Hugging Face Hub files: ``config.json`` + ``model.safetensors`` as ``timm.models.push_to_hf.save_for_hf``
writes them (and as the ``timm/`` organisation publishes them).

``config.json`` names the model exactly: ``architecture`` (a timm model name), ``model_args`` (the arguments it was
built with: sizes, ``global_pool``, ``img_size`` ...), ``num_classes``, ``global_pool`` and ``pretrained_cfg``
(input size, mean/std). The state dict is timm's own, so there is no key remap; the model is rebuilt with
``timm.create_model(architecture, num_classes=0, **model_args)`` and the classifier is dropped. This covers any
timm architecture, also those whose tensors alone do not say what they are (ConvNeXt, EVA, ...).
"""

from __future__ import annotations

from typing import Any, Mapping

from sslhub.checkpoints.readers.base import Match, Reader, StateDict
from sslhub.checkpoints.readers.transformers_vit import hf_config

_NOT_ARGS = ("num_classes", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained")  # set by sslhub or meaningless here


class TimmHub(Reader):
    name = "timm-hub"
    upstream = "huggingface/pytorch-image-models (timm save_for_hf / push_to_hf_hub)"
    evaluation_copy = "the model named by config.json's architecture and model_args; classifier dropped"

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        cfg = hf_config(extras)
        if cfg is None or not isinstance(cfg.get("architecture"), str) or "model_type" in cfg:
            return None
        import timm

        arch = cfg["architecture"]
        if not timm.is_model(arch):
            return None
        return Match("", f"timm {arch} (config.json architecture)", why=f"config.json architecture {arch!r}")

    def spec_from_config(self, sub: StateDict, extras: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
        cfg = hf_config(extras) or {}
        args = cfg.get("model_args") if isinstance(cfg.get("model_args"), dict) else {}
        kw = {k: v for k, v in args.items() if k not in _NOT_ARGS and not (k == "in_chans" and v == 3)}
        if "global_pool" not in kw and isinstance(cfg.get("global_pool"), str):
            kw["global_pool"] = cfg["global_pool"]
        img = kw.pop("img_size", None)
        if isinstance(img, (list, tuple)) and len(img) == 2 and img[0] == img[1]:
            img = img[0]
        if img is not None and not isinstance(img, int):
            kw["img_size"] = img  # non-square: timm takes it as given
            img = None
        facts = [f"config.json: timm {cfg['architecture']}" + "".join(f", {k}={v!r}" for k, v in kw.items())]
        if "dinov3" in str(cfg["architecture"]) and "rope.periods" not in sub:
            kw["keep_rope_periods"] = False  # timm's own files store no RoPE periods: timm recomputes them
        return {"family": "timm", "arch": cfg["architecture"], "img_size": img, "timm_kwargs": kw}, facts


def preprocessing(extras: Mapping[str, Any]) -> dict[str, Any]:
    """mean/std (and input size) that a timm ``config.json``'s ``pretrained_cfg`` records, else {}."""
    cfg = hf_config(extras) or {}
    pcfg = cfg.get("pretrained_cfg") if "architecture" in cfg else None
    if not isinstance(pcfg, dict):
        return {}
    out: dict[str, Any] = {}
    for k in ("mean", "std", "input_size"):
        v = pcfg.get(k)
        if isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v):
            out[k] = tuple(v)
    if isinstance(pcfg.get("crop_pct"), (int, float)):
        out["crop_pct"] = float(pcfg["crop_pct"])
    return out
