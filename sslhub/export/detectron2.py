"""Detectron2 weight files: the ``.pkl`` layout that ``DetectionCheckpointer`` reads and the config the weights need.

``DetectionCheckpointer._load_file`` unpickles a ``.pkl`` and, when it has ``"model"`` and ``"__author__"``, uses it
as is; ``"matching_heuristics": True`` makes it match our short names (``res2.0.conv1.weight``) against the
model's longer ones (``backbone.bottom_up.res2.0.conv1.weight``) by suffix, so one file serves C4 and FPN models.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from sslhub.checkpoints.io import atomic_path

__all__ = ["DETECTRON2_DEPTHS", "detectron2_config", "detectron2_config_yaml", "write_detectron2_pkl"]

DETECTRON2_DEPTHS = (18, 34, 50, 101, 152)


def _portable_ndarray(a: np.ndarray) -> tuple[Any, tuple[Any, ...]]:
    # numpy >= 2 pickles arrays through ``numpy._core.multiarray._reconstruct``, a module numpy 1.x lacks, and
    # Detectron2 installs commonly pin numpy 1.x. ``numpy.ndarray(shape, dtype, buffer)`` exists in every numpy;
    # a bytearray buffer makes the unpickled array writable (torch.from_numpy warns on read-only arrays).
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return np.ndarray, (a.shape, a.dtype.str, bytearray(a.tobytes()))


def _dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=4)  # protocol 4: readable by every Python 3 that Detectron2 supports
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[np.ndarray] = _portable_ndarray
    pickler.dump(obj)
    return buf.getvalue()


def write_detectron2_pkl(state_dict: Mapping[str, torch.Tensor], dst: str | Path, *, author: str = "sslhub") -> None:
    """Atomically write ``{"model": {name: float32 ndarray}, "__author__": author, "matching_heuristics": True}``."""
    model = {k: v.detach().to(device="cpu", dtype=torch.float32).numpy() for k, v in state_dict.items()}
    data = _dumps({"model": model, "__author__": author, "matching_heuristics": True})
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)


def detectron2_config(
    depth: int, mean: Sequence[float], std: Sequence[float], *, weights: str | None = None
) -> dict[str, Any]:
    """The Detectron2 config entries that torchvision-layout ResNet weights need.

    ``mean``/``std`` are the model's normalisation on the 0-1 scale; Detectron2 feeds 0-255 pixels, hence ×255.
    torchvision ResNets stride in the 3x3 conv (``STRIDE_IN_1X1: False``, MSRA weights use True) and expect RGB.
    """
    if depth not in DETECTRON2_DEPTHS:
        raise ValueError(f"Detectron2's ResNet has depths {DETECTRON2_DEPTHS}, not {depth}")
    resnets: dict[str, Any] = {"DEPTH": depth, "STRIDE_IN_1X1": False}
    if depth in (18, 34):
        # Detectron2 asserts this for BasicBlock ResNets (its default, 256, is the R-50+ bottleneck output).
        resnets["RES2_OUT_CHANNELS"] = 64
    model: dict[str, Any] = {}
    if weights is not None:
        model["WEIGHTS"] = weights
    model.update(
        PIXEL_MEAN=[round(255.0 * float(m), 6) for m in mean],
        PIXEL_STD=[round(255.0 * float(s), 6) for s in std],
        RESNETS=resnets,
    )
    # VERSION 2 is the current config schema; without it merge_from_file warns and guesses.
    return {"MODEL": model, "INPUT": {"FORMAT": "RGB"}, "VERSION": 2}


def detectron2_config_yaml(config: Mapping[str, Any], *, header: str = "") -> str:
    """YAML text of :func:`detectron2_config` (mergeable with ``cfg.merge_from_file``), with ``#`` header lines."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    # Block mappings with one-line lists, as Detectron2's own configs write PIXEL_MEAN.
    _Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + yaml.dump(dict(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
