"""Checkpoints in other SSL projects' exact on-disk forms load with no flags, with the features of the upstream's
own evaluation model, convert to sslhub safetensors and export to torchvision, timm and Detectron2.

Fixtures (tests/upstream_fixtures.py) are written with random weights the way each upstream's code writes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
import torchvision
from torch import nn

import sslhub
import upstream_fixtures as uf
from shared_data import ROOT, import_detectron2
from sslhub.checkpoints.io import CheckpointError, read_safetensors
from sslhub.export import ExportError

X64 = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
X32 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
X224 = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
X518 = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(3))
TOL = 1e-5


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


# (id, writer(tmp) -> (path, reference model), layout, evaluation prefix, input)
CASES = {
    "moco-v2": (lambda d: uf.moco_v2(d / "moco_v2_800ep_pretrain.pth.tar", "resnet18"), "moco-v2", "module.encoder_q.", X64),
    "moco-v3-resnet": (lambda d: uf.moco_v3(d / "r-50-1000ep.pth.tar", "resnet18"), "moco-v3", "module.base_encoder.", X64),
    "moco-v3-vit-s": (lambda d: uf.moco_v3(d / "vit-s-300ep.pth.tar"), "moco-v3", "module.base_encoder.", X224),
    "simsiam": (lambda d: uf.simsiam(d / "checkpoint_0099.pth.tar", "resnet18"), "simsiam", "module.encoder.", X64),
    "swav-released": (lambda d: uf.swav(d / "swav_800ep_pretrain.pth.tar", arch="resnet18"), "swav", "module.", X64),
    "swav-training": (lambda d: uf.swav(d / "checkpoint.pth.tar", training=True, arch="resnet18"), "swav", "module.", X64),
    "barlowtwins-training": (lambda d: uf.barlow_vicreg(d / "checkpoint.pth", "barlowtwins", arch="resnet18"),
                             "barlowtwins", "module.backbone.", X64),
    "barlowtwins-released": (lambda d: uf.barlow_vicreg(d / "resnet50.pth", "barlowtwins", released=True),
                             "state-dict", "", X64),
    "dino-vit-s-training": (lambda d: uf.dino(d / "checkpoint.pth", img_size=64), "dino", "backbone.", X64),
    "dino-resnet-training": (lambda d: uf.dino(d / "checkpoint.pth", "resnet18"), "dino", "module.backbone.", X64),
    "dino-vit-s-released": (lambda d: uf.dino(d / "dino_deitsmall16_pretrain.pth", released=True), "state-dict", "", X224),
    "mae-released": (lambda d: uf.mae(d / "mae_pretrain_vit_small.pth"), "mae", "", X224),
    "mae-training": (lambda d: uf.mae(d / "checkpoint-799.pth", training=True, img_size=64), "mae", "", X64),
    "solo-learn-cifar": (lambda d: uf.solo_learn(d / "byol-cifar10.ckpt"), "solo-learn", "backbone.", X32),
    "solo-learn-imagenet": (lambda d: uf.solo_learn(d / "byol-imagenet.ckpt", cifar=False), "solo-learn", "backbone.", X64),
    "mmpretrain-resnet": (lambda d: uf.mmpretrain(d / "epoch_200.pth"), "mmpretrain", "backbone.", X64),
    "mmpretrain-vit": (lambda d: uf.mmpretrain(d / "vit-tiny.pth", "vit"), "mmpretrain", "backbone.", X224),
    "vissl": (lambda d: uf.vissl(d / "model_final_checkpoint_phase799.torch", "resnet18"), "vissl", "trunk._feature_blocks.", X64),
}  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Each case's file, written once per module run: case -> (path, reference model)."""
    cache: dict[str, tuple[Path, nn.Module]] = {}

    def get(case: str) -> tuple[Path, nn.Module]:
        if case not in cache:
            cache[case] = CASES[case][0](tmp_path_factory.mktemp(case))
        return cache[case]

    return get


