"""ViT / masked-modelling methods (issue 4): parity of masking, heads, losses and transforms with lightly 1.6.0,
and the tiny recipes train, write checkpoints that load through load_pretrained and strictly into timm."""

from __future__ import annotations

import inspect
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import sslhub
import sslhub.methods.vit_methods  # noqa: F401  (registers the methods even before sslhub.methods imports it)
from sslhub.backbones import create_backbone
from sslhub.backbones import masked_vit as MV
from sslhub.heads.vit_heads import AIMPredictionHead, MAEDecoderTIMM, MSNProjectionHead
from sslhub.losses.msn import MSNLoss, PMSNCustomLoss, PMSNLoss
from sslhub.losses.reconstruction import AIMLoss, MAELoss, SimMIMLoss, normalize_mean_var, patchify, unpatchify
from sslhub.recipes import get_recipe, list_recipes

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini/train"
TOL = dict(atol=1e-5, rtol=0)
# Shrinks the tiny recipes further for CI (2 blocks of width 64): the monitor embeds all 400 images per epoch.
SHRINK = ["batch_size=16", "backbone.depth=2", "backbone.embed_dim=64", "backbone.num_heads=2"]
TINY = ["dino-vit-tiny-p4-32", "mae-vit-tiny-p4-32", "simmim-vit-tiny-p4-32", "msn-vit-tiny-p4-32", "pmsn-vit-tiny-p4-32",
        "aim-vit-tiny-p4-32"]  # fmt: skip
FULL = ["dino-vit-small-p16", "mae-vit-base-p16", "simmim-vit-base-p32", "msn-vit-small-p16", "pmsn-vit-small-p16",
        "aim-vit-small-p16"]  # fmt: skip


def _lightly(module: str):
    return pytest.importorskip(module)


def _vit(**kw):
    base = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2)
    return create_backbone("vit_tiny_patch16_224", **{**base, **kw})


# ------------------------------------------------------------------------------------------ masking utils


def test_masking_and_patch_utils_match_lightly():
    U = _lightly("lightly.models.utils")
    for fn, kwargs in ((MV.random_token_mask, dict(size=(4, 17), mask_ratio=0.75)),
                       (MV.random_prefix_mask, dict(size=(4, 16), max_prefix_length=15))):  # fmt: skip
        torch.manual_seed(3)
        ours = fn(**kwargs)
        torch.manual_seed(3)
        ref = getattr(U, fn.__name__)(**kwargs)
        for a, b in zip(ours if isinstance(ours, tuple) else [ours], ref if isinstance(ref, tuple) else [ref]):
            assert torch.equal(a, b)
    tokens, idx = torch.randn(3, 9, 8), torch.tensor([[1, 4], [0, 8], [2, 3]])
    mask_token = torch.randn(1, 1, 8)
    assert torch.equal(MV.get_at_index(tokens, idx), U.get_at_index(tokens, idx))
    assert torch.equal(MV.set_at_index(tokens, idx, torch.ones(3, 2, 8)), U.set_at_index(tokens, idx, torch.ones(3, 2, 8)))
    assert torch.equal(MV.mask_at_index(tokens, idx, mask_token), U.mask_at_index(tokens, idx, mask_token))
    bool_mask = torch.rand(3, 9) > 0.5
    assert torch.equal(MV.mask_bool(tokens, bool_mask, mask_token), U.mask_bool(tokens, bool_mask, mask_token))
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(patchify(images, 4), U.patchify(images, 4))
    assert torch.equal(unpatchify(patchify(images, 4), 4), images)
    x = torch.randn(5, 48)
    torch.testing.assert_close(normalize_mean_var(x), U.normalize_mean_var(x), **TOL)
    for dim, grid, prefix in ((64, 8, 1), (192, 14, 0), (32, 4, 2)):
        ref = torch.from_numpy(U.get_2d_sine_cosine_positional_embedding(dim, grid, num_prefix_tokens=prefix)).float()
        torch.testing.assert_close(MV.get_2d_sine_cosine_positional_embedding(dim, grid, prefix), ref, **TOL)
    # keep/mask indices for register tokens: prefix always kept, the rest a partition of the patches
    keep, masked = MV.random_patch_mask(3, 16, 0.75, num_prefix_tokens=2)
    assert keep.shape == (3, 6) and masked.shape == (3, 12) and (keep[:, :2] == torch.tensor([0, 1])).all()
    assert all(sorted(torch.cat([k, m]).tolist()) == list(range(18)) for k, m in zip(keep, masked))


