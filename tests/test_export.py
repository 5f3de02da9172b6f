"""``sslhub export``: every export is loaded back by its target library (torchvision, timm) or checked against
Detectron2's documented naming convention, and compared with the sslhub module on the same input."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torchvision
import yaml
from torch import nn

import sslhub
from sslhub.backbones import create_backbone
from sslhub.cli import main
from sslhub.checkpoints.io import save_safetensors
from sslhub.export import ExportError, export_checkpoint
from shared_data import import_detectron2

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
X224 = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def _randomize_norms(model: nn.Module, seed: int) -> nn.Module:
    # Untrained BN (mean 0, var 1, affine identity) would hide swapped or dropped norm tensors.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
            elif isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
    return model.eval()


def _source(tmp_path_factory: pytest.TempPathFactory, arch: str, seed: int) -> tuple[nn.Module, Path]:
    """An sslhub backbone and a plain state-dict file of it (the layout torchvision/timm users save)."""
    torch.manual_seed(seed)
    model = _randomize_norms(create_backbone(arch), seed)
    path = tmp_path_factory.mktemp(arch) / f"{arch}.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    return _source(tmp_path_factory, "resnet18", 18)


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    return _source(tmp_path_factory, "resnet50", 50)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    assert diff <= tol * max(1.0, b.abs().max().item()), diff


def _strict_meta_load(build, sd: dict[str, torch.Tensor]) -> nn.Module:
    """Build a big target model without random init and load ``sd`` strictly (keys and shapes checked)."""
    with torch.device("meta"):
        model = build()
    model.load_state_dict(sd, strict=True, assign=True)
    assert not [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    return model.eval()


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())
    return sd


# --- torchvision ------------------------------------------------------------------------------------------------


def test_torchvision_resnet18(r18, tmp_path):
    model, src = r18
    out = sslhub.export(src, "torchvision", tmp_path / "r18_tv.pth")
    assert out == tmp_path / "r18_tv.pth"
    sd = _load_torch(out)
    tv = torchvision.models.resnet18()
    result = tv.load_state_dict(sd, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and result.unexpected_keys == []
    tv.fc = nn.Identity()
    tv.load_state_dict(sd, strict=True)
    with torch.no_grad():
        _close(tv.eval()(X), model(X))


def test_torchvision_resnet50_into_fasterrcnn_body(r50, tmp_path):
    model, src = r50
    out = sslhub.export(src, "torchvision", tmp_path / "r50_tv.pth")
    sd = _load_torch(out)
    with torch.device("meta"):
        missing = torchvision.models.resnet50().load_state_dict(sd, strict=False, assign=True).missing_keys
    assert sorted(missing) == ["fc.bias", "fc.weight"]
    body = _strict_meta_load(
        lambda: torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).backbone.body,
        sd,
    )
    with torch.no_grad():
        c5 = body(X)["3"]  # layer4 output
        _close(c5.mean(dim=(2, 3)), model(X))


# --- timm --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_resnet18(r18, tmp_path, suffix):
    model, src = r18
    out = sslhub.export(src, "timm", tmp_path / f"r18_timm{suffix}")
    if suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(out), framework="pt") as f:
            assert f.metadata()["arch"] == "resnet18"
    # timm's own loader, strict by default
    tm = timm.create_model("resnet18", num_classes=0, checkpoint_path=str(out)).eval()
    sd = safetensors.torch.load_file(str(out)) if suffix == ".safetensors" else _load_torch(out)
    timm.create_model("resnet18", num_classes=0).load_state_dict(sd, strict=True)
    with torch.no_grad():
        _close(tm(X), model(X))


def test_timm_resnet50(r50, tmp_path):
    # Bottleneck stride placement (3x3 conv in both) is only proven by equal features.
    model, src = r50
    out = sslhub.export(src, "timm", tmp_path / "r50_timm.pth")
    tm = timm.create_model("resnet50", num_classes=0, checkpoint_path=str(out)).eval()
    with torch.no_grad():
        _close(tm(X), model(X))


# --- Detectron2 ------------------------------------------------------------------------------------------------


def _d2_name(tv_key: str) -> str:
    """Detectron2's published torchvision renaming (tools/convert-torchvision-to-d2.py), written out here."""
    k = tv_key
    if "layer" not in k:
        k = "stem." + k
    for t in (1, 2, 3, 4):
        k = k.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        k = k.replace(f"bn{t}", f"conv{t}.norm")
    return k.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:  # our own file, written by this test run
        return pickle.load(f, encoding="latin1")  # as DetectionCheckpointer reads it


