"""``sslhub info``: what a checkpoint holds, and which reader recognised it and why.

:func:`info_file` reads a local file; :func:`sslhub.info` (in :mod:`sslhub.loading`) resolves a registry name,
URL or ``hf-hub:`` id first.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from sslhub.checkpoints.anchors import spec_from_header
from sslhub.checkpoints.build import build_from_state
from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.read import read_checkpoint
from sslhub.checkpoints.recognise import recognise
from sslhub.checkpoints.remap import backbone_state

__all__ = ["info_file"]


def info_file(path: str | os.PathLike, *, arch: str | None = None) -> dict[str, Any]:
    """Describe a local checkpoint: layout, the reader that matched and why, architecture, width, feature dim,
    parameter counts, heads, metadata.

    Returns a JSON-serialisable dict. Unrecognised backbones are reported (``"arch": None`` and ``"error"``)
    rather than raised, so that any readable file can be inspected.
    """
    path = Path(path)
    where = str(path)
    ckpt = read_checkpoint(path)
    sd, extras, meta = ckpt
    out: dict[str, Any] = {
        "file": where,
        "size_bytes": path.stat().st_size if path.is_file() else None,
        "num_tensors": len(sd),
        "num_elements": int(sum(t.numel() for t in sd.values())),
        "metadata": {k: v for k, v in meta.items()},
        "lightning": {k: v for k, v in extras.items() if k in ("epoch", "global_step", "pytorch-lightning_version", "hyper_parameters")},
    }
    recorded = spec_from_header(meta)  # an sslhub file says what it holds (timm models have no key anchors)
    try:
        det = recognise(ckpt, where, arch=arch or (recorded.arch if recorded else None))
        spec = recorded or det.spec
        state = backbone_state(ckpt, det, where, arch=arch, dtype=None)
        model = build_from_state(state, where=where)
    except CheckpointError as e:
        out.update(layout=meta.get("layout"), arch=None, error=str(e))
        return out
    out.update(
        layout=meta.get("layout", det.layout),
        reader=det.reader,
        matched_on=det.why,
        family=spec.family,
        arch=spec.arch,
        width=spec.width,
        img_size=spec.img_size,
        num_ftrs=spec.num_ftrs,
        out_dim=det.out_dim,
        method=meta.get("method") or det.method,
        backbone_prefix=det.prefix,
        feature_dim=int(model.num_features),
        backbone_params=int(sum(p.numel() for p in model.parameters())),
        # without a recognised family (timm models named by arch=) the top-level groups are the backbone's own
        heads=det.components if det.prefix in det.candidates else [],
        other_backbones=sorted(p for p in det.candidates if p != det.prefix),
    )
    if det.upstream:  # a layout of another SSL project: where it comes from and what was left out
        out.update(upstream=det.upstream, variant=det.variant, evaluation_copy=det.evaluation_copy,
                   dropped=det.components, facts=det.facts)  # fmt: skip
        del out["heads"]
    return out


def __getattr__(name: str) -> Any:
    # ``sslhub.checkpoints.info.info`` (the old documented path) resolves sources, which is the layer above this
    # one: looked up on first use, never imported by this module.
    if name == "info":
        return importlib.import_module("sslhub.loading").info
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
