"""DINOv3 (release ViT/ConvNeXt and timm files), I-JEPA, MSN, DINOv2 ViT-g and LightlyTrain files load with no flags,
with the features of the upstream's own evaluation model, and convert/export onward.

Fixtures (tests/upstream_fixtures_2026.py) rebuild each upstream's on-disk form key for key at tiny sizes, with an
independent reference forward written from the upstream's model code.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch
import upstream_fixtures_2026 as uf26
from shared_data import ROOT
from torch import nn

import sslhub
from sslhub.checkpoints.io import read_safetensors
from sslhub.export import export_checkpoint

X = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(0))  # non-square: RoPE's two axes differ
TOL = 1e-5


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max() / b.abs().max())


def _f(model: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


DINOV3_VIT = {
    "qkv-bias": dict(),  # random q/v biases (k masked): timm's _qkvb model
    "zero-bias": dict(zero_qkv_bias=True),  # the distilled releases: timm's plain model
    "swiglu": dict(swiglu=True, ffn_ratio=6.0),  # ViT-S+/H+/7B
}


@pytest.mark.parametrize("case", list(DINOV3_VIT))
def test_dinov3_release_vit_matches_dinov3_forward(case, tmp_path):
    path, ref = uf26.dinov3_vit(tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth", **DINOV3_VIT[case])
    model = sslhub.load_pretrained(path)
    cfg = model.pretrained_cfg
    assert cfg["layout"] == "dinov3" and cfg["timm_kwargs"]["global_pool"] == "token"
    assert cfg["arch"].endswith("_qkvb") == (case != "zero-bias")
    assert ("small_plus" in cfg["arch"]) == (case == "swiglu")
    assert _rel(_f(model), _f(ref)) <= TOL
    info = sslhub.info(path)
    assert info["upstream"] == "facebookresearch/dinov3" and info["variant"] == "release file"
    assert "mask_token" in info["dropped"] and any("RoPE periods" in f for f in info["facts"])


def test_dinov3_keeps_the_files_bf16_rope_periods(tmp_path):
    """timm's own loader (checkpoint_filter_fn) recomputes the periods in fp32: ~1e-3 off DINOv3's forward here;
    with the file's periods put back, timm's model is DINOv3's exactly, and so is sslhub's."""
    from timm.models.eva import checkpoint_filter_fn

    path, ref = uf26.dinov3_vit(tmp_path / "v.pth")
    ours = sslhub.load_pretrained(path)
    arch, kw = ours.pretrained_cfg["arch"], ours.pretrained_cfg["timm_kwargs"]
    tm = timm.create_model(arch, num_classes=0, **kw).eval()
    tm.load_state_dict(checkpoint_filter_fn(torch.load(path, weights_only=True), tm), strict=True)
    assert _rel(_f(tm), _f(ref)) > 1e-4  # the fp32 periods move the features
    with torch.no_grad():
        tm.rope.periods.copy_(torch.load(path, weights_only=True)["rope_embed.periods"].float())
    assert _rel(_f(tm), _f(ref)) <= TOL
    assert _rel(_f(ours), _f(tm)) <= TOL


def test_dinov3_timm_file_loads_with_release_periods(tmp_path):
    """A timm ``vit_*_dinov3`` state dict (no periods, timm key names) gets the bf16 periods of the release."""
    from timm.models.eva import checkpoint_filter_fn

    path, ref = uf26.dinov3_vit(tmp_path / "v.pth", swiglu=True, ffn_ratio=6.0)
    arch_kw = sslhub.load_pretrained(path).pretrained_cfg
    tm = timm.create_model(arch_kw["arch"], num_classes=0, **arch_kw["timm_kwargs"])
    tm.load_state_dict(checkpoint_filter_fn(torch.load(path, weights_only=True), tm), strict=True)
    timm_file = tmp_path / "pytorch_model.pth"
    torch.save(tm.state_dict(), timm_file)
    assert "rope.periods" not in torch.load(timm_file, weights_only=True)
    model = sslhub.load_pretrained(timm_file)
    assert model.pretrained_cfg["layout"] == "dinov3" and model.pretrained_cfg["arch"] == arch_kw["arch"]
    assert sslhub.info(timm_file)["variant"] == "timm vit_*_dinov3 state dict"
    assert _rel(_f(model), _f(ref)) <= TOL


def test_dinov3_convnext_release_matches_dinov3_forward(tmp_path):
    path, ref = uf26.dinov3_convnext(tmp_path / "dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth")
    model = sslhub.load_pretrained(path)
    assert model.pretrained_cfg["layout"] == "dinov3-convnext" and model.pretrained_cfg["arch"] == "convnext_tiny"
    assert _rel(_f(model), _f(ref)) <= TOL
    assert sslhub.info(path)["dropped"] == ["norms"]


def test_dinov3_convnext_real_tiny_size_is_named(tmp_path):
    """At the released ConvNeXt-T sizes the plain timm name is used (no size overrides)."""
    path, _ref = uf26.dinov3_convnext(tmp_path / "cnt.pth", depths=(3, 3, 9, 3), dims=(96, 192, 384, 768))
    state = sslhub.load_pretrained(path).pretrained_cfg
    assert state["arch"] == "convnext_tiny" and not state["timm_kwargs"]


@pytest.mark.parametrize("case", ["vit", "convnext"])
def test_dinov3_convert_and_export_timm(case, tmp_path):
    from timm.models.convnext import checkpoint_filter_fn as cn_filter
    from timm.models.eva import checkpoint_filter_fn as eva_filter

    if case == "vit":
        path, ref = uf26.dinov3_vit(tmp_path / "v.pth")
    else:
        path, ref = uf26.dinov3_convnext(tmp_path / "c.pth")
    want = _f(ref)
    st = sslhub.convert(path, tmp_path / "model.safetensors")
    _t, meta = read_safetensors(st)
    assert meta["layout"] == ("dinov3" if case == "vit" else "dinov3-convnext") and meta["source_name"] == path.name
    assert _rel(_f(sslhub.load_pretrained(st)), want) <= TOL
    tm = export_checkpoint(path, "timm", tmp_path / "timm.safetensors")
    exported = timm.create_model(tm.arch, num_classes=0, checkpoint_path=str(tm.path), **tm.kwargs).eval()
    # timm's own reading of the release file (its checkpoint_filter_fn) gives the same model
    own = timm.create_model(tm.arch, num_classes=0, **tm.kwargs).eval()
    filt = eva_filter if case == "vit" else cn_filter
    own.load_state_dict(filt(torch.load(path, weights_only=True), own), strict=True)
    assert _rel(_f(exported), _f(own)) <= TOL
    # ViT: timm recomputes the RoPE periods in fp32, the one difference from DINOv3's forward
    assert _rel(_f(exported), want) <= (5e-3 if case == "vit" else TOL)


def test_cli_info_names_the_dinov3_reader(tmp_path):
    path, _ref = uf26.dinov3_vit(tmp_path / "v.pth")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "sslhub", "info", "--json", str(path)], capture_output=True, text=True,
                       env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["layout"] == "dinov3" and out["upstream"] == "facebookresearch/dinov3"
    assert out["variant"] == "release file" and out["feature_dim"] == 128


# --- DINOv2 ViT-g/14: SwiGLU ------------------------------------------------------------------------------------------

X56 = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("registers", [False, True], ids=["vitg14", "vitg14-reg4"])
def test_dinov2_swiglu_vit_loads_with_no_flags(registers, tmp_path):
    """ViT-g's SwiGLU FFN at a tiny width (the tensors are the same kind as at 1536 dim): used to be refused."""
    path, ref = uf26.dinov2_giant(tmp_path / "dinov2_vitg14_pretrain.pth", registers=registers)
    model = sslhub.load_pretrained(path)
    cfg = model.pretrained_cfg
    assert cfg["layout"] == "dinov2" and cfg["arch"] == f"vit_giant_patch14{'_reg4' if registers else ''}_dinov2"
    assert cfg["timm_kwargs"]["num_heads"] == 2 and cfg["img_size"] == 56
    assert _rel(_f(model, X56), _f(ref, X56)) <= TOL
    if registers:
        st = sslhub.convert(path, tmp_path / "g.safetensors")
        assert _rel(_f(sslhub.load_pretrained(st), X56), _f(ref, X56)) <= TOL
        tm = export_checkpoint(path, "timm", tmp_path / "timm.pth")
        exported = timm.create_model(tm.arch, num_classes=0, checkpoint_path=str(tm.path), **tm.kwargs)
        assert _rel(_f(exported, X56), _f(ref, X56)) <= TOL