BN = ["weight", "bias", "running_mean", "running_var"]
R18_EXPECTED = [
    "stem.conv1.weight", *[f"stem.conv1.norm.{s}" for s in BN],
    "res2.0.conv1.weight", *[f"res2.0.conv1.norm.{s}" for s in BN],
    "res2.0.conv2.weight", *[f"res2.0.conv2.norm.{s}" for s in BN],
    "res3.0.conv1.weight", *[f"res3.0.conv1.norm.{s}" for s in BN],
    "res3.0.conv2.weight", *[f"res3.0.conv2.norm.{s}" for s in BN],
    "res3.0.shortcut.weight", *[f"res3.0.shortcut.norm.{s}" for s in BN],
    "res5.1.conv2.weight",
]  # fmt: skip
R50_EXPECTED = [
    "stem.conv1.weight", *[f"stem.conv1.norm.{s}" for s in BN],
    "res2.0.conv1.weight", *[f"res2.0.conv1.norm.{s}" for s in BN],
    "res2.0.conv2.weight", *[f"res2.0.conv2.norm.{s}" for s in BN],
    "res2.0.conv3.weight", *[f"res2.0.conv3.norm.{s}" for s in BN],
    "res2.0.shortcut.weight", *[f"res2.0.shortcut.norm.{s}" for s in BN],
    "res5.2.conv3.norm.running_var",
]  # fmt: skip


@pytest.mark.parametrize("depth", [18, 50])
def test_detectron2_pkl_and_config(r18, r50, tmp_path, depth):
    model, src = r18 if depth == 18 else r50
    out = tmp_path / f"r{depth}_d2.pkl"
    assert sslhub.export(src, "detectron2", out) == out
    data = _unpickle(out)
    assert data["__author__"] == "sslhub" and data["matching_heuristics"] is True
    weights = data["model"]
    names = set(weights)
    assert set(R18_EXPECTED if depth == 18 else R50_EXPECTED) <= names
    if depth == 18:
        assert "res2.0.shortcut.weight" not in names  # BasicBlock 64->64: no projection in Detectron2 either
    assert not [k for k in names if "fc" in k.split(".") or k.endswith("num_batches_tracked")]
    assert not [k for k in names if re.search(r"layer\d|bn\d|downsample", k)]
    src_sd = model.state_dict()
    expected = {_d2_name(k): v for k, v in src_sd.items() if not k.endswith("num_batches_tracked")}
    assert names == set(expected)
    for k, v in weights.items():
        assert type(v).__module__ == "numpy" and v.dtype.name == "float32" and v.flags.writeable
        assert torch.equal(torch.from_numpy(v), expected[k].float()), k

    cfg = yaml.safe_load(out.with_suffix(".yaml").read_text())
    resnets = cfg["MODEL"]["RESNETS"]
    assert resnets["DEPTH"] == depth and resnets["STRIDE_IN_1X1"] is False
    assert resnets.get("RES2_OUT_CHANNELS") == (64 if depth == 18 else None)
    assert cfg["INPUT"]["FORMAT"] == "RGB"
    assert Path(cfg["MODEL"]["WEIGHTS"]) == out.resolve()
    # torchvision's published preprocessing for these architectures, on Detectron2's 0-255 scale
    ref = torchvision.models.get_model_weights(f"resnet{depth}").IMAGENET1K_V1.transforms()
    assert cfg["MODEL"]["PIXEL_MEAN"] == pytest.approx([255 * m for m in ref.mean])
    assert cfg["MODEL"]["PIXEL_STD"] == pytest.approx([255 * s for s in ref.std])


def test_detectron2_checkpointer_loads_it(r18, tmp_path):
    """Detectron2's own checkpointer and ResNet (the vendored source snapshot) reproduce the torchvision trunk."""
    import_detectron2()
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    model, src = r18
    out = sslhub.export(src, "detectron2", tmp_path / "r18.pkl")
    cfg = get_cfg()
    cfg.merge_from_file(str(out.with_suffix(".yaml")))
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    holder = nn.Module()
    holder.backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    DetectionCheckpointer(holder).load(cfg.MODEL.WEIGHTS)
    with torch.no_grad():
        _close(holder.backbone.eval()(X)["res5"].mean(dim=(2, 3)), model(X))


# --- ViTs ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tv_vit(tmp_path_factory):
    return _source(tmp_path_factory, "vit_b_16", 16)


