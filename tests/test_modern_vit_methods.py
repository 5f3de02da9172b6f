"""Modern ViT methods (issue 15): iBOT, DINOv2, I-JEPA, CAPI, LeJEPA. Parity of every Lightly-named piece with
lightly 1.6.0 (init, state-dict keys, outputs, gradients), one training step of each method against a model built
from Lightly's modules as in its examples, and the tiny recipes train, reload with no flags and load strictly into
timm (DINOv2 as timm's vit_*_patch14_dinov2 architecture)."""

from __future__ import annotations

import inspect
import json
import math
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import sslhub
from sslhub.backbones import block_masks as BM
from sslhub.backbones import create_backbone
from sslhub.backbones.capi_predictor import CAPIPredictorTIMM
from sslhub.backbones.decoders import MaskedVisionTransformerDecoderTIMM
from sslhub.backbones.ijepa_predictor import IJEPAPredictorTIMM, apply_masks, repeat_interleave_batch
from sslhub.heads import CAPIProjectionHead, DINOv2ProjectionHead, LeJEPAProjectionHead, PixioDecoderTIMM
from sslhub.losses import CAPILoss, IBOTPatchLoss, IBOTPlusPlusPatchLoss, KoLeoLoss, LeJEPALoss, SIGReg
from sslhub.recipes import get_recipe

LL = pytest.importorskip("lightly.loss")
LM = pytest.importorskip("lightly.models.modules")
LU = pytest.importorskip("lightly.models.utils")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini/train"
TOL = dict(atol=1e-5, rtol=0)
SHRINK = ["batch_size=16", "backbone.depth=2", "backbone.embed_dim=64", "backbone.num_heads=2"]
TINY = ["ibot-vit-tiny-p4-32", "dinov2-vit-tiny-p4-32", "ijepa-vit-tiny-p4-32", "capi-vit-tiny-p4-32",
        "lejepa-vit-tiny-p4-32"]  # fmt: skip


def _grads(*tensors):
    return [t.grad.clone() for t in tensors]


def _assert_same_module(ours, ref, *inputs, seed=0, **kw):
    """Same keys, same init from the same seed, same outputs (after loading ref's weights)."""
    sd_o, sd_r = ours.state_dict(), ref.state_dict()
    assert set(sd_o) == set(sd_r), set(sd_o) ^ set(sd_r)
    for k in sd_r:
        torch.testing.assert_close(sd_o[k], sd_r[k], **TOL, msg=k)
    ours.load_state_dict(sd_r, strict=True)
    torch.testing.assert_close(ours(*inputs, **kw), ref(*inputs, **kw), **TOL)


def _seeded(build, seed=0):
    torch.manual_seed(seed)
    return build()


# --------------------------------------------------------------------------------------------------- masks


def test_block_masks_match_lightly():
    from lightly.data import IJEPAMaskCollator

    random.seed(1)
    ours = BM.random_block_mask((8, 8, 8))
    random.seed(1)
    assert torch.equal(ours, LU.random_block_mask((8, 8, 8)))
    assert 0 < ours.sum() and (ours.flatten(1).sum(1) == 0).sum() == 4  # half of the images unmasked
    for kw in ({}, {"num_prefix_tokens": 5, "mask_ratio": 0.5, "roll": False}):
        torch.manual_seed(2)
        a = BM.random_inverse_block_mask((3, kw.get("num_prefix_tokens", 1) + 64), **kw)
        torch.manual_seed(2)
        b = LU.random_inverse_block_mask((3, kw.get("num_prefix_tokens", 1) + 64), **kw)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    collator = IJEPAMaskCollator(input_size=32, patch_size=4, min_keep=4)
    for step in range(2):  # the collator seeds the block sizes with its call counter
        torch.manual_seed(3 + step)
        _, ref_enc, ref_pred = collator([(torch.zeros(1), 0)] * 5)
        torch.manual_seed(3 + step)
        enc, pred = BM.ijepa_multiblock_masks(5, (8, 8), seed=step, min_keep=4)
        assert len(enc) == len(ref_enc) == 1 and len(pred) == len(ref_pred) == 2
        assert all(torch.equal(x, y) for x, y in zip(enc + pred, ref_enc + ref_pred))
    with pytest.raises(ValueError, match="min_keep=10"):  # where Lightly's collator would never return
        BM.ijepa_multiblock_masks(2, (4, 4), seed=0, pred_mask_scale=(0.15, 0.2), min_keep=10)
    x = torch.randn(5, 64, 8)
    torch.testing.assert_close(apply_masks(x, pred), LU.apply_masks(x, pred), **TOL)
    torch.testing.assert_close(repeat_interleave_batch(x, 5, 3), LU.repeat_interleave_batch(x, 5, 3), **TOL)