@pytest.mark.slow
def test_dinov2_vitg14_at_real_size(tmp_path):
    """The real ViT-g/14 (1536 dim, 40 blocks, 24 heads, SwiGLU hidden 4096; 1.1B parameters, 4.5 GB in fp32) at a
    56-px grid. About 1 minute on 2 busy cores, ~10 GB resident (the loaded model maps the file)."""
    path, ref = uf26.dinov2_giant(tmp_path / "dinov2_vitg14_pretrain.pth", tiny=False)
    model = sslhub.load_pretrained(path)
    cfg = model.pretrained_cfg
    assert cfg["arch"] == "vit_giant_patch14_dinov2" and cfg["timm_kwargs"] == {}
    assert sum(p.numel() for p in model.parameters()) == 1_134_401_024
    assert _rel(_f(model, X56), _f(ref, X56)) <= TOL
    del model, ref
    path.unlink()


# --- I-JEPA and MSN ---------------------------------------------------------------------------------------------------

X64 = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("ddp", [True, False], ids=["module", "no-module"])
def test_ijepa_training_file_evaluates_the_target_encoder(ddp, tmp_path):
    path, target, online = uf26.ijepa(tmp_path / "IN1K-vit.h.14-300e.pth.tar", ddp=ddp)
    model = sslhub.load_pretrained(path)
    cfg = model.pretrained_cfg
    assert cfg["layout"] == "ijepa" and cfg["backbone_prefix"] == ("target_encoder.module." if ddp else "target_encoder.")
    assert cfg["timm_kwargs"] == {"class_token": False, "global_pool": "avg", "fc_norm": False}
    assert _rel(_f(model, X64), _f(target, X64)) <= TOL
    assert _rel(_f(model, X64), _f(online, X64)) > 1e-2  # the online encoder would be another model
    info = sslhub.info(path)
    assert info["dropped"] == ["encoder", "predictor"] and "target_encoder" in info["evaluation_copy"]
    # the online encoder stays reachable by name
    enc = sslhub.load_pretrained(path, prefix="encoder.module." if ddp else "encoder.")
    assert _rel(_f(enc, X64), _f(online, X64)) <= TOL


