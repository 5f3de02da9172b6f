"""Export a backbone to ONNX: ``sslhub export SRC --to onnx model.onnx``.

The graph is the model :func:`sslhub.load_pretrained` returns (float ``(N, 3, H, W)`` in, ``(N, D)`` features out),
so every architecture sslhub loads exports, Lightly's ResNetGenerator included (a graph needs no twin in another
library). The batch dimension is dynamic; the image size is fixed at export (the model's input size, or
``image_size``). The opset is one onnxruntime runs (:data:`ONNX_OPSET`). Input normalisation is not part of the
graph: the file's metadata records ``mean``/``std`` (0-1 pixels) next to the architecture and the input size.

Before the file is moved into place it is run with onnxruntime (when installed) on a batch of another size than
the one traced, and compared with the PyTorch features; a mismatch writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from sslhub._files import atomic_path, staging_dir
from sslhub._version import __version__
from sslhub.errors import SslhubError

logger = logging.getLogger(__name__)

__all__ = ["ONNX_OPSET", "OnnxExportError", "export_onnx", "export_onnx_model"]

# 18: the torch.export-based exporter's native opset; onnxruntime >= 1.14 runs it (LayerNorm, GELU as ops).
ONNX_OPSET = 18
INPUT_NAME = "images"
OUTPUT_NAME = "features"
_TOLERANCE = 1e-4  # max |onnx - torch| relative to max(1, max |torch|), the acceptance bound
_DEFAULT_SIZE = 224  # CNNs record no input size; ImageNet's
_TWO_GB = 2**31 - 1  # protobuf's limit for one file: larger models keep their weights in <out>.data


class OnnxExportError(SslhubError, ValueError):
    """An ONNX export that cannot be done; the message names the file and what to do."""


def _missing_extra(what: str) -> OnnxExportError:
    return OnnxExportError(
        f"ONNX export needs {what}; install the extra: pip install 'sslhub[onnx]' (onnx, onnxscript, onnxruntime)"
    )


def _image_size(model: nn.Module, image_size: int | None) -> int:
    if image_size is not None:
        if image_size < 1:
            raise OnnxExportError(f"image_size={image_size}: give a positive number of pixels")
        return int(image_size)
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 3 and int(size[1]) == int(size[2]):
        return int(size[1])
    return _DEFAULT_SIZE


def _metadata(model: nn.Module, size: int, extra: Mapping[str, Any]) -> dict[str, str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    meta = {
        "sslhub_version": __version__,
        "sslhub_export": "onnx",
        "arch": str(cfg.get("arch", type(model).__name__)),
        "input_size": json.dumps([3, size, size]),
        "mean": json.dumps([float(x) for x in cfg.get("mean", (0.485, 0.456, 0.406))]),
        "std": json.dumps([float(x) for x in cfg.get("std", (0.229, 0.224, 0.225))]),
        "num_features": str(getattr(model, "num_features", "")),
        "input": f"{INPUT_NAME}: float32 (batch, 3, {size}, {size}), RGB in [0, 1] normalised with mean/std",
        "output": f"{OUTPUT_NAME}: float32 (batch, num_features)",
    }
    meta.update({k: str(v) for k, v in extra.items() if v is not None})
    return meta


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The exporter's optimiser logs every graph pass at INFO; sslhub's own log says what was written."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _check_with_onnxruntime(path: Path, model: nn.Module, size: int, where: str) -> float | None:
    """Max |diff| between onnxruntime and PyTorch on a batch of 3 (the trace used 2); None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        logger.warning("onnxruntime is not installed: %s was not checked against PyTorch", path)
        return None
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x).float()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    got_t = torch.from_numpy(got)
    if got_t.shape != ref.shape:
        raise OnnxExportError(f"{where}the ONNX graph returns shape {tuple(got_t.shape)}, PyTorch {tuple(ref.shape)}")
    diff = (got_t - ref).abs().max().item()
    if not diff <= _TOLERANCE * max(1.0, ref.abs().max().item()):
        raise OnnxExportError(
            f"{where}onnxruntime's features differ from PyTorch's by {diff:.3g} (> {_TOLERANCE}); nothing written. "
            "Please report this architecture"
        )
    return diff


