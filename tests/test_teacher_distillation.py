"""Distillation recipes ``distillationv1/v2/v3-<student>``: a training step's loss equals a hand computation of each
version's definition (LightlyTrain's: queue KL, dense MSE, queue KL + token-similarity KL), the teacher stays frozen
and out of the saved model, and the path train -> load_pretrained -> export works from the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import sslhub
from sslhub.backbones import create_backbone
from sslhub.checkpoints.io import save_safetensors
from sslhub.methods import build_method

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini"
VIT = {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    """A small random timm ViT (32 px, 8 px patches: a 4x4 grid) as an sslhub file, what load_pretrained reads."""
    torch.manual_seed(0)
    vit = create_backbone("vit_tiny_patch16_224", img_size=32, **VIT)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_safetensors(vit.state_dict(), path, {"format": "sslhub", "family": "timm", "arch": "vit_tiny_patch16_224",
                                              "img_size": "32", "timm_kwargs": json.dumps(VIT), "backbone_prefix": ""})  # fmt: skip
    return path


def _student() -> torch.nn.Module:
    torch.manual_seed(1)
    return create_backbone("resnet-9", width=0.125)


def _mixed(x: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    lam = torch.empty(1).uniform_(0.0, 1.0).item()
    return lam * x + (1 - lam) * x[torch.randperm(x.shape[0])]


def _kl(target_logits: torch.Tensor, pred_logits: torch.Tensor) -> torch.Tensor:
    p = target_logits.softmax(-1)
    return (p * (p.log() - pred_logits.log_softmax(-1))).sum(-1).mean()


def _teacher_tokens(teacher: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = teacher.forward_features(x)  # (B, 1 + 16, D), final norm applied
    return f[:, 0], f[:, 1:]  # class token (the model's pooled feature), patch tokens in raster order


def _student_map(student: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    for i, m in enumerate(student):  # ResNetGenerator: stop before the pooling
        if isinstance(m, (torch.nn.AdaptiveAvgPool2d, torch.nn.Flatten)) or i == 7:
            break
        x = m(x)
    return x


@pytest.mark.parametrize("version", [1, 2, 3])
def test_step_loss_is_the_definition(teacher_file, version):
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    kwargs = {"teacher": str(teacher_file)}
    if version != 2:
        kwargs["queue_size"] = 4  # smaller than the batch: the queue is this batch's first 4 teacher features
    model = build_method(f"distillationv{version}", _student(), 64, **kwargs)
    model.train()
    torch.manual_seed(5)
    loss = model([x], (0, 10, 0))
    teacher = sslhub.load_pretrained(teacher_file)
    xm = _mixed(x, 5)
    s_map = _student_map(model.backbone, xm)  # (6, 64, 4, 4) at 32 px for resnet-9 (stride 8)
    with torch.no_grad():
        t_cls, t_patch = _teacher_tokens(teacher, xm)
    if version == 1:
        t = F.normalize(t_cls, dim=-1)
        s = F.normalize(model.projection_head(s_map.mean((2, 3))), dim=-1)
        queue = t[:4]
        expected = _kl(t @ queue.T / 0.07, s @ queue.T / 0.07)
    elif version == 2:
        with torch.no_grad():  # the last 2 blocks' outputs, each through the final norm, stacked on channels
            h = teacher.patch_embed(xm)
            h = teacher.norm_pre(teacher._pos_embed(h))
            outs = []
            for blk in teacher.blocks:
                h = blk(h)
                outs.append(teacher.norm(h)[:, 1:])
            target = torch.cat(outs[-2:], dim=-1)  # (6, 16, 64)
        pred = model.projection_head.mlp(s_map.permute(0, 2, 3, 1)).flatten(1, 2)  # 4x4 grids on both sides
        expected = ((pred - target) ** 2).mean()
    else:
        t = F.normalize(t_cls, dim=-1)
        s = F.normalize(model.projection_head_global(s_map.mean((2, 3))), dim=-1)
        queue = t[:4]
        glob = _kl(t @ queue.T / 0.07, s @ queue.T / 0.07)
        tt = F.normalize(t_patch, dim=-1)
        ss = F.normalize(model.projection_head_local(s_map.permute(0, 2, 3, 1)).flatten(1, 2), dim=-1)
        local = torch.stack([_kl(tt[b] @ tt[b].T / 0.07, ss[b] @ ss[b].T / 0.07) for b in range(6)]).mean()
        expected = glob + local
    assert torch.allclose(loss, expected, atol=1e-5, rtol=1e-5), (loss, expected)
    loss.backward()  # the student learns, the teacher does not
    assert model.backbone[0].weight.grad is not None and model.backbone[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.criterion.parameters())
    assert not model.criterion.teacher.model.training


def test_queue_keeps_the_newest_first(teacher_file):
    model = build_method("distillationv1", _student(), 64, teacher=str(teacher_file), queue_size=8)
    a, b = F.normalize(torch.randn(3, 32), dim=-1), F.normalize(torch.randn(3, 32), dim=-1)
    model._queue_update(a)
    model._queue_update(b)
    assert torch.equal(model.teacher_queue[:6], torch.cat([b, a])) and not model.teacher_queue[6:].any()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "SSLHUB_OFFLINE": "1"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip


def test_train_load_export(teacher_file, tmp_path):
    data = tmp_path / "data"
    for cls in ("hat", "shoes"):
        (data / cls).mkdir(parents=True)
        for f in sorted((DATA / "train" / cls).iterdir())[:6]:
            shutil.copy(f, data / cls / f.name)
    out = tmp_path / "run"
    p = _cli("train", "distillationv3-resnet18", "--data", str(data), "--out", str(out), "--epochs", "1", "-b", "4",
             "--input-size", "64", "--max-steps", "2", "--logger", "none", "--set", f"model.teacher={teacher_file}",
             "--set", "model.queue_size=8", "--set", "monitor_every=0", "--set", "schedule.warmup_epochs=0")  # fmt: skip
    assert p.returncode == 0, p.stderr
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 2 and row["loss"] > 0
    student = sslhub.load_pretrained(out / "model.safetensors")
    assert student.pretrained_cfg["arch"] == "resnet18" and student.num_features == 512
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:  # the teacher is not saved with the student
        assert not [k for k in f.keys() if k.startswith("criterion.")]  # (its queue of features stays)
    p = _cli("export", str(out / "model.safetensors"), "--to", "timm", str(tmp_path / "student_timm.safetensors"))
    assert p.returncode == 0, p.stderr
    import timm

    tm = timm.create_model("resnet18", num_classes=0, checkpoint_path=str(tmp_path / "student_timm.safetensors")).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(tm(x), student(x), atol=1e-5)


# --- DINOv3 teachers (LightlyTrain's v3 default): a tiny random release file, features from the reference model ---


def _dinov3_tokens(ref: torch.nn.Module, x: torch.Tensor, n_storage: int = 4) -> list[torch.Tensor]:
    """Every block's output through the final norm, from the reference DINOv3 ViT (tests/upstream_fixtures_2026.py,
    written from DINOv3's own model code, not timm): a list of ``(B, 1 + n_storage + N, D)``."""
    h = ref.patch_embed(x)
    b, gh, gw, _ = h.shape
    h = h.flatten(1, 2)
    h = torch.cat([ref.cls_token.expand(b, -1, -1), ref.storage_tokens.expand(b, -1, -1), h], dim=1)
    rope = ref.rope_embed(gh, gw)
    outs = []
    for blk in ref.blocks:
        h = blk(h, rope)
        outs.append(ref.norm(h))
    return outs