@pytest.mark.parametrize("kw", [{}, {"dynamic_img_size": True, "reg_tokens": 2}, {"class_token": False, "global_pool": "avg"}])
def test_masked_vit_matches_lightly_and_keeps_timm_keys(kw):
    LM = _lightly("lightly.models.modules.masked_vision_transformer_timm")
    torch.manual_seed(0)
    ref = LM.MaskedVisionTransformerTIMM(vit=_vit(**kw))
    ours = MV.MaskedVisionTransformerTIMM(vit=_vit(**kw))
    torch.testing.assert_close(ours.vit.pos_embed, ref.vit.pos_embed, **TOL)  # fixed sine-cosine init
    assert not ours.vit.pos_embed.requires_grad
    ours.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        ours.mask_token.normal_()
        ref.mask_token.copy_(ours.mask_token)
    assert set(ours.vit.state_dict()) == set(create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, **kw).state_dict())
    size = 24 if kw.get("dynamic_img_size") else 32
    x = torch.randn(3, 3, size, size)
    n = ours.vit.num_prefix_tokens + (size // 4) ** 2
    keep, masked = MV.random_token_mask((3, n), 0.5)
    bool_mask = torch.rand(3, n) > 0.5
    with torch.no_grad():
        for args in (dict(), dict(idx_keep=keep), dict(idx_mask=masked), dict(mask=bool_mask), dict(idx_mask=masked, idx_keep=keep)):
            torch.testing.assert_close(ours.encode(x, **args), ref.encode(x, **args), **TOL)
        if ours.vit.global_pool == "token":  # lightly skips timm's fc_norm; token pooling has none
            torch.testing.assert_close(ours(x, idx_keep=keep), ref(x, idx_keep=keep), **TOL)
        # unmasked pooled features are exactly what the plain timm model computes
        torch.testing.assert_close(ours(x), ours.vit.eval()(x), **TOL)


def test_masked_causal_vit_and_aim_head_match_lightly():
    LC = _lightly("lightly.models.modules.masked_causal_vision_transformer")
    LH = _lightly("lightly.models.modules.heads_timm")
    kw = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, num_classes=0, class_token=False,
              no_embed_class=True, global_pool="avg")  # fmt: skip
    torch.manual_seed(0)
    ref = LC.MaskedCausalVisionTransformer(**kw).eval()
    ours = MV.MaskedCausalVisionTransformer(**kw).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    plain = create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2,
                            class_token=False, no_embed_class=True, global_pool="avg").eval()  # fmt: skip
    plain.load_state_dict(ref.state_dict(), strict=True)  # timm keys
    x = torch.randn(4, 3, 32, 32)
    mask = MV.random_prefix_mask((4, 64), max_prefix_length=63)
    with torch.no_grad():
        expected = ref.forward_features(x, mask=mask)
        torch.testing.assert_close(ours.forward_features(x, mask=mask), expected, **TOL)
        torch.testing.assert_close(plain.forward_features(x, attn_mask=MV.prefix_causal_attention_mask(mask)), expected, **TOL)
        torch.testing.assert_close(ours.forward_features(x), ref.forward_features(x, mask=None), **TOL)
        # causality: changing the last patch leaves every earlier token unchanged when the last patch is not in the prefix
        mask[:, -1] = True
        x2 = x.clone()
        x2[:, :, -4:, -4:] += 1.0
        a, b = ours.forward_features(x, mask=mask), ours.forward_features(x2, mask=mask)
        assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5) and not torch.allclose(a[:, -1], b[:, -1], atol=1e-3)
    ref_head = LH.AIMPredictionHead(input_dim=64, output_dim=48, hidden_dim=32, num_blocks=2)
    head = AIMPredictionHead(input_dim=64, output_dim=48, hidden_dim=32, num_blocks=2)
    assert list(head.state_dict()) == list(ref_head.state_dict())
    head.load_state_dict(ref_head.state_dict(), strict=True)
    t = torch.randn(2, 5, 64)
    torch.testing.assert_close(head(t), ref_head(t), **TOL)


