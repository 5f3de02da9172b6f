"""Configs that speak timm: ``pretrained_cfg`` carries timm's keys, ``timm.data.resolve_data_config(model=m)`` gives
sslhub's own preprocessing, and ``sslhub.eval_transform(m)`` is what timm's ``create_transform`` builds from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import timm.data
import torch
import torchvision
from PIL import Image

import sslhub
from sslhub.evaluation.features import prepare_folder

TIMM_KEYS = ("architecture", "input_size", "interpolation", "crop_pct", "mean", "std", "num_features")


def _image(w: int = 300, h: int = 200, seed: int = 0) -> Image.Image:
    # smooth content (an upsampled random field), so that resampling differences stay at rounding level
    g = np.random.default_rng(seed).integers(0, 256, (h // 10, w // 10, 3), dtype=np.uint8)
    return Image.fromarray(g).resize((w, h), Image.BILINEAR)


def _models(tmp_path: Path) -> dict[str, torch.nn.Module]:
    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    return {
        "torchvision resnet18": sslhub.create_backbone("resnet18"),
        "timm vit": sslhub.create_backbone("vit_tiny_patch16_224", img_size=96, depth=1),
        "torchvision vit": sslhub.create_backbone("vit_b_16", img_size=96, num_layers=1, hidden_dim=32, mlp_dim=32,
                                                  num_heads=2),  # fmt: skip
        "loaded .pth": sslhub.load_pretrained(tmp_path / "r18.pth"),
    }


def test_pretrained_cfg_has_timm_keys_and_timm_resolves_sslhubs_preprocessing(tmp_path):
    for name, model in _models(tmp_path).items():
        cfg = model.pretrained_cfg
        assert all(cfg.get(k) is not None for k in TIMM_KEYS), (name, {k: cfg.get(k) for k in TIMM_KEYS})
        assert cfg["architecture"] == cfg["arch"] and cfg["num_features"] == model.num_features
        assert cfg["interpolation"] == "bilinear", name  # what sslhub's evaluation uses, not timm's bicubic
        assert timm.data.resolve_data_config(model=model) == sslhub.data_config(model), name


def test_eval_transform_is_timms_transform_for_the_same_config(tmp_path):
    img = _image()
    for name, model in _models(tmp_path).items():
        ours = sslhub.eval_transform(model)(img)
        theirs = timm.data.create_transform(**timm.data.resolve_data_config(model=model))(img)
        assert ours.shape == theirs.shape == (3, *model.pretrained_cfg["input_size"][1:]), name
        # torchvision's tensor resize vs PIL's: the same filter, a rounding level apart (1/255 = 0.017 normalized)
        diff = (ours - theirs).abs()
        assert diff.mean() < 0.01 and diff.max() < 0.1, (name, float(diff.mean()), float(diff.max()))


def test_evaluation_uses_the_declared_interpolation_and_crop(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    _image(seed=3).save(tmp_path / "data" / "a" / "x.png")
    ds = sslhub.evaluation.features.as_image_folder(tmp_path / "data")
    model = sslhub.create_backbone("resnet18")
    size = 64 + 32  # above 64 px: sslhub's 0.875 crop

    def crops(m):
        x = prepare_folder(ds, m, size)[0][0]
        ref = sslhub.eval_transform(m, size)(_image(seed=3))
        return x, ref

    x, ref = crops(model)  # bilinear: the fast decoder
    bicubic = sslhub.create_backbone("resnet18")
    bicubic.pretrained_cfg["interpolation"] = "bicubic"
    y, ref_bicubic = crops(bicubic)
    norm = sslhub.evaluation.features.normalize_batch(model)
    assert x.shape == y.shape == ref.shape == (3, size, size)
    # bicubic is not what the fast (bilinear) decoder does: the folder then resizes exactly as eval_transform
    torch.testing.assert_close(norm(y[None])[0], ref_bicubic.as_subclass(torch.Tensor), rtol=0, atol=1e-5)
    assert (ref_bicubic - ref).abs().max() > 0.01  # the two are really different resamplings
    bicubic.pretrained_cfg["interpolation"] = "cubic"
    with pytest.raises(ValueError, match="'cubic' is not one of"):
        sslhub.eval_transform(bicubic)


def test_crop_pct_follows_the_size_it_was_declared_for():
    model = sslhub.create_backbone("resnet18")  # declared: 224 px at 0.875
    assert sslhub.data_config(model)["crop_pct"] == 0.875
    assert sslhub.data_config(model, input_size=32)["crop_pct"] == 1.0  # CIFAR-size: the whole image
    vit = sslhub.create_backbone("vit_tiny_patch16_224", depth=1)
    assert sslhub.data_config(vit, input_size=32)["crop_pct"] == timm.create_model("vit_tiny_patch16_224", depth=1,
                                                                                  num_classes=0).pretrained_cfg["crop_pct"]  # fmt: skip
    gen = sslhub.create_backbone("resnet-9", width=0.0625)  # no fixed size: nothing invented
    assert gen.pretrained_cfg["input_size"] is None and "crop_pct" not in gen.pretrained_cfg
    with pytest.raises(ValueError, match="no fixed input size"):
        sslhub.data_config(gen)


def test_registry_name_without_tag_resolves_to_the_default(monkeypatch):
    from sslhub.hub import get_card, registry

    assert get_card("dino-vits16").name == "dino-vits16.fb-in1k"  # one tag
    assert get_card("dino-resnet50").name == "dino-resnet50.fb-in1k"  # the authors' release before Lightly's
    assert get_card("simclr-resnet50").name == "simclr-resnet50.lightly-in1k"
    assert "dino-resnet50.lightly-in1k" in registry()
    p = subprocess.run([sys.executable, "-m", "sslhub", "card", "dino-vits16"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("dino-vits16.fb-in1k\n"), p.stderr
    # load_pretrained takes it too: offline and not cached, the error names the resolved card's file
    monkeypatch.setenv("SSLHUB_OFFLINE", "1")
    monkeypatch.setenv("SSLHUB_HOME", "/nonexistent-sslhub-home")
    with pytest.raises(Exception, match="dino_deitsmall16_pretrain|SSLHUB_OFFLINE=1"):
        sslhub.load_pretrained("dino-vits16")