@pytest.fixture(scope="module")
def dinov3_teacher(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    import upstream_fixtures_2026 as uf26

    folder = tmp_path_factory.mktemp("dinov3")
    return uf26.dinov3_vit(folder / "dinov3_vitb16_pretrain_lvd1689m-tiny.pth", dim=64, depth=2, heads=2)


@pytest.mark.parametrize("version", [2, 3])
def test_dinov3_teacher_step_loss_is_the_definition(dinov3_teacher, version):
    """A DINOv3 ViT teacher (timm Eva once loaded: 1 class + 4 storage tokens, RoPE): the class token is the pooled
    feature, the storage tokens are no patches, and v2's two blocks are both read (Eva has no
    get_intermediate_layers). 64 px: the teacher's grid is 4x4, the student's map 8x8, and a bilinear halving with
    align_corners=False is exactly a 2x2 average."""
    path, ref = dinov3_teacher
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    kwargs = {"teacher": str(path)} | ({"queue_size": 3} if version == 3 else {})
    model = build_method(f"distillationv{version}", _student(), 64, **kwargs)
    model.train()
    torch.manual_seed(7)
    loss = model([x], (0, 10, 0))
    xm = _mixed(x, 7)
    s_map = _student_map(model.backbone, xm)  # (4, 64, 8, 8)
    with torch.no_grad():
        outs = _dinov3_tokens(ref, xm)
    if version == 2:
        target = torch.cat([o[:, 5:] for o in outs[-2:]], dim=-1)  # (4, 16, 128): both blocks' patch tokens
        pred = F.avg_pool2d(model.projection_head.mlp(s_map.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), 2)
        expected = ((pred.flatten(2).transpose(1, 2) - target) ** 2).mean()
    else:
        t = F.normalize(outs[-1][:, 0], dim=-1)
        s = F.normalize(model.projection_head_global(s_map.mean((2, 3))), dim=-1)
        queue = t[:3]
        glob = _kl(t @ queue.T / 0.07, s @ queue.T / 0.07)
        tt = F.normalize(outs[-1][:, 5:], dim=-1)
        s_loc = F.avg_pool2d(model.projection_head_local(s_map.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), 2)
        ss = F.normalize(s_loc.flatten(2).transpose(1, 2), dim=-1)
        local = torch.stack([_kl(tt[b] @ tt[b].T / 0.07, ss[b] @ ss[b].T / 0.07) for b in range(4)]).mean()
        expected = glob + local
    assert torch.allclose(loss, expected, atol=1e-5, rtol=1e-4), (loss, expected)
    loss.backward()
    assert model.backbone[0].weight.grad.abs().sum() > 0


def test_v3_defaults_to_the_dinov3_vitb16_card():
    """LightlyTrain's v3 default teacher, DINOv3 ViT-B/16, is v3's default here too (class and recipe), and the
    registry card it names is that model; v1 and v2 keep LightlyTrain's DINOv2 ViT-B/14."""
    import inspect

    from sslhub.hub.registry import get_card
    from sslhub.methods.teacher_distillation import DistillationV1, DistillationV2, DistillationV3

    def default(cls):
        return inspect.signature(cls).parameters["teacher"].default

    assert default(DistillationV3) == "dinov3-vitb16.fb-lvd1689m"
    assert default(DistillationV1) == default(DistillationV2) == "dinov2-vitb14.fb-lvd142m"
    for version, name in ((1, "dinov2-vitb14.fb-lvd142m"), (2, "dinov2-vitb14.fb-lvd142m"),
                          (3, "dinov3-vitb16.fb-lvd1689m")):  # fmt: skip
        assert sslhub.get_recipe(f"distillationv{version}-resnet18")["model"]["teacher"] == name
    card = get_card("dinov3-vitb16.fb-lvd1689m")
    assert card.architecture == "vit_base_patch16_dinov3" and card.num_features == 768