def test_mae_decoder_and_msn_head_match_lightly():
    LD = _lightly("lightly.models.modules.masked_autoencoder_timm")
    LH = _lightly("lightly.models.modules.heads")
    kw = dict(num_patches=64, patch_size=4, embed_dim=64, decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MAEDecoderTIMM is deprecated in lightly 1.6
        ref = LD.MAEDecoderTIMM(**kw)
    ours = MAEDecoderTIMM(**kw)
    torch.testing.assert_close(ours.decoder_pos_embed, ref.decoder_pos_embed, **TOL)  # fixed sine-cosine
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    t = torch.randn(2, 65, 64)
    torch.testing.assert_close(ours(t), ref(t), **TOL)
    ref_h, head = LH.MSNProjectionHead(64, 32, 16), MSNProjectionHead(64, 32, 16)
    head.load_state_dict(ref_h.state_dict(), strict=True)
    z = torch.randn(8, 64)
    torch.testing.assert_close(head(z), ref_h(z), **TOL)  # train mode: batch statistics
    torch.testing.assert_close(head.eval()(z), ref_h.eval()(z), **TOL)  # eval mode: the updated running stats


# ------------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("name,kwargs", [
    ("MSNLoss", {}),
    ("MSNLoss", {"temperature": 0.2, "sinkhorn_iterations": 0, "regularization_weight": 0.5}),
    ("PMSNLoss", {}),
    ("PMSNLoss", {"power_law_exponent": 0.5, "regularization_weight": 2.0}),
    ("PMSNCustomLoss", {"target_distribution": lambda p: torch.softmax(torch.arange(p.shape[0], dtype=p.dtype), 0)}),
])  # fmt: skip
def test_msn_losses_match_lightly(name, kwargs):
    LL = _lightly("lightly.loss")
    ours_cls = {"MSNLoss": MSNLoss, "PMSNLoss": PMSNLoss, "PMSNCustomLoss": PMSNCustomLoss}[name]
    torch.manual_seed(0)
    anchors, targets, protos = torch.randn(3 * 8, 16), torch.randn(8, 16), torch.randn(32, 16)
    results = []
    for cls in (ours_cls, getattr(LL, name)):
        a, p = anchors.clone().requires_grad_(), protos.clone().requires_grad_()
        loss = cls(**kwargs)(a, targets, p, target_sharpen_temperature=0.3)
        loss.backward()
        results.append((loss.detach(), a.grad, p.grad))
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref, **TOL)


def test_dino_loss_vit_multicrop_matches_lightly():
    LL = _lightly("lightly.loss")
    from sslhub.losses import DINOLoss

    ours, ref = DINOLoss(output_dim=32, warmup_teacher_temp_epochs=3), LL.DINOLoss(output_dim=32, warmup_teacher_temp_epochs=3)
    torch.manual_seed(0)
    for epoch in (0, 1, 5):
        teacher = [torch.randn(4, 32) for _ in range(2)]
        student = [torch.randn(4, 32) for _ in range(8)]  # 2 global + 6 local crops
        torch.testing.assert_close(ours(teacher, student, epoch=epoch), ref(teacher, student, epoch=epoch), **TOL)
        torch.testing.assert_close(ours.center, ref.center, **TOL)


def test_reconstruction_losses_match_lightly_and_the_aim_objective():
    U = _lightly("lightly.models.utils")
    torch.manual_seed(0)
    images, idx = torch.randn(2, 3, 16, 16), torch.tensor([[0, 3, 5], [2, 9, 15]])
    target = U.get_at_index(U.patchify(images, 4), idx)
    pred = torch.randn(2, 3, 48)
    # MAE with normalised pixels; SimMIM: L1 on the (ImageNet-normalised) pixels, as Lightly's examples
    torch.testing.assert_close(MAELoss()(pred, target), torch.nn.MSELoss()(pred, U.normalize_mean_var(target)), **TOL)
    torch.testing.assert_close(MAELoss(norm_pix_loss=False)(pred, target), torch.nn.MSELoss()(pred, target), **TOL)
    torch.testing.assert_close(SimMIMLoss()(pred, target), torch.nn.L1Loss()(pred, target), **TOL)
    # AIM: shift=False is Lightly's benchmark loss; the default is the paper's next-patch objective
    patches, predictions = U.patchify(images, 4), torch.randn(2, 16, 48)
    mask = U.random_prefix_mask((2, 16), max_prefix_length=15)
    bench = torch.nn.MSELoss()(predictions, U.normalize_mean_var(patches))
    torch.testing.assert_close(AIMLoss(shift=False)(predictions, patches, None), bench, **TOL)
    norm = U.normalize_mean_var(patches)
    terms = [((predictions[b, k - 1] - norm[b, k]) ** 2).mean() for b in range(2) for k in range(1, 16) if mask[b, k]]
    torch.testing.assert_close(AIMLoss()(predictions, patches, mask), torch.stack(terms).mean(), **TOL)


