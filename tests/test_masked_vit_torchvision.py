"""torchvision ViT masking path (issue 4): MaskedVisionTransformerTorchvision matches lightly 1.6.0's class, the
ViT methods build it for torchvision architectures, and a trained run loads with load_pretrained (no flags) into
a torchvision VisionTransformer that computes the method's evaluation features."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors import safe_open
from test_vit_methods import (  # the timm tests' data folder, tolerance and view builder
    DATA,
    TOL,
    _views,
)
from torch import nn

import sslhub
from sslhub.backbones import TORCHVISION_VIT_SIZES, create_backbone
from sslhub.backbones.masked_vit import random_token_mask
from sslhub.backbones.masked_vit_torchvision import (
    MaskedVisionTransformerTorchvision,
    annotate_torchvision_vit,
    torchvision_vit_sizes,
)
from sslhub.recipes import get_recipe

# CPU-sized torchvision ViT: 2 layers of width 64 on 4 px patches of 32 px images (65 tokens).
SIZES = dict(patch_size=4, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128)
SHRINK = ["batch_size=8", *(f"backbone.{k}={v}" for k, v in SIZES.items())]
TV_BACKBONE = "backbone=" + json.dumps({"arch": "vit_b_16", "img_size": 32, **SIZES})


def _tv_vit() -> nn.Module:
    return create_backbone("vit_b_16", img_size=32, **SIZES)


def _reference_vit() -> torchvision.models.VisionTransformer:
    """torchvision's own class, built directly: the strict-load target for our keys."""
    vit = torchvision.models.VisionTransformer(image_size=32, **SIZES)
    vit.heads = nn.Identity()
    return vit


# ------------------------------------------------------------------------------------------ module parity


@pytest.mark.parametrize("pos_embed", ["sincos", "learn"])
def test_masked_torchvision_vit_matches_lightly(pos_embed):
    LM = pytest.importorskip("lightly.models.modules.masked_vision_transformer_torchvision")
    torch.manual_seed(0)
    ref = LM.MaskedVisionTransformerTorchvision(vit=_tv_vit(), pos_embed_initialization=pos_embed)
    torch.manual_seed(0)
    ours = MaskedVisionTransformerTorchvision(vit=_tv_vit(), pos_embed_initialization=pos_embed)
    # same init from the same seed: MAE's xavier/normal init and the (frozen) sine-cosine table
    sd_ref, sd_ours = ref.state_dict(), ours.state_dict()
    assert list(sd_ours) == list(sd_ref)
    for k in sd_ref:
        torch.testing.assert_close(sd_ours[k], sd_ref[k], **TOL, msg=k)
    assert ours.vit.encoder.pos_embedding.requires_grad == ref.vit.encoder.pos_embedding.requires_grad == (pos_embed == "learn")
    assert ours.sequence_length == ref.sequence_length == 65
    with torch.no_grad():
        ours.mask_token.normal_()
        ref.mask_token.copy_(ours.mask_token)
        ref.vit.encoder.pos_embedding.normal_()  # arbitrary values so that resampling is exercised on real data
        ours.vit.encoder.pos_embedding.copy_(ref.vit.encoder.pos_embedding)
    # the wrapped ViT's keys are torchvision's own: strict into torchvision.models.VisionTransformer
    _reference_vit().load_state_dict(ours.vit.state_dict(), strict=True)
    ours.eval(), ref.eval()
    for size in (32, 48, 16):  # the ViT's size, then bicubic up- and (antialiased) down-sampling of the pos. embedding
        torch.manual_seed(size)
        x = torch.randn(3, 3, size, size)
        n = 1 + (size // 4) ** 2
        keep, masked = random_token_mask((3, n), 0.5)
        bool_mask = torch.rand(3, n) > 0.5
        with torch.no_grad():
            for args in (dict(), dict(idx_keep=keep), dict(idx_mask=masked), dict(mask=bool_mask),
                         dict(idx_mask=masked, idx_keep=keep)):  # fmt: skip
                torch.testing.assert_close(ours.encode(x, **args), ref.encode(x, **args), **TOL)
                torch.testing.assert_close(ours(x, **args), ref(x, **args), **TOL)
                torch.testing.assert_close(ours.preprocess(x, **args), ref.preprocess(x, **args), **TOL)
            tokens = ours.images_to_tokens(x)
            torch.testing.assert_close(tokens, ref.images_to_tokens(x), **TOL)
            torch.testing.assert_close(ours.prepend_prefix_tokens(tokens), ref.prepend_prefix_tokens(tokens), **TOL)
            torch.testing.assert_close(ours.prepend_prefix_tokens(tokens, prepend_class_token=False), tokens, **TOL)
            with_cls = ours.add_prefix_tokens(tokens)
            torch.testing.assert_close(ours.interpolate_pos_encoding(with_cls), ref.interpolate_pos_encoding(with_cls), **TOL)
            # masking changes the output (the mask token is used)
            assert not torch.allclose(ours.encode(x, idx_mask=masked), ours.encode(x), atol=1e-3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # unmasked at the ViT's size: exactly what the plain torchvision model computes (heads = Identity)
        torch.testing.assert_close(ours(x), ours.vit(x), **TOL)
        out, inter = ours.forward_intermediates(x, norm=True)
        torch.testing.assert_close(out, ours.encode(x), **TOL)
        assert len(inter) == 2 and torch.allclose(inter[-1], out)
    # gradients agree too (what training sees), through masking and dropping
    keep, masked = random_token_mask((2, 65), 0.75)
    grads = []
    for m in (ours.train(), ref.train()):
        m.zero_grad()
        m.encode(x, idx_mask=masked[:, :4], idx_keep=keep).square().mean().backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "mask_token" in grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], atol=1e-5, rtol=1e-4, msg=k)