def export_onnx_model(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    image_size: int | None = None,
    force: bool = False,
    metadata: Mapping[str, Any] | None = None,
    check: bool = True,
    where: str = "",
) -> tuple[Path, float | None]:
    """Write ``model`` (float ``(N, 3, H, W)`` -> ``(N, D)``) as an ONNX file with a dynamic batch dimension.

    Args:
        model: the backbone, as :func:`sslhub.load_pretrained` returns it.
        out: the ``.onnx`` file. Models over 2 GB keep their weights next to it in ``<out>.data``.
        image_size: the (square) input size; default the model's ``pretrained_cfg["input_size"]``, else 224.
        force: replace an existing ``out``.
        metadata: extra string entries for the file's ``metadata_props``.
        check: run the written graph with onnxruntime (if installed) and compare with PyTorch first.
        where: prefix for error messages (the source file).

    Returns:
        The path written and the max |onnxruntime - PyTorch| difference (None when not checked).
    """
    out = Path(out)
    if out.suffix != ".onnx":
        raise OnnxExportError(f"{out}: name the ONNX output with the .onnx suffix (e.g. model.onnx)")
    if out.is_dir():
        raise OnnxExportError(f"{out} is a directory; give a file name for the export")
    data_out = out.with_name(out.name + ".data")
    if (out.exists() or data_out.exists()) and not force:
        raise OnnxExportError(f"{out} already exists; pass force=True (CLI: --force) to replace it")
    try:
        import onnx
        import onnxscript  # noqa: F401  (the exporter needs it; a clear message beats its ImportError)
    except ImportError as e:
        raise _missing_extra(e.name or "onnx") from None
    size = _image_size(model, image_size)
    model = model.eval().float().cpu()
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    out.parent.mkdir(parents=True, exist_ok=True)
    # The file is written and checked in a private staging folder (removed on exit, or by the next call after a
    # kill -9); only the checked file is then copied atomically into place.
    with staging_dir("onnx") as tmp:
        tmp_file = tmp / out.name
        batch = torch.export.Dim("batch", min=1)
        try:
            with warnings.catch_warnings(), _quiet("onnxscript", "onnx_ir", "torch.onnx"):
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    model, (example,), dynamo=True, opset_version=ONNX_OPSET, input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), verbose=False, report=False,
                )  # fmt: skip
        except Exception as e:  # the exporter raises many types; say which model and where
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise OnnxExportError(f"{where}torch.onnx could not export this model: {first}") from None
        proto = program.model_proto
        onnx.helper.set_model_props(proto, _metadata(model, size, metadata or {}))
        big = proto.ByteSize() > _TWO_GB
        if big:
            onnx.save_model(proto, tmp_file, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_out.name)  # fmt: skip
        else:
            onnx.save_model(proto, tmp_file)
        diff = _check_with_onnxruntime(tmp_file, model, size, where) if check else None
        if big:
            with atomic_path(data_out) as dst:
                shutil.copyfile(tmp / data_out.name, dst)
        elif data_out.exists():  # a stale weights file from an earlier, larger export of the same name
            data_out.unlink()
        with atomic_path(out) as dst:
            shutil.copyfile(tmp_file, dst)
    logger.info("wrote %s (opset %d, input 3x%dx%d, dynamic batch)", out, ONNX_OPSET, size, size)
    return out, diff


def export_onnx(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    arch: str | None = None,
    width: float | None = None,
    image_size: int | None = None,
    force: bool = False,
) -> tuple[Path, float | None]:
    """Load ``src`` with :func:`sslhub.load_pretrained` and write its backbone as ONNX (see :func:`export_onnx_model`).

    ``src`` is never overwritten. Returns the path and the checked max |onnxruntime - PyTorch| difference.
    """
    from sslhub.loading import load_pretrained

    out_p, src_p = Path(out), Path(src)
    if src_p.exists() and out_p.exists() and os.path.samefile(src_p, out_p):
        raise OnnxExportError(f"{out_p} is the source checkpoint; choose another output path")
    model = load_pretrained(src, arch=arch, width=width)
    return export_onnx_model(model, out, image_size=image_size, force=force, where=f"{src}: ",
                             metadata={"source_file": src_p.name})  # fmt: skip