def test_msn_file_evaluates_target_encoder_without_fc(tmp_path):
    path, target = uf26.msn(tmp_path / "vits16_800ep.pth.tar")
    model = sslhub.load_pretrained(path)
    assert model.pretrained_cfg["layout"] == "msn" and model.pretrained_cfg["backbone_prefix"] == "target_encoder.module."
    assert _rel(_f(model, X64), _f(target, X64)) <= TOL
    assert set(sslhub.info(path)["dropped"]) == {"encoder", "prototypes", "target_encoder.module.fc"}


@pytest.mark.parametrize("case", ["ijepa", "msn"])
def test_ijepa_msn_convert_and_export_timm(case, tmp_path):
    if case == "ijepa":
        path, ref, _online = uf26.ijepa(tmp_path / "jepa-latest.pth.tar")
    else:
        path, ref = uf26.msn(tmp_path / "msn.pth.tar")
    want = _f(ref, X64)
    st = sslhub.convert(path, tmp_path / "model.safetensors")
    _t, meta = read_safetensors(st)
    assert meta["layout"] == case and meta["backbone_prefix"] == "target_encoder.module."
    assert _rel(_f(sslhub.load_pretrained(st), X64), want) <= TOL
    tm = export_checkpoint(path, "timm", tmp_path / "timm.pth")
    exported = timm.create_model(tm.arch, num_classes=0, checkpoint_path=str(tm.path), **tm.kwargs)
    assert _rel(_f(exported, X64), want) <= TOL