# -------------------------------------------------------------------------------------------------- losses


def test_ibot_losses_match_lightly():
    torch.manual_seed(0)
    mask = torch.rand(4, 3, 3) > 0.5
    mask[1] = False  # an image without masked patches
    n = int(mask.sum())
    for ours, ref, args in ((IBOTPatchLoss(output_dim=16), LL.IBOTPatchLoss(output_dim=16), lambda t, s: (t, s, mask)),
                            (IBOTPlusPlusPatchLoss(output_dim=16), LL.IBOTPlusPlusPatchLoss(output_dim=16),
                             lambda t, s: (t.view(4, 9, 16), s.view(4, 9, 16), mask))):  # fmt: skip
        size = 36 if isinstance(ours, IBOTPlusPlusPatchLoss) else n
        for call in range(2):  # the second call uses the updated center
            t, s = torch.randn(size, 16), torch.randn(size, 16)
            results = []
            for loss_fn in (ours, ref):
                sr = s.clone().requires_grad_()
                loss = loss_fn(*args(t, sr), teacher_temp=0.05 if call else None)
                loss.backward()
                results.append((loss.detach(), sr.grad))
            for a, b in zip(*results):
                torch.testing.assert_close(a, b, **TOL)
            torch.testing.assert_close(ours.center.center, ref.center.center, **TOL)
        assert set(ours.state_dict()) == set(ref.state_dict()) == {"center.center"}
    t, s = torch.randn(36, 16), torch.randn(36, 16)  # rank-2 input with a mask; no mask; visible weight 0
    p, r = IBOTPlusPlusPatchLoss(output_dim=16), LL.IBOTPlusPlusPatchLoss(output_dim=16)
    torch.testing.assert_close(p(t, s, mask=mask, visible_loss_weight=0.0), r(t, s, mask=mask, visible_loss_weight=0.0), **TOL)
    torch.testing.assert_close(p(t.view(4, 9, 16), s.view(4, 9, 16)), r(t.view(4, 9, 16), s.view(4, 9, 16)), **TOL)
    with pytest.raises(ValueError, match="mask is required"):
        p(t, s)


def test_koleo_capi_and_lejepa_losses_match_lightly():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    x[3] = x[5]  # a duplicate: the eps keeps the log finite
    res = []
    for fn in (KoLeoLoss(), LL.KoLeoLoss()):
        xr = x.clone().requires_grad_()
        loss = fn(xr)
        loss.backward()
        res.append((loss.detach(), xr.grad))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, **TOL)
    teacher, student, index = torch.randn(3, 16, 32), torch.randn(3, 5, 32), torch.randint(0, 16, (3, 5))
    for kw in (dict(teacher_index=index), {}):
        s = student if kw else torch.randn(3, 16, 32)
        res = []
        for fn in (CAPILoss(), LL.CAPILoss()):
            sr, tr = s.clone().requires_grad_(), teacher.clone().requires_grad_()
            loss = fn(tr, sr, **kw)
            loss.backward()
            assert tr.grad is None  # the targets are detached
            res.append((loss.detach(), sr.grad))
        for a, b in zip(*res):
            torch.testing.assert_close(a, b, **TOL)
    local, glob = torch.randn(4, 8, 16), torch.randn(2, 8, 16)
    for ours, ref in ((SIGReg(num_vectors=64), LL.SIGReg(num_vectors=64)),
                      (LeJEPALoss(sigreg_num_vectors=64, lambda_param=0.3), LL.LeJEPALoss(sigreg_num_vectors=64, lambda_param=0.3))):  # fmt: skip
        assert ours.state_dict().keys() == ref.state_dict().keys()
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[k], v, **TOL)
        res = []
        for fn in (ours, ref):
            lr, gr = local.clone().requires_grad_(), glob.clone().requires_grad_()
            torch.manual_seed(7)  # SIGReg draws its random directions from torch's generator
            loss = fn(torch.cat([lr, gr])) if isinstance(fn, (SIGReg, LL.SIGReg)) else fn(local_proj=lr, global_proj=gr)
            loss.backward()
            res.append((loss.detach(), lr.grad, gr.grad))
        for a, b in zip(*res):
            torch.testing.assert_close(a, b, **TOL)
    with pytest.raises(ValueError, match="lambda_param"):
        LeJEPALoss(lambda_param=2.0)