@pytest.mark.parametrize("case", list(CASES))
def test_upstream_file_loads_with_no_flags(case, written):
    _write, layout, prefix, x = CASES[case]
    path, ref = written(case)
    model = sslhub.load_pretrained(path)
    assert model.pretrained_cfg["layout"] == layout
    assert model.pretrained_cfg["backbone_prefix"] == prefix
    assert _max_diff(_features(model, x), _features(ref, x)) <= TOL
    info = sslhub.info(path)
    assert info["layout"] == layout and info["backbone_prefix"] == prefix
    if layout != "state-dict":
        assert info["upstream"] and info["evaluation_copy"]


@pytest.mark.parametrize("registers,teacher,img", [(False, False, 224), (True, False, 518), (True, True, 224)],
                         ids=["released-224", "released-reg4-518", "teacher-chunked-reg4-224"])  # fmt: skip
def test_dinov2_matches_timm_own_filter(tmp_path, registers, teacher, img):
    """Reference: timm's vit_small_patch14[_reg4]_dinov2 loaded through timm's own checkpoint_filter_fn. The
    released files have a 518-px grid (37x37); 224 px (16x16) keeps two of the three cases fast."""
    name = "teacher_checkpoint.pth" if teacher else "dinov2.pth"
    path, ref, _up = uf.dinov2(tmp_path / name, registers=registers, teacher=teacher, img_size=img)
    model = sslhub.load_pretrained(path)
    cfg = model.pretrained_cfg
    assert cfg["layout"] == "dinov2" and cfg["arch"] == ("vit_small_patch14_reg4_dinov2" if registers else "vit_small_patch14_dinov2")
    assert cfg["backbone_prefix"] == ("backbone." if teacher else "")
    assert cfg.get("img_size") == (None if img == 518 else img)
    x = X518 if img == 518 else X224
    assert _max_diff(_features(model, x), _features(ref, x)) <= TOL
    info = sslhub.info(path)
    dropped = info["dropped"]
    assert ("backbone.mask_token" if teacher else "mask_token") in dropped
    if teacher:
        assert {"dino_head", "ibot_head"} <= set(dropped)
        # onward: sslhub safetensors (lossless, remapped on load) and timm's own loader
        st = sslhub.convert(path, tmp_path / "model.safetensors")
        assert _max_diff(_features(sslhub.load_pretrained(st), x), _features(ref, x)) <= TOL
        from sslhub.export import export_checkpoint

        tm = export_checkpoint(path, "timm", tmp_path / "timm.pth")
        assert tm.arch == "vit_small_patch14_reg4_dinov2"
        timm_model = timm.create_model(tm.arch, num_classes=0, checkpoint_path=str(tm.path), **tm.kwargs)
        assert _max_diff(_features(timm_model, x), _features(ref, x)) <= TOL


def test_moco_v3_vit_small_has_12_heads(written):
    """The tensors of a 6- and a 12-head ViT-S are the same shapes; only the reader's fact gets the features right."""
    path, ref = written("moco-v3-vit-s")
    model = sslhub.load_pretrained(path)
    assert model.pretrained_cfg["timm_kwargs"]["num_heads"] == 12
    # naming the copy gives the same (it used to load a 6-head ViT silently)
    named = sslhub.load_pretrained(path, prefix="module.base_encoder.")
    assert _max_diff(_features(named, X224), _features(ref, X224)) <= TOL
    assert any("num_heads=12" in f for f in sslhub.info(path)["facts"])
    six = timm.create_model("vit_small_patch16_224", num_classes=0)  # timm's vit_small: 6 heads
    six.load_state_dict(sslhub.load_pretrained(path).state_dict())
    assert _max_diff(_features(six, X224), _features(ref, X224)) > 1e-2  # what a 6-head reading would give