@pytest.mark.slow
def test_msn_vitl16_and_dinov3_vitb16_at_real_size(tmp_path):
    """Real ViT-L/16 (MSN's vitl16_600ep: 1024 dim, 24 blocks, 16 heads) and ViT-B/16 (DINOv3 vitb16: 768 dim, 12
    blocks, 12 heads, RoPE, 4 storage tokens) against the reference forwards, on a 64-px grid."""
    path, ref = uf26.msn(tmp_path / "vitl16_600ep.pth.tar", dim=1024, depth=24, heads=16)
    model = sslhub.load_pretrained(path)
    assert model.pretrained_cfg["arch"] == "vit_large_patch16_224" and model.pretrained_cfg["img_size"] == 64
    assert _rel(_f(model, X64), _f(ref, X64)) <= TOL
    del model, ref
    path.unlink()
    path, ref = uf26.dinov3_vit(tmp_path / "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth", dim=768, depth=12, heads=12,
                                zero_qkv_bias=True)  # fmt: skip
    model = sslhub.load_pretrained(path)
    assert model.pretrained_cfg["arch"] == "vit_base_patch16_dinov3"
    assert model.pretrained_cfg["timm_kwargs"] == {"global_pool": "token"}
    assert _rel(_f(model), _f(ref)) <= TOL


# --- LightlyTrain checkpoints/last.ckpt -------------------------------------------------------------------------------

X224 = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(6))


@pytest.mark.parametrize("method,prefix", [("dinov2", "teacher_embedding_model.wrapped_model._model."),
                                           ("distillation", "student_embedding_model.wrapped_model._features."),
                                           ("simclr", "embedding_model.wrapped_model._features.")])  # fmt: skip
def test_lightly_train_last_ckpt_loads_the_exported_copy(method, prefix, tmp_path):
    from sslhub.checkpoints.io import CheckpointError  # noqa: F401  (the refusal type, for the check below)

    path, ref = uf26.lightly_train_ckpt(tmp_path / "last.ckpt", method=method)
    with pytest.raises(Exception, match="Weights only load failed"):  # what torch alone says of this file
        torch.load(path, weights_only=True)
    model = sslhub.load_pretrained(path)
    cfg = model.pretrained_cfg
    assert cfg["layout"] == "lightly-train" and cfg["backbone_prefix"] == prefix
    assert cfg["arch"] == ("vit_small_patch14_reg4_dinov2" if method == "dinov2" else "resnet18")
    x = X224 if method == "dinov2" else X64
    assert _rel(_f(model, x), _f(ref, x)) <= TOL
    info = sslhub.info(path)
    assert info["upstream"] == "lightly-ai/lightly-train" and info["lightning"]["epoch"] == 99
    if method == "dinov2":
        assert {"student_embedding_model", "teacher_dino_head"} <= set(info["dropped"])


