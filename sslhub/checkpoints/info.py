"""``sslhub info``: what a checkpoint holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.layouts import detect
from sslhub.checkpoints.load import _spec_from_metadata, read_checkpoint, resolve_path

__all__ = ["info"]


def info(source: str | os.PathLike, *, arch: str | None = None) -> dict[str, Any]:
    """Describe a checkpoint: layout, architecture, width, feature dim, parameter counts, heads, metadata.

    Returns a JSON-serialisable dict. Unrecognised backbones are reported (``"arch": None`` and ``"error"``)
    rather than raised, so that any readable file can be inspected.
    """
    from sslhub.checkpoints.load import build_from_state, load_backbone_state

    path = resolve_path(source)
    sd, extras, meta = read_checkpoint(path)
    out: dict[str, Any] = {
        "file": str(path),
        "size_bytes": Path(path).stat().st_size if Path(path).is_file() else None,
        "num_tensors": len(sd),
        "num_elements": int(sum(t.numel() for t in sd.values())),
        "metadata": {k: v for k, v in meta.items()},
        "lightning": {k: v for k, v in extras.items() if k in ("epoch", "global_step", "pytorch-lightning_version", "hyper_parameters")},
    }
    recorded = _spec_from_metadata(meta)  # an sslhub file says what it holds (timm models have no key anchors)
    try:
        det = detect(sd, str(path), extras=extras, arch=arch or (recorded.arch if recorded else None))
        spec = recorded or det.spec
        state = load_backbone_state(path, arch=arch, dtype=None)
        model = build_from_state(state, where=str(path))
    except CheckpointError as e:
        out.update(layout=meta.get("layout"), arch=None, error=str(e))
        return out
    out.update(
        layout=meta.get("layout", det.layout),
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
