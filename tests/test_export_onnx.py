"""``sslhub export --to onnx``: the written file, run by onnxruntime, gives the PyTorch features (|diff| <= 1e-4)
for a ResNet, a ViT and a Lightly ResNetGenerator, at batch sizes other than the one traced (dynamic batch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sslhub
from sslhub.backbones import create_backbone
from sslhub.checkpoints.io import save_safetensors
from sslhub.export import ExportError, export_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[1]


def _randomize_norms(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    # Untrained norms (identity affine, mean 0 / var 1) would hide a graph that drops or swaps them.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def _run(path: Path, x: torch.Tensor) -> torch.Tensor:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["images"] and [o.name for o in s.get_outputs()] == ["features"]
    return torch.from_numpy(s.run(None, {"images": x.numpy()})[0])


def _same(path: Path, model: torch.nn.Module, size: int) -> None:
    for batch in (1, 5):  # traced at 2: other batch sizes prove the batch axis is dynamic
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = model(x)
        got = _run(path, x)
        assert got.shape == ref.shape == (batch, model.num_features)
        assert (got - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "SSLHUB_OFFLINE": "1"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def test_resnet_cli_features_match_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = _randomize_norms(create_backbone("resnet18"), 0)
    src = tmp_path / "r18.pth"
    torch.save(model.state_dict(), src)
    out = tmp_path / "r18.onnx"
    p = _cli("export", str(src), "--to", "onnx", str(out), "--image-size", "64")
    assert p.returncode == 0, p.stderr
    assert f"wrote {out} (onnx resnet18)" in p.stdout and "onnxruntime.InferenceSession" in p.stdout
    _same(out, model, 64)
    props = {m.key: m.value for m in onnx.load(out).metadata_props}
    assert props["arch"] == "resnet18" and json.loads(props["input_size"]) == [3, 64, 64]
    assert json.loads(props["mean"]) == pytest.approx([0.485, 0.456, 0.406]) and props["source_file"] == "r18.pth"
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r18.onnx", "r18.pth"]  # no temp files left

    # an existing output is kept without --force, with a message and no traceback; --force replaces it
    before = out.read_bytes()
    p = _cli("export", str(src), "--to", "onnx", str(out), "--image-size", "64")
    assert p.returncode != 0 and "--force" in p.stderr and "Traceback" not in p.stderr
    assert out.read_bytes() == before
    p = _cli("export", str(src), "--to", "onnx", str(tmp_path / "r18.pt"))
    assert p.returncode != 0 and ".onnx" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r18.pt").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_timm_vit_fixed_size_dynamic_batch(tmp_path):
    kwargs = {"patch_size": 8, "depth": 2, "embed_dim": 64, "num_heads": 2}
    torch.manual_seed(1)
    model = _randomize_norms(create_backbone("vit_tiny_patch16_224", img_size=32, **kwargs), 1)
    src = tmp_path / "vit.safetensors"
    save_safetensors(model.state_dict(), src, {"format": "sslhub", "family": "timm", "arch": "vit_tiny_patch16_224",
                                               "img_size": "32", "timm_kwargs": json.dumps(kwargs),
                                               "backbone_prefix": ""})  # fmt: skip
    loaded = sslhub.load_pretrained(src)
    res = export_checkpoint(src, "onnx", tmp_path / "vit.onnx")  # size from the file: 32
    assert res.target == "onnx" and json.loads(res.kwargs["input_size"]) == [3, 32, 32]
    _same(res.path, loaded, 32)


def test_torchvision_vit_and_resnet_generator(tmp_path):
    sizes = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    tv = _randomize_norms(create_backbone("vit_b_16", img_size=32, **sizes), 2)
    st = tmp_path / "tv.safetensors"
    save_safetensors(tv.state_dict(), st, {"format": "sslhub", "family": "torchvision_vit", "arch": "vit_b_16",
                                           "img_size": "32", "timm_kwargs": json.dumps(sizes), "backbone_prefix": ""})  # fmt: skip
    _same(sslhub.export(st, "onnx", tmp_path / "tv.onnx"), tv, 32)

    # Lightly's ResNetGenerator has no torchvision/timm twin, but a graph needs none
    gen = _randomize_norms(create_backbone("resnet-9", width=0.25), 3)
    torch.save(gen.state_dict(), tmp_path / "gen.pth")
    res = export_checkpoint(tmp_path / "gen.pth", "onnx", tmp_path / "gen.onnx", arch="resnet-9", image_size=32)
    _same(res.path, gen, 32)


def test_refusals(tmp_path):
    with pytest.raises(ExportError, match="onnx only"):
        export_checkpoint(tmp_path / "x.pth", "timm", tmp_path / "x.safetensors", image_size=64)
