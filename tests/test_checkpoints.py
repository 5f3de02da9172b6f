"""The checkpoint core against Lightly's own models and loaders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import sslhub
from sslhub.checkpoints.io import CheckpointError

lr = pytest.importorskip("lightly_refs")

X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))

WORKER_CASES = [
    ("resnet-9", 0.0625, 16, 32),
    ("resnet-18", 0.125, 32, 64),
    ("resnet-34", 0.0625, 8, 16),
    ("resnet-50", 0.0625, 32, 128),
    ("resnet-101", 0.03125, 8, 8),
]


@pytest.mark.parametrize("name,width,num_ftrs,out_dim", WORKER_CASES)
def test_worker_ckpt_matches_documented_loader(tmp_path, name, width, num_ftrs, out_dim):
    model = lr.worker_model(name, width, num_ftrs, out_dim)
    path = lr.save_worker_ckpt(model, tmp_path / "checkpoint.ckpt")
    ref = lr.documented_worker_loader(path, name, width)
    ours = sslhub.load_pretrained(path)  # no arch/width: inferred from the tensors
    assert ours.pretrained_cfg["arch"] == name and ours.pretrained_cfg["width"] == width
    assert not ours.training
    with torch.no_grad():
        a, b = ref(X), ours(X)
    assert a.shape == b.shape == (3, ours.num_features)
    assert (a - b).abs().max().item() <= 1e-6
    # features="embedding" keeps backbone.7 and reproduces lightly-embed's num_ftrs-d output
    emb = sslhub.load_pretrained(path, features="embedding")
    with torch.no_grad():
        full = model.backbone(X).reshape(3, -1)
        assert emb.num_features == num_ftrs
        assert (emb(X) - full).abs().max().item() <= 1e-6


def test_genuine_cli_ckpt_and_roundtrip_is_bit_identical(tmp_path):
    name, width, num_ftrs, out_dim = "resnet-18", 0.125, 32, 64
    model = lr.worker_model(name, width, num_ftrs, out_dim)
    src = lr.save_worker_ckpt(model, tmp_path / "lightly_epoch_3.ckpt", genuine_cli=True)
    st = sslhub.convert(src, tmp_path / "model.safetensors")
    back = sslhub.convert(st, tmp_path / "back.ckpt")
    a = torch.load(src, weights_only=True)["state_dict"]
    b_obj = torch.load(back, weights_only=True)
    b = b_obj["state_dict"]
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert b_obj["epoch"] == 3 and b_obj["pytorch-lightning_version"] == "2.6.6"
    # what comes back loads in Lightly's own loaders: the documented one and the CLI's strict one
    ref = lr.documented_worker_loader(back, name, width)
    cli = lr.cli_strict_load(back, name, width, num_ftrs, out_dim)
    with torch.no_grad():
        assert torch.equal(cli.backbone(X), model.backbone(X))
        ours = sslhub.load_pretrained(st)
        assert (ours(X) - ref(X)).abs().max() <= 1e-6
    meta = sslhub.info(st)["metadata"]
    for key in ("layout", "arch", "width", "num_ftrs", "out_dim", "method", "source_sha256", "sslhub_version"):
        assert key in meta, key
    assert meta["num_ftrs"] == "32" and meta["out_dim"] == "64" and meta["arch"] == "resnet-18"


def test_legacy_features_layout(tmp_path):
    """lightly <= 1.0.5: ``model.features.N`` and an unlayered projection head."""
    model = lr.worker_model("resnet-9", 0.125, 16, 32)
    sd = {}
    for k, v in model.state_dict(prefix="model.").items():
        k = k.replace("model.backbone.", "model.features.").replace("projection_head.layers.", "projection_head.")
        sd[k] = v
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": sd}, path)
    cli = lr.cli_strict_load(path, "resnet-9", 0.125, 16, 32)  # Lightly itself accepts it
    ours = sslhub.load_pretrained(path)
    ref = nn.Sequential(*list(cli.backbone.children())[:7], nn.AdaptiveAvgPool2d(1), nn.Flatten(1)).eval()
    with torch.no_grad():
        assert torch.equal(ours(X), ref(X))
    assert ours.pretrained_cfg["layout"] == "lightly-worker-legacy"


@pytest.mark.parametrize("method", ["simclr", "moco", "byol", "dino", "swav"])
def test_benchmark_resnet_ckpt_uses_eval_backbone(tmp_path, method):
    module = lr.benchmark_resnet_module(method, "resnet18")
    path = lr.save_benchmark_ckpt(module, tmp_path / "epoch=99-step=500400.ckpt")
    with pytest.raises(Exception):  # the numpy scalars really are outside torch's default allowlist
        torch.load(path, weights_only=True)
    ours = sslhub.load_pretrained(path)
    assert ours.pretrained_cfg["layout"] == "lightly-benchmark"
    assert ours.pretrained_cfg["arch"] == "resnet18"
    assert ours.pretrained_cfg.get("method") == (None if method == "simclr" else method)
    with torch.no_grad():
        assert torch.equal(ours(X), module.backbone(X))  # `backbone.` is what forward() and the evals use
        other = next((getattr(module, n) for n in ("key_backbone", "teacher_backbone", "student_backbone") if hasattr(module, n)), None)
        if other is not None:
            assert not torch.equal(ours(X), other(X))


def test_benchmark_resnet50_and_explicit_prefix(tmp_path):
    module = lr.benchmark_resnet_module("dino", "resnet50")
    path = lr.save_benchmark_ckpt(module, tmp_path / "dino.ckpt")
    info = sslhub.info(path)
    assert info["arch"] == "resnet50" and info["feature_dim"] == 2048
    assert "student_backbone." in info["other_backbones"]
    assert {"projection_head", "online_classifier", "criterion"} <= set(info["heads"])
    student = sslhub.load_pretrained(path, prefix="student_backbone")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(student(x), module.student_backbone(x))


def _vit(**kw):
    import timm

    return timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=64, **kw)


def test_benchmark_vit_mae_and_ibot(tmp_path):
    from lightly.models.modules import MaskedVisionTransformerTIMM

    x = torch.randn(2, 3, 64, 64)
    # MAE: backbone = MaskedVisionTransformerTIMM(vit) -> backbone.mask_token + backbone.vit.*
    m = nn.Module()
    m.backbone = MaskedVisionTransformerTIMM(vit=_vit())
    m.decoder = nn.Linear(192, 8)
    m.online_classifier = nn.Linear(192, 10)
    path = lr.save_benchmark_ckpt(m.eval(), tmp_path / "mae.ckpt")
    ours = sslhub.load_pretrained(path)
    assert ours.pretrained_cfg["arch"] == "vit_tiny_patch16_224" and ours.pretrained_cfg["img_size"] == 64 and ours.num_features == 192
    with torch.no_grad():
        assert (ours(x) - m.backbone(x)).abs().max() <= 1e-5
    # iBOT: only teacher_backbone.vit. / student_backbone.vit., with LayerScale
    m = nn.Module()
    m.teacher_backbone = MaskedVisionTransformerTIMM(vit=_vit(init_values=1e-5))
    m.student_backbone = MaskedVisionTransformerTIMM(vit=_vit(init_values=1e-5))
    path = lr.save_benchmark_ckpt(m.eval(), tmp_path / "ibot.ckpt")
    ours = sslhub.load_pretrained(path)
    assert ours.pretrained_cfg["backbone_prefix"] == "teacher_backbone.vit."
    with torch.no_grad():
        assert (ours(x) - m.teacher_backbone(x)).abs().max() <= 1e-5


def test_plain_state_dicts(tmp_path):
    import timm
    import torchvision

    tv = torchvision.models.resnet18()
    lr.randomize_bn(tv)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    ours = sslhub.load_pretrained(tmp_path / "r18.pth")
    tv.fc = nn.Identity()
    with torch.no_grad():
        assert torch.equal(ours(X), tv.eval()(X))
    vit = timm.create_model("vit_small_patch16_224", num_classes=0, img_size=48).eval()
    torch.save({"model": vit.state_dict()}, tmp_path / "vit.pth")
    ours = sslhub.load_pretrained(tmp_path / "vit.pth")
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(ours(x), vit(x))
    tvit = torchvision.models.vit_b_16(image_size=32).eval()
    torch.save(tvit.state_dict(), tmp_path / "tvit.pth")
    ours = sslhub.load_pretrained(tmp_path / "tvit.pth")
    tvit.heads = nn.Identity()
    with torch.no_grad():
        assert torch.equal(ours(X), tvit(X))


def test_unrecognised_architecture_asks_for_arch(tmp_path):
    import timm

    cnx = timm.create_model("convnext_atto", num_classes=0).eval()
    path = tmp_path / "convnext.pth"
    torch.save(cnx.state_dict(), path)
    with pytest.raises(CheckpointError, match="arch="):
        sslhub.load_pretrained(path)
    ours = sslhub.load_pretrained(path, arch="convnext_atto")
    with torch.no_grad():
        assert torch.equal(ours(X), cnx(X))


def test_contradicting_arch_and_width_name_the_file(tmp_path):
    path = lr.save_worker_ckpt(lr.worker_model("resnet-18", 0.125, 16, 16), tmp_path / "c.ckpt")
    with pytest.raises(CheckpointError, match=r"c\.ckpt holds .*resnet-18.*arch='resnet-50'"):
        sslhub.load_pretrained(path, arch="resnet-50")
    with pytest.raises(CheckpointError, match="width=0.125"):
        sslhub.load_pretrained(path, width=1.0)
    with pytest.raises(CheckpointError, match="embedding"):
        sslhub.load_pretrained(lr.save_benchmark_ckpt(lr.benchmark_resnet_module(), tmp_path / "b.ckpt"), features="embedding")


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    obj = {"state_dict": {"w": torch.zeros(1)}, "payload": _Evil(str(marker))}
    if legacy:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)
    for fn in (sslhub.load_pretrained, sslhub.info, lambda p: sslhub.convert(p, tmp_path / "o.safetensors")):
        with pytest.raises(CheckpointError, match="evil.ckpt.*never unpickles"):
            fn(path)
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


def test_numpy_objects_other_than_scheduler_scalars_are_refused(tmp_path):
    import numpy as np

    path = tmp_path / "np.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "arr": np.arange(3)}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        sslhub.load_pretrained(path)


def test_bad_inputs_get_clear_errors(tmp_path):
    good = lr.save_worker_ckpt(lr.worker_model("resnet-9", 0.0625, 8, 8), tmp_path / "good.ckpt")
    data = good.read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.ckpt").write_text("hello, not a checkpoint\n")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    torch.save({"state_dict": {}}, tmp_path / "nosd.ckpt")
    torch.save({"epoch": 1}, tmp_path / "noweights.ckpt")
    st = sslhub.convert(good, tmp_path / "good.safetensors")
    (tmp_path / "trunc.safetensors").write_bytes(st.read_bytes()[:-100])
    (tmp_path / "folder").mkdir()
    cases = {
        "trunc.ckpt": "truncated",
        "text.ckpt": "is a text file, not a checkpoint",
        "empty.ckpt": "empty",
        "nosd.ckpt": "empty state dict",
        "noweights.ckpt": "no state dict of tensors",
        "trunc.safetensors": "it is truncated",
        "folder": "is a directory",
        "missing.ckpt": "no such file",
    }
    for name, msg in cases.items():
        with pytest.raises(CheckpointError, match=msg) as e:
            sslhub.load_pretrained(tmp_path / name)
        assert name in str(e.value)


def test_convert_refuses_overwrite_and_same_file_and_is_atomic(tmp_path):
    src = lr.save_worker_ckpt(lr.worker_model("resnet-9", 0.0625, 8, 8), tmp_path / "a.ckpt")
    before = src.read_bytes()
    with pytest.raises(CheckpointError, match="same file"):
        sslhub.convert(src, src, force=True)
    dst = sslhub.convert(src, tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="--force"):
        sslhub.convert(src, dst)
    sslhub.convert(src, dst, force=True)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt", "a.safetensors"]  # no temp files left


def test_safetensors_load_reads_no_flags_and_matches(tmp_path):
    module = lr.benchmark_resnet_module("byol", "resnet18")
    src = lr.save_benchmark_ckpt(module, tmp_path / "byol.ckpt")
    st = sslhub.convert(src, tmp_path / "byol.safetensors")
    from safetensors.torch import load_file

    tensors = load_file(st)
    assert set(tensors) == set(module.state_dict())  # benchmark -> safetensors keeps every tensor
    ours = sslhub.load_pretrained(st)
    with torch.no_grad():
        assert torch.equal(ours(X), module.backbone(X))


def test_cli_info_and_convert(tmp_path):
    src = lr.save_worker_ckpt(lr.worker_model("resnet-18", 0.0625, 16, 16), tmp_path / "w.ckpt")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = lambda *a: subprocess.run([sys.executable, "-m", "sslhub", *a], capture_output=True, text=True, env=env)  # noqa: E731
    r = run("convert", str(src), str(tmp_path / "w.safetensors"))
    assert r.returncode == 0, r.stderr
    r = run("info", str(tmp_path / "w.safetensors"), "--json")
    assert r.returncode == 0 and '"arch": "resnet-18"' in r.stdout and '"feature_dim": 32' in r.stdout
    r = run("convert", str(src), str(tmp_path / "w.safetensors"))
    assert r.returncode == 2 and "--force" in r.stderr and "Traceback" not in r.stderr


def test_import_is_lazy():
    code = "import sys, sslhub; print(sorted(m for m in ('torchvision','timm','safetensors','huggingface_hub') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_vit_tokens_and_avg_pool_without_cls_token(tmp_path):
    import timm

    x = torch.randn(2, 3, 32, 32)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, patch_size=4).eval()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    small = sslhub.load_pretrained(tmp_path / "vit.pth")  # patch 4 has no registered timm name: kwargs carry it
    assert small.pretrained_cfg["patch_size"] == 4 and small.pretrained_cfg["img_size"] == 32
    with torch.no_grad():
        assert torch.equal(small(x), vit(x))
    # AIM-style: no class token, average pool, final norm before pooling (no fc_norm)
    aim = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, class_token=False,
                            global_pool="avg", fc_norm=False).eval()  # fmt: skip
    torch.save(aim.state_dict(), tmp_path / "aim.pth")
    ours = sslhub.load_pretrained(tmp_path / "aim.pth")
    tokens = sslhub.load_pretrained(tmp_path / "aim.pth", features="tokens")
    with torch.no_grad():
        assert torch.equal(ours(x), aim(x))
        assert torch.equal(tokens(x), aim.forward_features(x)) and tokens(x).shape == (2, 4, 192)
    with pytest.raises(CheckpointError, match="tokens"):
        sslhub.load_pretrained(lr.save_worker_ckpt(lr.worker_model("resnet-9", 0.0625, 8, 8), tmp_path / "w.ckpt"), features="tokens")


def test_bare_backbone_to_ckpt_gets_the_worker_prefix(tmp_path):
    """A published ResNetGenerator backbone (no prefix) converts to a .ckpt that Lightly's loader reads."""
    model = lr.worker_model("resnet-18", 0.0625, 16, 16)
    bare = {k[len("backbone."):]: v for k, v in model.state_dict().items()
            if k.startswith("backbone.") and not k.startswith("backbone.7.")}  # fmt: skip
    torch.save(bare, tmp_path / "bare.pth")
    st = sslhub.convert(tmp_path / "bare.pth", tmp_path / "bare.safetensors")
    ckpt = sslhub.convert(st, tmp_path / "back.ckpt")
    assert all(k.startswith("model.backbone.") for k in torch.load(ckpt, weights_only=True)["state_dict"])
    ref = lr.documented_worker_loader(ckpt, "resnet-18", 0.0625)
    with torch.no_grad():
        assert torch.equal(ref(X), sslhub.load_pretrained(st)(X))