def _headless_vit_b_16() -> nn.Module:
    m = torchvision.models.vit_b_16()
    m.heads = nn.Identity()
    return m


def test_vit_exports_torchvision_timm_and_back(tv_vit, tmp_path):
    model, src = tv_vit
    src_sd = model.state_dict()

    # torchvision -> torchvision: same tensors, strict into vit_b_16 with only the classifier missing
    sd = _load_torch(sslhub.export(src, "torchvision", tmp_path / "vit_tv.pth"))
    with torch.device("meta"):
        result = torchvision.models.vit_b_16().load_state_dict(sd, strict=False, assign=True)
    assert sorted(result.missing_keys) == ["heads.head.bias", "heads.head.weight"] and not result.unexpected_keys
    assert sd.keys() == src_sd.keys() and all(torch.equal(sd[k], src_sd[k]) for k in sd)
    del sd

    # torchvision -> timm: timm's own (strict) loader, same features
    timm_file = sslhub.export(src, "timm", tmp_path / "vit_timm.pth")
    tm = timm.create_model("vit_base_patch16_224", num_classes=0, checkpoint_path=str(timm_file)).eval()
    with torch.no_grad():
        _close(tm(X224), model(X224))  # different attention kernels: ~4e-6 measured
    del tm

    # timm -> torchvision, from that timm checkpoint: exactly the original torchvision tensors
    back = _load_torch(sslhub.export(timm_file, "torchvision", tmp_path / "vit_back.pth"))
    _strict_meta_load(_headless_vit_b_16, back)
    assert back.keys() == src_sd.keys() and all(torch.equal(back[k], src_sd[k]) for k in back)