# --------------------------------------------------------------------------------------- heads and decoders


def test_heads_match_lightly():
    x = torch.randn(6, 32)
    _assert_same_module(_seeded(lambda: DINOv2ProjectionHead(32, 48, 16, 64)), _seeded(lambda: LM.DINOv2ProjectionHead(32, 48, 16, 64)), x)
    assert DINOv2ProjectionHead(32, 48, 16, 64).last_layer.weight_g.requires_grad  # trained in DINOv2 (unlike DINO's default)
    for kw in ({}, {"weight_norm": True}, {"bias": True}, {"bias": True, "weight_norm": True}):
        ours, ref = _seeded(lambda: CAPIProjectionHead(32, 20, **kw)), _seeded(lambda: LM.CAPIProjectionHead(32, 20, **kw))
        _assert_same_module(ours, ref, torch.randn(2, 5, 32))
        assert [p.requires_grad for p in ours.parameters()] != [] and (
            not kw.get("weight_norm") or not ours.layer.weight_g.requires_grad
        )
    for layers in (2, 4):
        ours, ref = _seeded(lambda: LeJEPAProjectionHead(32, 24, 8, layers)), _seeded(lambda: LM.LeJEPAProjectionHead(32, 24, 8, layers))
        _assert_same_module(ours, ref, x)
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), **TOL)


