"""Locate the project's shared datasets (``shared/data`` beside the checkout, as on CI and dev machines)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_data(name: str) -> Path:
    """Path of ``shared/data/<name>``: ``$SSLHUB_SHARED_DATA``, then ``../shared`` beside the checkout, then
    ``shared/`` inside it, then ``/work/shared``. Raises with the places it looked when none has it."""
    candidates = [Path(p) for p in [os.environ.get("SSLHUB_SHARED_DATA")] if p]
    candidates += [ROOT.parent / "shared" / "data", ROOT / "shared" / "data", Path("/work/shared/data")]
    for base in candidates:
        if (base / name).is_dir():
            return base / name
    raise FileNotFoundError(f"dataset {name!r} not found in any of {[str(c) for c in candidates]}")


def shared_vendor(name: str) -> Path:
    """Path of the folder holding the vendored package ``shared/vendor/<name>/<name>`` (e.g. Detectron2's source
    snapshot), looked up like :func:`shared_data`; put it on ``sys.path`` to import the package."""
    candidates = [Path(p) / "vendor" for p in [os.environ.get("SSLHUB_SHARED")] if p]
    candidates += [ROOT.parent / "shared" / "vendor", ROOT / "shared" / "vendor", Path("/work/shared/vendor")]
    for base in candidates:
        if (base / name / name).is_dir():
            return base / name
    raise FileNotFoundError(f"vendored {name!r} not found in any of {[str(c) for c in candidates]}")


def import_detectron2() -> None:
    """Make the vendored Detectron2 snapshot importable (its pure-Python deps are in the ``test`` extra)."""
    import sys

    path = str(shared_vendor("detectron2"))
    if path not in sys.path:
        sys.path.insert(0, path)