def test_masked_torchvision_vit_arguments_behave_like_lightlys():
    LM = pytest.importorskip("lightly.models.modules.masked_vision_transformer_torchvision")
    vit = _tv_vit()
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    MaskedVisionTransformerTorchvision(vit, weight_initialization="skip", pos_embed_initialization="skip")
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())  # "skip" leaves the ViT untouched
    shared = nn.Parameter(torch.randn(1, 1, 64))
    assert MaskedVisionTransformerTorchvision(_tv_vit(), mask_token=shared).mask_token is shared
    for kwargs in (dict(weight_initialization="xavier"), dict(pos_embed_initialization="fixed")):
        for cls in (MaskedVisionTransformerTorchvision, LM.MaskedVisionTransformerTorchvision):
            with pytest.raises(ValueError, match="Invalid"):
                cls(_tv_vit(), **kwargs)
    m = MaskedVisionTransformerTorchvision(_tv_vit())
    with pytest.raises(ValueError, match="cannot both be set"):
        m(torch.randn(1, 3, 32, 32), idx_mask=torch.tensor([[1]]), mask=torch.zeros(1, 65, dtype=torch.bool))


# ---------------------------------------------------------------------------------- create_backbone sizes


def test_create_backbone_torchvision_vit_size_overrides():
    # the size table is torchvision's own (builders built without memory on the meta device)
    for arch, sizes in TORCHVISION_VIT_SIZES.items():
        with torch.device("meta"):
            assert torchvision_vit_sizes(getattr(torchvision.models, arch)()) == sizes, arch
    ours = _tv_vit().eval()
    assert isinstance(ours, torchvision.models.VisionTransformer) and isinstance(ours.heads, nn.Identity)
    assert ours.num_features == 64 and ours.pretrained_cfg["timm_kwargs"] == SIZES
    assert ours.pretrained_cfg["input_size"] == (3, 32, 32)
    ref = _reference_vit().eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
    # rebuilding from what is recorded gives the same structure (what a checkpoint's metadata does)
    rebuilt = create_backbone("vit_b_16", img_size=32, meta=True, **ours.pretrained_cfg["timm_kwargs"])
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    # only one override: the rest stay vit_b_32's
    one = create_backbone("vit_b_32", img_size=64, meta=True, num_layers=1)
    assert torchvision_vit_sizes(one) == {**TORCHVISION_VIT_SIZES["vit_b_32"], "num_layers": 1}
    # no overrides: torchvision's builder, unchanged behaviour
    plain = create_backbone("vit_b_16", meta=True)
    assert torchvision_vit_sizes(plain) == TORCHVISION_VIT_SIZES["vit_b_16"] and plain.pretrained_cfg["timm_kwargs"] == {}
    with pytest.raises(ValueError, match="depth"):
        create_backbone("vit_b_16", depth=2)  # a timm argument name
    with pytest.raises(ValueError, match="multiple of patch_size"):
        create_backbone("vit_b_16", img_size=30, patch_size=4, meta=True)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        create_backbone("vit_b_16", hidden_dim=60, num_heads=8, meta=True)