# --------------------------------------------------------------------------------------------- transforms


def _norm_default(v):
    return {k: [float(x) for x in vv] for k, vv in v.items()} if isinstance(v, dict) else tuple(v) if isinstance(v, (list, tuple)) else v


def test_transforms_have_lightlys_defaults_and_outputs():
    LT = _lightly("lightly.transforms")
    from lightly.transforms.msn_transform import MSNViewTransform as RefView
    from PIL import Image

    from sslhub.transforms import vit as TV

    pairs = [(TV.MAETransform, LT.MAETransform), (TV.AIMTransform, LT.AIMTransform), (TV.MSNTransform, LT.MSNTransform),
             (TV.MSNViewTransform, RefView)]  # fmt: skip
    for ours, ref in pairs:
        o = {k: _norm_default(p.default) for k, p in inspect.signature(ours).parameters.items()}
        r = {k: _norm_default(p.default) for k, p in inspect.signature(ref).parameters.items()}
        assert o == r, ours.__name__
    img = Image.fromarray(torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8).numpy())
    # Same torch seed -> same views (the blur draws from numpy in Lightly, so it is off here; vf_prob > 0 so
    # that both pipelines consume the same random numbers)
    for ours, ref in ((TV.MAETransform(input_size=24), LT.MAETransform(input_size=24)),
                      (TV.AIMTransform(input_size=24), LT.AIMTransform(input_size=24)),
                      (TV.MSNTransform(random_size=24, focal_size=12, focal_views=3, gaussian_blur=0.0, vf_prob=0.3),
                       LT.MSNTransform(random_size=24, focal_size=12, focal_views=3, gaussian_blur=0.0, vf_prob=0.3))):  # fmt: skip
        torch.manual_seed(5)
        a = ours(img)
        torch.manual_seed(5)
        b = ref(img)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    views = TV.MSNTransform(random_size=24, focal_size=12, focal_views=3)(torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8))
    assert [tuple(v.shape) for v in views] == [(5, 3, 24, 24)] * 2 + [(5, 3, 12, 12)] * 3


# ------------------------------------------------------------------------------------ recipes and methods


def test_recipes_registered_and_full_size_models_build():
    from sslhub.training.trainer import _build_model

    names = set(list_recipes())
    assert set(FULL + TINY) <= names
    for name in FULL:  # real sizes, built without memory on the meta device: recipe fields fit the methods
        r = get_recipe(name)
        with torch.device("meta"):
            model = _build_model(r, gather=False)
        vit = model.eval_backbone
        assert vit.pretrained_cfg["family"] == "timm" and vit.pretrained_cfg["img_size"] == 224
        assert vit.patch_embed.patch_size[0] == int(name.rsplit("-p", 1)[1])
    for name in ("msn-vit-tiny-p4-32", "pmsn-vit-tiny-p4-32"):  # under DDP the trainer turns on gathering
        assert _build_model(get_recipe(name, SHRINK), gather=True).criterion.gather_distributed


def _views(recipe: dict, n: int = 4) -> list[torch.Tensor]:
    from sslhub.transforms.recipe import build_recipe_transform

    size = recipe["input_size"]
    return [v for v in build_recipe_transform(recipe)(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8))]


EMA_PAIRS = {"dino": ("student_backbone.vit.", "backbone.vit."), "msn": ("anchor_backbone.vit.", "backbone.vit."),
             "pmsn": ("anchor_backbone.vit.", "backbone.vit.")}  # fmt: skip