def test_timm_models_without_torchvision_twin_are_refused(tmp_path):
    arch = "resnet10t"  # deep stem, avg-pool shortcut: no torchvision or Detectron2 ResNet computes this
    src = tmp_path / f"{arch}.pth"
    torch.save(timm.create_model(arch, num_classes=0).state_dict(), src)
    with pytest.raises(ExportError, match="torchvision") as e:
        sslhub.export(src, "torchvision", tmp_path / f"{arch}_tv.pth", arch=arch)
    assert "timm" in str(e.value)
    with pytest.raises(ExportError, match="Detectron2"):
        sslhub.export(src, "detectron2", tmp_path / f"{arch}.pkl", arch=arch)
    # ... while the timm export of the same file works and loads strictly
    out = sslhub.export(src, "timm", tmp_path / f"{arch}.safetensors", arch=arch)
    timm.create_model(arch, num_classes=0, checkpoint_path=str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{arch}.pth", f"{arch}.safetensors"])


def test_vit_sizes_without_a_torchvision_builder_export_as_vision_transformer(tmp_path):
    """A timm ViT-Tiny, and a torchvision ViT built with other sizes (sslhub's *-vit_b_16-tiny-* recipes), go to
    torchvision.models.VisionTransformer(...) with every size argument, and the torchvision one to timm as well."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    tiny = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, patch_size=4).eval()
    src = tmp_path / "tiny.pth"
    torch.save(tiny.state_dict(), src)
    res = export_checkpoint(src, "torchvision", tmp_path / "tiny_tv.pth", arch="vit_tiny_patch16_224")
    size = dict(image_size=32, patch_size=4, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768)
    assert (res.arch, res.kwargs) == ("VisionTransformer", size)
    assert "torchvision.models.VisionTransformer(image_size=32" in res.usage
    tv = torchvision.models.VisionTransformer(**size)
    missing = tv.load_state_dict(_load_torch(res.path), strict=False).missing_keys
    assert sorted(missing) == ["heads.head.bias", "heads.head.weight"]
    tv.heads = nn.Identity()
    with torch.no_grad():
        _close(tv.eval()(x), tiny(x))

    sizes = dict(patch_size=4, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128)
    model = _randomize_norms(create_backbone("vit_b_16", img_size=32, **sizes), 1).eval()
    st = tmp_path / "tv_custom.safetensors"
    save_safetensors(model.state_dict(), st, {"format": "sslhub", "family": "torchvision_vit", "arch": "vit_b_16",
                                              "img_size": "32", "timm_kwargs": json.dumps(sizes), "backbone_prefix": ""})  # fmt: skip
    res = export_checkpoint(st, "torchvision", tmp_path / "custom_tv.pth")
    assert (res.arch, res.kwargs) == ("VisionTransformer", {"image_size": 32, **sizes})
    sd = _load_torch(res.path)
    assert sd.keys() == model.state_dict().keys() and all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    res = export_checkpoint(st, "timm", tmp_path / "custom_timm.safetensors")
    assert res.arch == "vit_base_patch16_224"
    tm = timm.create_model(res.arch, num_classes=0, checkpoint_path=str(res.path), **res.kwargs).eval()
    with torch.no_grad():
        _close(tm(x), model(x))


# --- refusals and file handling -----------------------------------------------------------------------------------


def test_lightly_worker_checkpoint_is_refused_with_advice(tmp_path):
    lr = pytest.importorskip("lightly_refs")
    src = lr.save_worker_ckpt(lr.worker_model("resnet-18", 0.125, 16, 32), tmp_path / "checkpoint.ckpt")
    for to, out in (("torchvision", "a.pth"), ("timm", "a.safetensors"), ("detectron2", "a.pkl")):
        with pytest.raises(ExportError) as e:
            sslhub.export(src, to, tmp_path / out)
        msg = str(e.value)
        assert "ResNetGenerator" in msg and "load_pretrained" in msg and "max-pool" in msg and str(src) in msg
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.ckpt"]  # nothing written, no temp files left


def test_lightly_benchmark_checkpoint_exports_the_evaluated_backbone(tmp_path):
    # Lightly's DINO benchmark keeps the EMA teacher under ``backbone.`` (what its evals use) next to
    # ``student_backbone.``, heads and an online classifier: the export must carry the teacher only.
    lr = pytest.importorskip("lightly_refs")
    module = lr.benchmark_resnet_module("dino", "resnet18")
    lr.randomize_bn(module.student_backbone, seed=7)
    src = lr.save_benchmark_ckpt(module, tmp_path / "epoch=99.ckpt")
    out = sslhub.export(src, "torchvision", tmp_path / "teacher.pth")
    tv = torchvision.models.resnet18()
    tv.fc = nn.Identity()
    tv.load_state_dict(_load_torch(out), strict=True)
    with torch.no_grad():
        feats = tv.eval()(X)
        _close(feats, module.backbone(X))
        assert not torch.allclose(feats, module.student_backbone(X))
    weights = _unpickle(sslhub.export(src, "detectron2", tmp_path / "teacher.pkl"))["model"]
    ref = module.backbone.state_dict()
    assert torch.equal(torch.from_numpy(weights["res4.1.conv2.norm.running_var"]), ref["layer3.1.bn2.running_var"])


def test_outputs_are_protected(r18, tmp_path):
    _, src = r18
    out = tmp_path / "r18.pth"
    out.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="exists.*force"):
        sslhub.export(src, "torchvision", out)
    assert out.read_bytes() == b"keep me"
    before = src.read_bytes()
    with pytest.raises(ExportError, match="source"):
        sslhub.export(src, "torchvision", src, force=True)
    assert src.read_bytes() == before
    with pytest.raises(ExportError, match=r"\.pkl"):
        sslhub.export(src, "detectron2", tmp_path / "r18_d2.pth")
    with pytest.raises(ValueError, match="unknown export target"):
        sslhub.export(src, "tflite", tmp_path / "x.tflite")  # onnx is a target since issue 24
    sslhub.export(src, "torchvision", out, force=True)
    assert set(_load_torch(out)) == {k for k in torch.load(src, weights_only=True)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r18.pth"]


def test_sslhub_export_is_callable_after_submodule_import(r18, tmp_path):
    # ``import sslhub.export`` (done at the top of this file) binds the *module* to ``sslhub.export``; the
    # public call ``sslhub.export(src, to, out)`` must still work.
    import sslhub.export as export_module

    _, src = r18
    assert export_module(src, "timm", tmp_path / "a.pth") == tmp_path / "a.pth"
    assert sslhub.export(src, "timm", tmp_path / "b.pth") == tmp_path / "b.pth"
    assert export_module.export(src, "timm", tmp_path / "c.pth") == tmp_path / "c.pth"


def test_cli(r18, tmp_path, capsys):
    _, src = r18
    out = tmp_path / "cli_r18.pkl"
    assert main(["export", str(src), "--to", "detectron2", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "DEPTH: 18" in printed and "RES2_OUT_CHANNELS: 64" in printed and str(out) in printed
    assert _unpickle(out)["model"].keys() >= set(R18_EXPECTED)
    assert main(["export", str(src), "--to", "detectron2", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(src), "--to", "timm", str(tmp_path / "cli.safetensors"), "--force"]) == 0
    assert "timm.create_model('resnet18'" in capsys.readouterr().out