def test_plain_custom_torchvision_vit_state_dict_error_gives_the_call_that_loads_it(tmp_path):
    ref = _reference_vit().eval()
    path = tmp_path / "custom_vit.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(sslhub.CheckpointError, match="attention heads is not in the tensors") as info:
        sslhub.load_pretrained(path)
    msg = str(info.value)
    assert str(path) in msg
    call = msg[msg.index("sslhub.create_backbone(") : msg.index(".load_state_dict")]
    call = call.replace("<heads>", str(SIZES["num_heads"]))
    model = eval(call, {"sslhub": sslhub})  # the advice, followed literally
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref(x))


def test_annotate_names_hand_built_torchvision_vits():
    vit = torchvision.models.VisionTransformer(image_size=32, **SIZES)  # built by hand: no pretrained_cfg
    annotate_torchvision_vit(vit)
    assert isinstance(vit.heads, nn.Identity) and vit.num_features == 64
    cfg = vit.pretrained_cfg
    assert (cfg["family"], cfg["arch"], cfg["img_size"], cfg["timm_kwargs"]) == ("torchvision_vit", "vit_b_16", 32, SIZES)
    with torch.device("meta"):
        b32 = annotate_torchvision_vit(torchvision.models.vit_b_32(image_size=64))
    assert (b32.pretrained_cfg["arch"], b32.pretrained_cfg["timm_kwargs"]) == ("vit_b_32", {})


# ------------------------------------------------------------------------------------------------ methods