@pytest.mark.parametrize("name", TINY)
def test_every_trainable_parameter_gets_a_gradient_and_ema_follows(name):
    """DDP without find_unused_parameters needs a gradient for every trainable parameter; frozen copies
    (teacher/target) get none and move only by the EMA update after the optimizer step."""
    from sslhub.training.trainer import _build_model

    r = get_recipe(name, SHRINK)
    torch.manual_seed(0)
    model = _build_model(r, gather=False)
    loss = model(_views(r), (0, 10, 0))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing and torch.isfinite(loss)
    assert not [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    pair = EMA_PAIRS.get(name.split("-")[0])
    if pair is None:
        return
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    model.after_step(0, 10)
    after = model.state_dict()
    trained, ema = pair
    key = "blocks.0.attn.qkv.weight"
    assert not torch.equal(before[trained + key], after[trained + key])
    expected = 0.996 * before[ema + key] + 0.004 * after[trained + key]  # momentum 0.996 at step 0
    torch.testing.assert_close(after[ema + key], expected, **TOL)


EVAL_PREFIX = {"dino": "backbone.vit.", "mae": "backbone.vit.", "simmim": "backbone.vit.", "msn": "backbone.vit.",
               "pmsn": "backbone.vit.", "aim": "backbone."}  # fmt: skip
OTHER_COPY = {"dino": "student_backbone.vit.", "msn": "anchor_backbone.vit.", "pmsn": "anchor_backbone.vit."}


@pytest.mark.parametrize("name", TINY)
def test_tiny_recipe_trains_and_loads_into_timm(tmp_path, name):
    import timm

    run = sslhub.train(name, DATA, tmp_path / "run", epochs=1, overrides=SHRINK, max_steps_per_epoch=2, progress=False, device="cpu")
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 2 and math.isfinite(row["loss"])
    short = name.split("-")[0]
    prefix = EVAL_PREFIX[short]
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert "img_size" in meta and "timm_kwargs" in meta, "the trainer must write img_size/timm_kwargs (see pretrained_cfg)"
    assert meta["backbone_prefix"] == prefix and meta["family"] == "timm"
    enc = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    # strictly into timm: exactly timm's keys (no decoder, no mask token, no heads)
    ref = timm.create_model(meta["arch"], num_classes=0, img_size=int(meta["img_size"]), **json.loads(meta["timm_kwargs"]))
    ref.load_state_dict(enc, strict=True)
    ref.eval()
    model = sslhub.load_pretrained(run / "model.safetensors")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, ref(x), atol=0, rtol=0)
        tokens = ref.forward_features(x)
        pooled = tokens.mean(dim=1) if short == "aim" else tokens[:, 0]  # AIM: mean of tokens; others: class token
        torch.testing.assert_close(out, pooled, **TOL)
    assert out.shape == (3, 64)
    if short in OTHER_COPY:  # the evaluation copy is the EMA teacher / target, not the trained student / anchor
        other = {k[len(OTHER_COPY[short]):]: v for k, v in tensors.items() if k.startswith(OTHER_COPY[short])}
        assert other.keys() == enc.keys() and any(not torch.equal(other[k], enc[k]) for k in enc)


def test_dino_weight_decay_follows_the_cosine_schedule(tmp_path):
    """DINO's weight decay goes 0.04 -> 0.4 (cosine over all steps); groups without decay stay at 0."""
    from sslhub.checkpoints.io import load_torch_file

    assert get_recipe("dino-vit-tiny-p4-32")["optimizer"]["weight_decay_end"] == 0.4
    run = sslhub.train("dino-vit-tiny-p4-32", DATA, tmp_path / "run", epochs=2, max_steps_per_epoch=2, progress=False,
                       device="cpu", overrides=[*SHRINK, "monitor_every=0"])  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # 4 steps; the value applied at step i is 0.4 - 0.36 * (cos(pi * i / 3) + 1) / 2: step 1 -> 0.13, step 3 -> 0.4
    assert [round(r["weight_decay"], 6) for r in rows] == [0.13, 0.4]
    groups = load_torch_file(run / "checkpoints/last.ckpt")["optimizer"]["param_groups"]
    assert sorted(g["weight_decay"] for g in groups) == pytest.approx([0.0, 0.4])