def test_decoders_and_predictors_match_lightly():
    from lightly.models.modules.masked_autoencoder_timm import PixioDecoderTIMM as RefPixio

    kw = dict(num_patches=16, embed_dim=32, depth=2, num_heads=4)
    ours, ref = _seeded(lambda: MaskedVisionTransformerDecoderTIMM(**kw)), _seeded(lambda: LM.MaskedVisionTransformerDecoderTIMM(**kw))
    x = torch.randn(3, 17, 32)
    keep, masked = LU.random_token_mask((3, 17), 0.5)
    _assert_same_module(ours, ref, x)
    for args in (dict(idx_mask=masked), dict(idx_keep=keep), dict(mask=torch.rand(3, 17) > 0.5), dict(idx_mask=masked, idx_keep=keep)):
        torch.testing.assert_close(ours(x, **args), ref(x, **args), **TOL)
    assert ours.sequence_length == ref.sequence_length == 17 and not ours.pos_embed.requires_grad
    pkw = dict(num_patches=16, patch_size=4, embed_dim=32, decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in lightly 1.6
        ref_pixio = _seeded(lambda: RefPixio(**pkw))
    _assert_same_module(_seeded(lambda: PixioDecoderTIMM(**pkw)), ref_pixio, x)
    assert inspect.signature(PixioDecoderTIMM).parameters["decoder_depth"].default == 32
    ikw = dict(num_patches=64, depth=2, mlp_dim=32, predictor_embed_dim=16, num_heads=2)
    ours_p, ref_p = _seeded(lambda: IJEPAPredictorTIMM(**ikw)), _seeded(lambda: LM.IJEPAPredictorTIMM(**ikw))
    torch.manual_seed(1)
    enc, pred = BM.ijepa_multiblock_masks(3, (8, 8), seed=0, min_keep=4)
    ctx = torch.randn(3, enc[0].shape[1], 32)
    _assert_same_module(ours_p, ref_p, ctx, enc, pred)
    legacy = {k.replace("decoder.blocks.", "predictor_blocks.").replace("decoder.pos_embed", "predictor_pos_embed"): v
              for k, v in ref_p.state_dict().items()}  # fmt: skip
    with pytest.warns(DeprecationWarning, match="old parameter names"):
        ours_p.load_state_dict(legacy, strict=True)
    ckw = dict(embed_dim=32, grid_size=8, depth=2, num_heads=2)
    ours_c, ref_c = _seeded(lambda: CAPIPredictorTIMM(**ckw)), _seeded(lambda: LM.CAPIPredictorTIMM(**ckw))
    keep, masked = LU.random_inverse_block_mask((3, 65), num_prefix_tokens=1)
    _assert_same_module(ours_c, ref_c, torch.randn(3, keep.shape[1] - 1, 32), keep[:, 1:] - 1, masked - 1)


# ------------------------------------------------------------------------------------------------ transforms


def _norm_default(v):
    return {k: [float(x) for x in vv] for k, vv in v.items()} if isinstance(v, dict) else tuple(v) if isinstance(v, (list, tuple)) else v


def test_transforms_have_lightlys_defaults_and_outputs():
    import lightly.transforms as LT
    from lightly.transforms.ijepa_transform import IJEPATransform as RefIJEPA
    from PIL import Image

    from sslhub import transforms as T

    for ours, ref in ((T.IBOTTransform, LT.IBOTTransform), (T.IBOTViewTransform, LT.IBOTViewTransform),
                      (T.CAPITransform, LT.CAPITransform), (T.IJEPATransform, RefIJEPA)):  # fmt: skip
        o = {k: _norm_default(p.default) for k, p in inspect.signature(ours).parameters.items()}
        r = {k: _norm_default(p.default) for k, p in inspect.signature(ref).parameters.items()}
        assert o == r, ours.__name__
    img = Image.fromarray(torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8).numpy())
    # Lightly blurs and solarises with numpy's generator; with both off the torch draws line up
    no_np = dict(gaussian_blur=(0.0, 0.0, 0.0), solarization_prob=0.0)
    for ours, ref in ((T.IBOTTransform(global_crop_size=24, local_crop_size=12, n_local_views=2, **no_np),
                       LT.IBOTTransform(global_crop_size=24, local_crop_size=12, n_local_views=2, **no_np)),
                      (T.CAPITransform(input_size=24), LT.CAPITransform(input_size=24))):  # fmt: skip
        torch.manual_seed(5)
        a = ours(img)
        torch.manual_seed(5)
        b = ref(img)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, **TOL)
    torch.manual_seed(5)
    a = T.IJEPATransform(input_size=24)(img)
    torch.manual_seed(5)
    torch.testing.assert_close(a[0], RefIJEPA(input_size=24)(img), **TOL)  # Lightly returns the tensor
    views = T.IBOTTransform(global_crop_size=24, local_crop_size=12, n_local_views=3)(torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8))
    assert [tuple(v.shape) for v in views] == [(5, 3, 24, 24)] * 2 + [(5, 3, 12, 12)] * 3


# ------------------------------------------------------------------------- one training step against Lightly


def _tiny(name: str, *extra: str):
    from sslhub.training.trainer import _build_model

    torch.manual_seed(0)
    return _build_model(get_recipe(name, [*SHRINK, *extra]), gather=False)


def _lightly_masked_vit(ours_masked_vit, **kw):
    import copy

    from lightly.models.modules import MaskedVisionTransformerTIMM

    ref = MaskedVisionTransformerTIMM(vit=copy.deepcopy(ours_masked_vit.vit), **kw)
    ref.load_state_dict(ours_masked_vit.state_dict(), strict=True)
    return ref