@pytest.mark.parametrize("recipe,extra", [
    ("mae-vit_b_16-tiny-p4-32", []),
    ("simmim-vit_b_16-tiny-p4-32", []),
    ("dino-vit_b_16-tiny-p4-32", ["model.student_drop_path_rate=0.1", "model.out_dim=256"]),
    ("msn-vit-tiny-p4-32", [TV_BACKBONE]),
    ("pmsn-vit-tiny-p4-32", [TV_BACKBONE]),
])  # fmt: skip
def test_methods_build_the_torchvision_masked_vit(recipe, extra):
    from sslhub.training.trainer import _build_model

    r = get_recipe(recipe, [*SHRINK, *extra])
    torch.manual_seed(0)
    model = _build_model(r, gather=False)
    assert isinstance(model.backbone, MaskedVisionTransformerTorchvision)
    vit = model.eval_backbone
    assert isinstance(vit, torchvision.models.VisionTransformer) and vit is model.backbone.vit
    assert vit.pretrained_cfg["family"] == "torchvision_vit" and vit.pretrained_cfg["timm_kwargs"] == SIZES
    enc = {k[len("backbone.vit."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.vit.")}
    _reference_vit().load_state_dict(enc, strict=True)
    # every trainable parameter gets a gradient (DDP without find_unused_parameters); frozen ones get none
    loss = model(_views(r), (0, 10, 0))
    loss.backward()
    assert torch.isfinite(loss)
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    no_decay = {id(p) for p in model.param_groups(0.05)[1]["params"]}
    for name, p in model.named_parameters():  # torchvision's token / position names get no weight decay
        if p.requires_grad and name.endswith(("class_token", "pos_embedding")):
            assert id(p) in no_decay, name
    if recipe.startswith("dino"):  # stochastic depth on the student only, without new state-dict keys
        from torchvision.ops import StochasticDepth

        student = model.student_backbone
        assert any(isinstance(m, StochasticDepth) for m in student.modules())
        assert not any(isinstance(m, StochasticDepth) for m in model.backbone.modules())
        assert student.state_dict().keys() == model.backbone.state_dict().keys()


def test_torchvision_recipes_registered_and_aim_refuses():
    from sslhub.training.trainer import _build_model

    for name, patch in (("mae-vit_b_16", 16), ("simmim-vit_b_16", 16), ("simmim-vit_b_32", 32), ("dino-vit_b_16", 16)):
        with torch.device("meta"):  # real sizes without memory
            vit = _build_model(get_recipe(name), gather=False).eval_backbone
        assert isinstance(vit, torchvision.models.VisionTransformer)
        assert (vit.patch_size, vit.image_size, vit.pretrained_cfg["timm_kwargs"]) == (patch, 224, {})
    tiny = get_recipe("mae-vit_b_16-tiny-p4-32")["backbone"]
    assert {k: tiny[k] for k in SIZES} == dict(patch_size=4, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768)
    with pytest.raises(ValueError, match="torchvision ViT"):
        _build_model(get_recipe("aim-vit-tiny-p4-32", [TV_BACKBONE]), gather=False)


# ----------------------------------------------------------------------------------- training and loading


@pytest.fixture(scope="module")
def few_images(tmp_path_factory) -> Path:
    """A handful of images (2 classes x 6) from the timm tests' folder."""
    root = tmp_path_factory.mktemp("few")
    for cls in sorted(p for p in DATA.iterdir() if p.is_dir())[:2]:
        (root / cls.name).mkdir()
        for f in sorted(cls.iterdir())[:6]:
            shutil.copy(f, root / cls.name / f.name)
    return root


@pytest.mark.parametrize("recipe", ["mae-vit_b_16-tiny-p4-32", "simmim-vit_b_16-tiny-p4-32"])
def test_tiny_torchvision_recipe_trains_and_loads_without_flags(tmp_path, few_images, recipe):
    from sslhub.checkpoints.io import load_torch_file
    from sslhub.training.trainer import _build_model

    run = sslhub.train(recipe, few_images, tmp_path / "run", epochs=2, overrides=SHRINK, max_steps_per_epoch=2,
                       progress=False, device="cpu")  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open is not a dict)
    assert (meta["family"], meta["arch"], meta["backbone_prefix"], meta["img_size"]) == ("torchvision_vit", "vit_b_16", "backbone.vit.", "32")
    assert json.loads(meta["timm_kwargs"]) == SIZES
    # the encoder loads strictly into torchvision's class of the same size (no decoder, mask token or heads)
    ref = _reference_vit()
    ref.load_state_dict({k[len("backbone.vit."):]: v for k, v in tensors.items() if k.startswith("backbone.vit.")}, strict=True)
    ref.eval()
    loaded = sslhub.load_pretrained(run / "model.safetensors")
    assert isinstance(loaded, torchvision.models.VisionTransformer) and isinstance(loaded.heads, nn.Identity)
    assert loaded.pretrained_cfg["family"] == "torchvision_vit" and not loaded.training and loaded.num_features == 64
    # the method's evaluation backbone, rebuilt from the run's last state
    method = _build_model(get_recipe(recipe, SHRINK), gather=False)
    method.load_state_dict(load_torch_file(run / "checkpoints/last.ckpt")["model"], strict=True)
    method.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = loaded(x)
        assert out.shape == (3, 64)
        assert torch.equal(out, ref(x))
        torch.testing.assert_close(out, method.eval_backbone(x), atol=0, rtol=0)
        torch.testing.assert_close(out, method.backbone(x), **TOL)  # the masked wrapper, unmasked: class token
    LM = pytest.importorskip("lightly.models.modules.masked_vision_transformer_torchvision")
    lightly_model = LM.MaskedVisionTransformerTorchvision(ref, weight_initialization="skip", pos_embed_initialization="skip")
    with torch.no_grad():
        torch.testing.assert_close(out, lightly_model.eval()(x), **TOL)