def test_solo_learn_cifar_stem_padding_2(written, tmp_path):
    path, ref = written("solo-learn-cifar")
    model = sslhub.load_pretrained(path)
    assert model.conv1.padding == (2, 2) and isinstance(model.maxpool, nn.Identity)
    pad1 = uf.solo_cifar_resnet("resnet18", 0, padding=1)
    pad1.load_state_dict(ref.state_dict())
    assert _max_diff(_features(pad1, X32), _features(ref, X32)) > 1e-2  # padding 1 would be silently wrong
    # exports: no torchvision/timm/Detectron2 ResNet has this stem, so they are refused, naming what works
    for to, out in (("torchvision", "a.pth"), ("timm", "a.pth"), ("detectron2", "a.pkl")):
        with pytest.raises(ExportError, match="solo-learn's CIFAR ResNet.*load_pretrained"):
            sslhub.export(path, to, tmp_path / out)
        assert not (tmp_path / out).exists()
    # sslhub safetensors record the stem: the converted file rebuilds it with no flags
    st = sslhub.convert(path, tmp_path / "solo.safetensors")
    again = sslhub.load_pretrained(st)
    assert _max_diff(_features(again, X32), _features(ref, X32)) <= TOL


# --- refusals: files that pickle code or classes ----------------------------------------------------------------------


def test_vicreg_training_checkpoint_is_refused_and_extractable(tmp_path):
    path, ref = uf.barlow_vicreg(tmp_path / "checkpoint.pth", "vicreg", arch="resnet18")
    with pytest.raises(CheckpointError) as e:
        sslhub.load_pretrained(path)
    msg = str(e.value)
    assert "__main__.exclude_bias_and_norm under 'optimizer'" in msg
    assert "weights are under 'model'" in msg and "weights_only=False" in msg and "c['model']" in msg
    # the one-liner from the message, in a "trusted environment" (here: where that function exists)
    cmd = msg.split("\n  ", 1)[1].strip()
    code = cmd.split('python -c "', 1)[1].rsplit('"', 1)[0]
    with uf._as_main(uf.exclude_bias_and_norm):
        exec(code, {"__name__": "extract"})  # noqa: S102 - our own fixture, the documented recipe
    extracted = Path("model.safetensors")
    try:
        model = sslhub.load_pretrained(extracted)
        assert model.pretrained_cfg["layout"] == "vicreg"
        assert _max_diff(_features(model, X64), _features(ref, X64)) <= TOL
    finally:
        extracted.unlink()


def test_mmengine_full_run_is_refused_naming_state_dict(tmp_path):
    path, _ref = uf.mmpretrain(tmp_path / "epoch_200.pth", full_run=True)
    with pytest.raises(CheckpointError) as e:
        sslhub.load_pretrained(path)
    msg = str(e.value)
    assert "mmengine.logging.history_buffer.HistoryBuffer under 'message_hub'" in msg
    assert "weights are under 'state_dict'" in msg and "c['state_dict']" in msg