def _copy(ref_module, ours_module):
    ref_module.load_state_dict(ours_module.state_dict(), strict=True)
    return ref_module


def _check_step(ours_loss, ref_loss, pairs):
    """Same loss; same gradient for every (ours, ref) module pair, parameter by parameter."""
    torch.testing.assert_close(ours_loss.detach(), ref_loss.detach(), **TOL)
    ours_loss.backward()
    ref_loss.backward()
    checked = 0
    for ours, ref in pairs:
        ref_params = dict(ref.named_parameters())
        for name, p in ours.named_parameters():
            if p.requires_grad:
                assert p.grad is not None, name
                torch.testing.assert_close(p.grad, ref_params[name].grad, atol=1e-5, rtol=1e-4, msg=name)
                checked += 1
    assert checked > 10


def _multicrop(n=4, n_local=2):
    torch.manual_seed(1)
    return [torch.randn(n, 3, 32, 32) for _ in range(2)] + [torch.randn(n, 3, 16, 16) for _ in range(n_local)]


@pytest.fixture
def float64():
    """Run in float64: DINOv2's KoLeo term gives cls-token gradients of ~10 whose float32 summation noise (~1e-4,
    depending on the machine's kernels) exceeds the parity tolerance; in float64 the two sides agree to ~1e-14."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("method", ["ibot", "dinov2"])
def test_ibot_and_dinov2_step_matches_lightly(method, float64):
    """The step of Lightly's examples/pytorch/{ibot,dinov2}.py (teacher temperature passed explicitly)."""
    model = _tiny(f"{method}-vit-tiny-p4-32")
    teacher = _lightly_masked_vit(model.teacher_backbone, antialias=False, pos_embed_initialization="skip")
    student = _lightly_masked_vit(model.student_backbone, antialias=False, pos_embed_initialization="skip")
    if method == "ibot":
        kw = dict(input_dim=64, hidden_dim=512, bottleneck_dim=64, output_dim=2048)
        s_head = _copy(LM.DINOProjectionHead(**kw, norm_last_layer=False), model.student_head)
        t_head = _copy(LM.DINOProjectionHead(**kw), model.teacher_head)
        s_cls = s_patch = s_head
        t_cls = t_patch = t_head
        pairs = [(model.student_backbone, student), (model.student_head, s_head)]
    else:
        kw = dict(input_dim=64, hidden_dim=512, bottleneck_dim=64, output_dim=2048)
        s_cls = s_patch = _copy(LM.DINOv2ProjectionHead(**kw), model.student_head.dino_head)
        t_cls = t_patch = _copy(LM.DINOv2ProjectionHead(**kw), model.teacher_head.dino_head)
        pairs = [(model.student_backbone, student), (model.student_head.dino_head, s_cls)]
    views = _multicrop()
    random.seed(4)
    block_mask = BM.random_block_mask((8, 8, 8))
    assert block_mask.any()
    ours = model.forward_masked(views, block_mask, epoch=0)

    temp = model.teacher_temperature(0)
    dino, ibot, koleo = LL.DINOLoss(output_dim=2048), LL.IBOTPatchLoss(output_dim=2048), LL.KoLeoLoss()
    global_views, local_views = torch.cat(views[:2]), torch.cat(views[2:])
    mask = global_views.new_zeros((8, teacher.sequence_length), dtype=torch.bool)
    mask[:, 1:] = block_mask.flatten(start_dim=1)
    with torch.no_grad():
        t_features = teacher.encode(global_views)
        t_cls_out, t_masked_out = t_cls(t_features[:, 0]), t_patch(t_features[mask])
    s_features = student.encode(global_views, mask=mask)
    s_cls_out = torch.cat([s_cls(s_features[:, 0]), s_cls(student.encode(local_views)[:, 0])])
    ref = dino(teacher_out=t_cls_out.chunk(2), student_out=s_cls_out.chunk(len(views)), teacher_temp=temp)
    ref = ref + ibot(teacher_out=t_masked_out, student_out=s_patch(s_features[mask]), mask=block_mask, teacher_temp=temp)
    if method == "dinov2":
        ref = ref + 0.1 * sum(koleo(t) for t in s_features[:, 0].chunk(2))
    _check_step(ours, ref, pairs)
    torch.testing.assert_close(model.dino_criterion.center.flatten(), dino.center.flatten(), **TOL)
    torch.testing.assert_close(model.ibot_criterion.center.center, ibot.center.center, **TOL)