def test_lightly_train_pickled_code_never_runs(tmp_path):
    """A REDUCE of os.system inside ``lightly_train`` becomes an inert placeholder: the weights load, nothing runs.
    The same payload anywhere else is refused as before."""
    import os

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path, ref = uf26.lightly_train_ckpt(tmp_path / "last.ckpt", method="simclr", payload=Evil())
    model = sslhub.load_pretrained(path)
    assert _rel(_f(model, X64), _f(ref, X64)) <= TOL
    assert not marker.exists()
    other, _ref = uf26.lightly_train_ckpt(tmp_path / "other.ckpt", method="simclr", extra={"hyper_parameters": Evil()})
    from sslhub.checkpoints.io import CheckpointError

    with pytest.raises(CheckpointError, match=r"system under 'hyper_parameters'"):
        sslhub.load_pretrained(other)
    assert not marker.exists()


def test_lightly_train_convert_export_and_cli_info(tmp_path):
    path, ref = uf26.lightly_train_ckpt(tmp_path / "last.ckpt", method="dinov2")
    want = _f(ref, X224)
    st = sslhub.convert(path, tmp_path / "model.safetensors")
    _t, meta = read_safetensors(st)
    assert meta["layout"] == "lightly-train" and "lightly_train" not in json.loads(meta.get("extras", "{}"))
    assert _rel(_f(sslhub.load_pretrained(st), X224), want) <= TOL
    tm = export_checkpoint(path, "timm", tmp_path / "timm.pth")
    exported = timm.create_model(tm.arch, num_classes=0, checkpoint_path=str(tm.path), **tm.kwargs)
    assert _rel(_f(exported, X224), want) <= TOL
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "sslhub", "info", "--json", str(path)], capture_output=True, text=True,
                       env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["layout"] == "lightly-train" and out["backbone_prefix"] == "teacher_embedding_model.wrapped_model._model."


@pytest.mark.parametrize("dim,depth,patch,img,mlp", [(1280, 32, 14, 224, 5120), (1280, 32, 16, 448, 5120),
                                                     (1408, 40, 16, 224, 6144)],
                         ids=["IN1K-vit.h.14", "IN1K-vit.h.16-448px", "IN22K-vit.g.16"])  # fmt: skip
def test_ijepa_released_sizes_build_with_16_heads(dim, depth, patch, img, mlp):
    """The released I-JEPA encoders (ijepa vit_huge / vit_giant: 16 heads), as shapes on the meta device: the
    tensors name a model that takes them strictly, with I-JEPA's heads (no weights are made)."""
    from sslhub.backbones import create_backbone
    from sslhub.checkpoints.layouts import detect

    g = img // patch
    shapes = {"patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,),
              "pos_embed": (1, g * g, dim), "norm.weight": (dim,), "norm.bias": (dim,)}  # fmt: skip
    for i in range(depth):
        shapes.update({f"blocks.{i}.norm1.weight": (dim,), f"blocks.{i}.norm1.bias": (dim,),
                       f"blocks.{i}.attn.qkv.weight": (3 * dim, dim), f"blocks.{i}.attn.qkv.bias": (3 * dim,),
                       f"blocks.{i}.attn.proj.weight": (dim, dim), f"blocks.{i}.attn.proj.bias": (dim,),
                       f"blocks.{i}.norm2.weight": (dim,), f"blocks.{i}.norm2.bias": (dim,),
                       f"blocks.{i}.mlp.fc1.weight": (mlp, dim), f"blocks.{i}.mlp.fc1.bias": (mlp,),
                       f"blocks.{i}.mlp.fc2.weight": (dim, mlp), f"blocks.{i}.mlp.fc2.bias": (dim,)})  # fmt: skip
    sd = {f"target_encoder.module.{k}": torch.empty(s, device="meta") for k, s in shapes.items()}
    sd["predictor.module.mask_token"] = torch.empty(1, 1, 384, device="meta")
    det = detect(sd, "ijepa.pth.tar")
    assert det.layout == "ijepa" and det.spec.timm_kwargs["class_token"] is False
    model = create_backbone(meta=True, **det.spec.kwargs())
    model.load_state_dict({k: torch.empty(s, device="meta") for k, s in shapes.items()}, strict=True, assign=True)
    assert model.blocks[0].attn.num_heads == 16 and model.global_pool == "avg"