def test_refusal_scan_executes_nothing(tmp_path):
    """The scan reads opcodes only: a payload that would run on unpickling does not (legacy and zip formats)."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for legacy in (False, True):
        p = tmp_path / f"evil{legacy}.pth"
        torch.save({"model": {"w": torch.zeros(2)}, "payload": Evil()}, p, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(CheckpointError, match=r"pathlib\.Path.* under 'payload'.*weights are under 'model' \(1 tensors\)"):
            sslhub.load_pretrained(p)
        assert not marker.exists()


def test_namespace_args_allowed_but_nothing_else(written, tmp_path):
    path, _ref = written("mae-training")
    assert sslhub.load_pretrained(path).pretrained_cfg["layout"] == "mae"  # args: argparse.Namespace
    evil = tmp_path / "ns.pth"
    ns = uf.argparse.Namespace(hook=uf.exclude_bias_and_norm)  # a Namespace carrying a function
    torch.save({"model": {"w": torch.zeros(1)}, "args": ns}, evil)
    with pytest.raises(CheckpointError, match="exclude_bias_and_norm under 'args'"):
        sslhub.load_pretrained(evil)


# --- onward: sslhub safetensors, torchvision, timm, Detectron2 --------------------------------------------------------

ONWARD = ["moco-v2", "moco-v3-vit-s", "swav-training", "dino-vit-s-training", "mae-training", "mmpretrain-vit",
          "vissl", "solo-learn-imagenet", "barlowtwins-training", "simsiam", "mmpretrain-resnet", "dino-resnet-training",
          "moco-v3-resnet", "swav-released", "barlowtwins-released"]  # fmt: skip


def _timm_load(arch: str, kwargs: dict, file: Path) -> nn.Module:
    return timm.create_model(arch, num_classes=0, checkpoint_path=str(file), **kwargs).eval()


def _torchvision_load(result, file: Path) -> nn.Module:
    sd = torch.load(file, weights_only=True)
    if result.arch == "VisionTransformer":
        m = torchvision.models.VisionTransformer(**result.kwargs)
    else:
        m = getattr(torchvision.models, result.arch)(weights=None, **result.kwargs)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith(("fc.", "heads.")) for k in missing), (missing, unexpected)
    if hasattr(m, "fc"):
        m.fc = nn.Identity()
    else:
        m.heads = nn.Identity()
    return m.eval()


@pytest.mark.parametrize("case", ONWARD)
def test_convert_and_export(case, written, tmp_path):
    from sslhub.export import export_checkpoint

    _write, layout, prefix, x = CASES[case]
    path, ref = written(case)
    want = _features(ref, x)
    # sslhub safetensors: lossless, the header records the layout, loads with no flags
    st = sslhub.convert(path, tmp_path / "model.safetensors")
    _t, meta = read_safetensors(st)
    assert meta["layout"] == layout and meta["backbone_prefix"] == prefix
    assert _max_diff(_features(sslhub.load_pretrained(st), x), want) <= TOL
    # torchvision and timm: the target library's own loaders, same features
    tv = export_checkpoint(path, "torchvision", tmp_path / "tv.pth")
    assert _max_diff(_features(_torchvision_load(tv, tv.path), x), want) <= TOL
    tm = export_checkpoint(path, "timm", tmp_path / "timm.pth")
    assert _max_diff(_features(_timm_load(tm.arch, tm.kwargs, tm.path), x), want) <= TOL


@pytest.mark.parametrize("case", ["barlowtwins-released", "moco-v2", "vissl", "mmpretrain-resnet"])
def test_detectron2_checkpointer_loads_upstream_resnets(case, written, tmp_path):
    """Detectron2's own DetectionCheckpointer and ResNet (vendored source snapshot) reproduce the trunk."""
    import_detectron2()
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    x = CASES[case][3]
    path, ref = written(case)
    out = sslhub.export(path, "detectron2", tmp_path / "d2.pkl")
    cfg = get_cfg()
    cfg.merge_from_file(str(out.with_suffix(".yaml")))
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    holder = nn.Module()
    holder.backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    checkpointer = DetectionCheckpointer(holder)
    reports = []  # what load() logs as incompatible keys: every trunk tensor must come from the file
    load_model = checkpointer._load_model
    checkpointer._load_model = lambda checkpoint: reports.append(load_model(checkpoint)) or reports[-1]
    checkpointer.load(cfg.MODEL.WEIGHTS)
    assert len(reports) == 1
    assert (reports[0].missing_keys, reports[0].unexpected_keys, reports[0].incorrect_shapes) == ([], [], [])
    with torch.no_grad():
        got = holder.backbone.eval()(x)["res5"].mean(dim=(2, 3))
    assert _max_diff(got, _features(ref, x)) <= TOL


def test_cli_info_names_upstream_copy_and_drops(written):
    path, _ref = written("moco-v2")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "sslhub", "info", "--json", str(path)], capture_output=True, text=True,
                       env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["layout"] == "moco-v2" and out["upstream"] == "facebookresearch/moco"
    assert out["backbone_prefix"] == "module.encoder_q."
    assert {"module.encoder_k", "module.queue", "module.queue_ptr", "module.encoder_q.fc"} <= set(out["dropped"])


def test_unfit_upstream_file_lists_unexpected_key_groups(tmp_path):
    """An mmpretrain ViT with LayerScale (not remapped): the error names the key groups, not the Lightly Worker."""
    path, _ref = uf.mmpretrain(tmp_path / "vit.pth", "vit")
    obj = torch.load(path, weights_only=True)
    obj["state_dict"]["backbone.layers.0.attn.gamma1.weight"] = torch.ones(192)
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=r"unexpected key groups: \['blocks'\]") as e:
        sslhub.load_pretrained(path)
    assert "Lightly Worker" not in str(e.value) and "blocks.0.attn.gamma1.weight" in str(e.value)