def test_ijepa_step_matches_lightly():
    """I-JEPA's step with Lightly's timm modules, masks from Lightly's IJEPAMaskCollator (2 target blocks)."""
    from lightly.data import IJEPAMaskCollator
    from torch.nn import functional as F

    model = _tiny("ijepa-vit-tiny-p4-32", "model.npred=2")
    encoder, target = _lightly_masked_vit(model.encoder), _lightly_masked_vit(model.target_encoder)
    predictor = _copy(LM.IJEPAPredictorTIMM(num_patches=64, depth=2, mlp_dim=64, predictor_embed_dim=96, num_heads=4), model.predictor)
    images = torch.randn(4, 3, 32, 32)
    torch.manual_seed(3)
    _, masks_enc, masks_pred = IJEPAMaskCollator(input_size=32, patch_size=4, **model.mask_args)([(torch.zeros(1), 0)] * 4)
    torch.manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(sum(model.sample_masks(4, (8, 8), step=0), []), masks_enc + masks_pred))
    ours = model.forward_masked(images, masks_enc, masks_pred)
    with torch.no_grad():
        h = target.encode(images)
        h = LU.repeat_interleave_batch(LU.apply_masks(F.layer_norm(h, (h.size(-1),)), masks_pred), 4, repeat=len(masks_enc))
    z = predictor(encoder.encode(images, idx_keep=masks_enc[0]), masks_enc, masks_pred)
    _check_step(ours, torch.nn.SmoothL1Loss()(z, h), [(model.encoder, encoder), (model.predictor, predictor)])


def test_capi_step_matches_lightly():
    """The step of Lightly's examples/pytorch/capi.py (student loss + online clustering loss)."""
    model = _tiny("capi-vit-tiny-p4-32", "backbone.reg_tokens=2")
    n = model.num_prefix_tokens
    assert n == 3
    student, teacher = _lightly_masked_vit(model.student_backbone), _lightly_masked_vit(model.teacher_backbone)
    s_head = _copy(LM.CAPIProjectionHead(input_dim=64, num_clusters=256, weight_norm=True), model.student_head)
    t_head = _copy(LM.CAPIProjectionHead(input_dim=64, num_clusters=256, bias=True), model.teacher_head)
    predictor = _copy(LM.CAPIPredictorTIMM(embed_dim=64, grid_size=8, depth=2, num_heads=4), model.predictor)
    images = torch.randn(4, 3, 32, 32)
    idx_keep, idx_mask = LU.random_inverse_block_mask((4, student.sequence_length), mask_ratio=0.65, num_prefix_tokens=n)
    ours = model.forward_masked(images, idx_keep, idx_mask)
    visible = student.encode(images=images, idx_keep=idx_keep)
    s_logits = s_head(predictor(context=visible[:, n:], context_positions=idx_keep[:, n:] - n, query_positions=idx_mask - n))
    with torch.no_grad():
        features = teacher.encode(images=images)
    t_logits = t_head(features)[:, n:]
    crit = LL.CAPILoss()
    ref = crit(teacher_logits=t_logits, student_logits=s_logits, teacher_index=idx_mask - n) + crit(teacher_logits=t_logits, student_logits=t_logits)
    _check_step(ours, ref, [(model.student_backbone, student), (model.student_head, s_head), (model.predictor, predictor),
                            (model.teacher_head, t_head)])  # fmt: skip


def test_lejepa_step_matches_lightly():
    """The step of Lightly's examples/pytorch/lejepa.py (each view through backbone and projector on its own)."""
    import copy

    model = _tiny("lejepa-vit-tiny-p4-32")
    backbone = copy.deepcopy(model.backbone)
    head = _copy(LM.LeJEPAProjectionHead(input_dim=64, hidden_dim=512), model.projection_head)
    views = _multicrop(n=8)
    torch.manual_seed(9)
    ours = model(views, (0, 1, 0))
    torch.manual_seed(9)
    ref = LL.LeJEPALoss()(local_proj=torch.stack([head(backbone(v)) for v in views[2:]]),
                          global_proj=torch.stack([head(backbone(v)) for v in views[:2]]))  # fmt: skip
    _check_step(ours, ref, [(model.backbone, backbone), (model.projection_head, head)])


# ---------------------------------------------------------------------------- recipes: train, reload, export

EVAL = {"ibot": ("teacher_backbone.vit.", "student_backbone.vit."), "dinov2": ("teacher_backbone.vit.", "student_backbone.vit."),
        "ijepa": ("target_encoder.vit.", "encoder.vit."), "capi": ("teacher_backbone.vit.", "student_backbone.vit."),
        "lejepa": ("backbone.", None)}  # fmt: skip


def test_recipes_listed_and_full_size_models_build():
    from sslhub.training.trainer import _build_model

    out = subprocess.run([sys.executable, "-m", "sslhub", "recipes"], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    full = ["ibot-vit-small-p16", "ibot-vit_b_16", "dinov2-vit-small-p14", "dinov2-vit-small-p14-reg4", "ijepa-vit-base-p16",
            "capi-vit-small-p16", "capi-vit_b_16", "lejepa-vit-small-p16"]  # fmt: skip
    for name in TINY + full:
        assert name in out.stdout, name
    for name in full:  # real sizes on the meta device: the recipe fields fit the methods
        with torch.device("meta"):
            model = _build_model(get_recipe(name), gather=False)
        assert model.eval_prefix == EVAL[name.split("-")[0]][0]
        assert model.eval_backbone.pretrained_cfg["img_size"] == 224
    assert _build_model(get_recipe("capi-vit-tiny-p4-32", SHRINK), gather=True).criterion.gather_distributed
    # CAPI on a torchvision ViT (small sizes): a full step, every trainable parameter gets a gradient
    tv = _build_model(get_recipe("capi-vit_b_16", ["backbone.img_size=32", "backbone.patch_size=4", "backbone.num_layers=1",
                                                   "backbone.hidden_dim=64", "backbone.num_heads=2", "backbone.mlp_dim=64",
                                                   "model.num_clusters=32", "model.predictor_depth=1",
                                                   "model.predictor_num_heads=2"]), gather=False)  # fmt: skip
    assert "teacher_backbone.vit.conv_proj.weight" in tv.state_dict()
    from sslhub.transforms import CAPITransform

    tv(CAPITransform(input_size=32)(torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)), (0, 1, 0)).backward()
    assert not [n for n, p in tv.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("name", TINY)
def test_every_trainable_parameter_gets_a_gradient_and_ema_follows(name):
    """DDP without find_unused_parameters needs a gradient for every trainable parameter; the evaluation copy
    (teacher / target encoder) gets none and moves only by the EMA update."""
    from sslhub.transforms.recipe import build_recipe_transform

    r = get_recipe(name, SHRINK)
    model = _tiny(name)
    loss = model(build_recipe_transform(r)(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)), (0, 10, 0))
    loss.backward()
    assert torch.isfinite(loss)
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    if name.startswith(("ibot", "dinov2")):
        with pytest.raises(ValueError, match="fewer than 4 patches"):  # a clear message, not Lightly's assertion
            model.sample_mask(2, (3, 3), torch.device("cpu"))
    ema, trained = EVAL[name.split("-")[0]]
    if trained is None:
        return
    key = "blocks.0.attn.qkv.weight"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    model.after_step(0, 10)
    after = model.state_dict()
    assert not torch.equal(before[trained + key], after[trained + key])
    m = 0.992 if name.startswith(("ibot", "dinov2")) else 0.996  # momentum at step 0
    torch.testing.assert_close(after[ema + key], m * before[ema + key] + (1 - m) * after[trained + key], **TOL)


@pytest.mark.parametrize("name", TINY)
def test_tiny_recipe_trains_reloads_and_exports_to_timm(tmp_path, name):
    import timm

    from sslhub.export import export_checkpoint

    run = sslhub.train(name, DATA, tmp_path / "run", epochs=1, overrides=[*SHRINK, "monitor_every=0"], max_steps_per_epoch=2,
                       progress=False, device="cpu")  # fmt: skip
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 2 and math.isfinite(row["loss"])
    short = name.split("-")[0]
    prefix, other_prefix = EVAL[short]
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["backbone_prefix"] == prefix and meta["family"] == "timm"
    enc = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    kwargs = json.loads(meta["timm_kwargs"])
    ref = timm.create_model(meta["arch"], num_classes=0, img_size=int(meta["img_size"]), **kwargs).eval()
    ref.load_state_dict(enc, strict=True)  # exactly timm's keys: no heads, predictors or mask tokens
    model = sslhub.load_pretrained(run / "model.safetensors")  # no flags: the evaluation copy of the method
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, ref(x), atol=0, rtol=0)
        tokens = ref.forward_features(x)
        torch.testing.assert_close(out, tokens.mean(1) if short == "ijepa" else tokens[:, 0], **TOL)
    if other_prefix:  # the evaluation copy is the EMA teacher / target encoder, not the trained network
        other = {k[len(other_prefix):]: v for k, v in tensors.items() if k.startswith(other_prefix)}
        assert other.keys() == enc.keys() and any(not torch.equal(other[k], enc[k]) for k in enc)
    out_file = tmp_path / "timm.safetensors"
    export_checkpoint(run / "model.safetensors", "timm", out_file)
    from safetensors.torch import load_file

    exported = timm.create_model(meta["arch"], num_classes=0, img_size=32, **kwargs).eval()
    exported.load_state_dict(load_file(str(out_file)), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), out, atol=0, rtol=0)
    if short == "dinov2":
        # timm's DINOv2 architecture by name: LayerScale and learned positions, as the released weights
        assert meta["arch"] == "vit_small_patch14_dinov2" and "ls1.gamma" in "".join(enc)
        dinov2 = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=32, patch_size=4,
                                   embed_dim=64, depth=2, num_heads=2, dynamic_img_size=True).eval()  # fmt: skip
        dinov2.load_state_dict(load_file(str(out_file)), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(dinov2(x), out, atol=0, rtol=0)


def test_ibot_trains_on_a_torchvision_vit_and_exports_to_timm(tmp_path):
    """iBOT on torchvision's ViT: the teacher keys are torchvision's; it reloads with no flags and exports to timm."""
    import timm
    import torchvision
    from safetensors.torch import load_file

    from sslhub.export import export_checkpoint

    shrink = ["batch_size=16", "backbone.num_layers=2", "backbone.hidden_dim=64", "backbone.num_heads=2", "backbone.mlp_dim=128",
              "monitor_every=0"]  # fmt: skip
    run = sslhub.train("ibot-vit_b_16-tiny-p4-32", DATA, tmp_path / "run", epochs=1, overrides=shrink, max_steps_per_epoch=2,
                       progress=False, device="cpu")  # fmt: skip
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        assert f.metadata()["backbone_prefix"] == "teacher_backbone.vit."
        enc = {k[len("teacher_backbone.vit."):]: f.get_tensor(k) for k in f.keys() if k.startswith("teacher_backbone.vit.")}
    ref = torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128)
    ref.heads = torch.nn.Identity()
    ref.load_state_dict(enc, strict=True)
    x = torch.randn(2, 3, 32, 32)
    model = sslhub.load_pretrained(run / "model.safetensors")
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, ref.eval()(x), atol=0, rtol=0)
    res = export_checkpoint(run / "model.safetensors", "timm", tmp_path / "timm.safetensors")
    vit = timm.create_model(res.arch, num_classes=0, **res.kwargs).eval()
    vit.load_state_dict(load_file(str(tmp_path / "timm.safetensors")), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(vit(x), out, **TOL)
