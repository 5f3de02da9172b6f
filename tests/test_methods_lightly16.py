"""Issue-14 methods: every new recipe trains with the real trainer, saves and reloads through load_pretrained with
identical features, is listed by ``sslhub recipes``; one training step equals a module built from Lightly's heads and
losses the way Lightly's examples wire them (same state-dict keys, loss and weights after the step, |diff| <= 1e-5)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import sslhub
from sslhub.methods import build_method, feature_map
from sslhub.training import train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini/train"
TINY = ["backbone.width=0.0625", "batch_size=16", "input_size=32", "schedule.warmup_epochs=0", "monitor_every=0"]
RECIPES = {
    "vicregl": ["model.hidden_dim=16", "model.out_dim=16", "model.local_hidden_dim=8", "model.local_out_dim=8"],
    "mmcr": ["model.out_dim=8", "transform.args.k=2"],
    "smog": ["model.hidden_dim=16", "model.out_dim=8", "model.pred_hidden_dim=16", "model.n_groups=4",
             "model.memory_bank_size=32", "model.reset_interval=2"],  # step 2 re-clusters and resets the momentum encoder
    "fastsiam": ["model.out_dim=16", "model.pred_hidden_dim=8", "transform.args.num_views=3"],
    "pirl": ["model.out_dim=8", "model.memory_bank_size=32"],
    "detcon_s": ["model.out_dim=8"],
    "detcon_b": ["model.hidden_dim=16", "model.out_dim=8"],
    "wmse": ["model.hidden_dim=16", "model.out_dim=4", "model.w_size=8"],
    "emp_ssl": ["model.hidden_dim=16", "model.out_dim=8", "transform.args.k=3"],
    "directclr": ["model.loss_dim=16"],
    "frossl": ["model.hidden_dim=16", "model.out_dim=16"],
    "macl": ["model.out_dim=8"],
}  # fmt: skip


def test_recipes_are_listed_by_the_cli():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "sslhub", "recipes"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    for method in RECIPES:
        assert f"{method}-resnet-18" in r.stdout and f"{method}-resnet50" in r.stdout, method


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_recipe_trains_saves_and_reloads(tmp_path, method):
    recipe = f"{method}-resnet-9"
    run = train(recipe, DATA, tmp_path / "run", epochs=1, overrides=TINY + RECIPES[method], max_steps_per_epoch=2,
                progress=False, device="cpu")  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and torch.isfinite(torch.tensor(rows[-1]["loss"]))
    model = sslhub.load_pretrained(run / "model.safetensors")
    assert model.pretrained_cfg["method"] == method
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["model"]
    ref = sslhub.create_backbone("resnet-9", width=0.0625)
    ref.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})
    init = sslhub.create_backbone("resnet-9", width=0.0625)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref.eval()(x))
    assert any(not torch.equal(a, b) for a, b in zip(ref.state_dict().values(), init.state_dict().values()))


# ------------------------------------------------------------------------- one step against Lightly's wiring



def _lightly():
    lightly_loss = pytest.importorskip("lightly.loss")
    from lightly.models import utils as LU
    from lightly.models.modules import heads as LH
    from lightly.models.modules.memory_bank import MemoryBankModule

    return lightly_loss, LU, LH, MemoryBankModule


def _pool(bb, x):
    return bb(x).flatten(start_dim=1)


def _ref_module(method: str, ours: nn.Module):
    """A module with the attribute names of ours, built from Lightly's classes as Lightly's examples build them,
    and the function that runs one Lightly example step on it."""
    LL, LU, LH, LBank = _lightly()
    nf = ours.num_features
    m = nn.Module()
    m.backbone = copy.deepcopy(ours.backbone)

    def momentum(*names):
        for n in names:
            setattr(m, f"{n}_momentum", copy.deepcopy(getattr(m, n)))
            LU.deactivate_requires_grad(getattr(m, f"{n}_momentum"))

    if method == "directclr":
        crit = LL.DirectCLRLoss(loss_dim=16)

        def step(views, i):
            z0, z1 = _pool(m.backbone, torch.cat(views)).chunk(2, dim=0)
            return crit(z0, z1)
    elif method == "macl":
        m.projection_head = LH.SimCLRProjectionHead(nf, nf, 8)
        crit = LL.MACLLoss()

        def step(views, i):
            return crit(*(m.projection_head(_pool(m.backbone, v)) for v in views))
    elif method == "fastsiam":
        m.projection_head = LH.SimSiamProjectionHead(nf, nf, 16)
        m.prediction_head = LH.SimSiamPredictionHead(16, 8, 16)
        crit = LL.NegativeCosineSimilarity()

        def step(views, i):
            feats = []
            for v in views:
                z = m.projection_head(_pool(m.backbone, v))
                feats.append((z.detach(), m.prediction_head(z)))
            zs, ps = torch.stack([z for z, _ in feats]), torch.stack([p for _, p in feats])
            loss = 0.0
            for j in range(len(views)):
                mask = torch.arange(len(views)) != j
                loss += crit(ps[j], torch.mean(zs[mask], dim=0)) / len(views)
            return loss
    elif method == "frossl":
        m.projection_head = LH.VICRegProjectionHead(input_dim=nf, hidden_dim=16, output_dim=16, num_layers=2)
        crit = LL.FroSSLLoss()

        def step(views, i):
            return crit([m.projection_head(_pool(m.backbone, v)) for v in views])
    elif method == "mmcr":
        m.projection_head = LH.MMCRProjectionHead(nf, nf, 8)
        momentum("backbone", "projection_head")
        crit = LL.MMCRLoss()

        def step(views, i):
            if i > 0:  # the example updates before each step; ours after the previous one (0.996 at step 0)
                LU.update_momentum(m.backbone, m.backbone_momentum, m=0.996)
                LU.update_momentum(m.projection_head, m.projection_head_momentum, m=0.996)
            z_o = torch.stack([m.projection_head(_pool(m.backbone, x)) for x in views], dim=1)
            z_m = torch.stack([m.projection_head_momentum(_pool(m.backbone_momentum, x)).detach() for x in views], dim=1)
            if ours.normalize:  # the paper's unit-sphere embeddings; normalize=False is the example as it is
                z_o, z_m = nn.functional.normalize(z_o, dim=-1), nn.functional.normalize(z_m, dim=-1)
            return crit(z_o, z_m)
    elif method == "smog":
        m.projection_head = LH.SMoGProjectionHead(nf, 16, 8)
        m.prediction_head = LH.SMoGPredictionHead(8, 16, 8)
        momentum("backbone", "projection_head")
        m.smog = LH.SMoGPrototypes(group_features=torch.rand(4, 8), beta=0.99)
        bank = LBank(size=(32, 8))
        crit = nn.CrossEntropyLoss()

        def step(views, i):
            x0, x1 = views
            if i % 2:
                x1, x0 = x0, x1
            if i > 0:  # the example's else-branch (no re-clustering before step 300)
                LU.update_momentum(m.backbone, m.backbone_momentum, 0.99)
                LU.update_momentum(m.projection_head, m.projection_head_momentum, 0.99)
            x0_encoded = m.projection_head(_pool(m.backbone, x0))
            x0_predicted = m.prediction_head(x0_encoded)
            x1_encoded = m.projection_head_momentum(_pool(m.backbone_momentum, x1))
            assignments = m.smog.assign_groups(x1_encoded)
            group_features = m.smog.get_updated_group_features(x0_encoded)
            logits = m.smog(x0_predicted, group_features, temperature=0.1)
            m.smog.set_group_features(group_features)
            loss = crit(logits, assignments)
            bank(x0_encoded, update=True)
            return loss
    elif method == "wmse":
        m.projection_head = LH.ProjectionHead([(nf, 16, nn.BatchNorm1d(16), nn.ReLU()), (16, 4, None, None)])
        m.criterion = LL.WMSELoss(embedding_dim=4, w_size=8)

        def step(views, i):
            return m.criterion(m.projection_head(_pool(m.backbone, torch.cat(views))))
    elif method == "emp_ssl":
        m.projection_head = LH.ProjectionHead([(nf, 16, nn.BatchNorm1d(16), nn.ReLU()), (16, 8, None, None)])
        crit = LL.EMPSSLLoss()

        def step(views, i):
            z = m.projection_head(_pool(m.backbone, torch.cat(views)))
            return crit([nn.functional.normalize(c, dim=1) for c in z.chunk(len(views))])
    elif method == "vicregl":
        m.projection_head = LH.BarlowTwinsProjectionHead(nf, 16, 16)
        m.local_projection_head = LH.VicRegLLocalProjectionHead(nf, 8, 8)
        crit = LL.VICRegLLoss()

        def step(views_and_grids, i):
            views, grids = views_and_grids[: len(views_and_grids) // 2], views_and_grids[len(views_and_grids) // 2:]
            features = []
            for view in views:  # the example's VICRegL.forward on the ResNet's last feature map
                x = feature_map(m.backbone, view)
                z = m.projection_head(nn.AdaptiveAvgPool2d((1, 1))(x).flatten(start_dim=1))
                features.append((z, m.local_projection_head(x.permute(0, 2, 3, 1))))
            return crit(global_view_features=features[:2], global_view_grids=grids[:2],
                        local_view_features=features[2:], local_view_grids=grids[2:])  # fmt: skip
    elif method in ("detcon_s", "detcon_b"):
        if method == "detcon_s":
            m.projection_head = LH.SimCLRProjectionHead(nf, nf, 8)
            crit = LL.DetConSLoss(gather_distributed=False)
        else:
            m.projection_head = LH.BYOLProjectionHead(nf, 16, 8)
            m.prediction_head = LH.BYOLPredictionHead(8, 16, 8)
            momentum("backbone", "projection_head")
            crit = LL.DetConBLoss(gather_distributed=False)

        def pooled(bb, head, x, mask):  # the example's DetConS.forward
            features = feature_map(bb, x)
            mask_down = nn.functional.interpolate(mask.float(), size=features.shape[2:], mode="nearest").long().squeeze(1)
            p = LU.pool_masked(features, mask_down, num_cls=4).permute(0, 2, 1)
            b, k, d = p.shape
            return head(p.reshape(b * k, d)).reshape(b, k, -1)

        def step(views, i):
            (x0, mask0), (x1, mask1) = views
            idx = torch.arange(4).unsqueeze(0).expand(x0.shape[0], -1)
            if method == "detcon_s":
                return crit(pooled(m.backbone, m.projection_head, x0, mask0), pooled(m.backbone, m.projection_head, x1, mask1), idx, idx)
            if i > 0:  # BYOL-style EMA before the step, with the value of our schedule after step 0
                LU.update_momentum(m.backbone, m.backbone_momentum, 0.99)
                LU.update_momentum(m.projection_head, m.projection_head_momentum, 0.99)
            online = nn.Sequential(m.projection_head, m.prediction_head)
            p0, p1 = pooled(m.backbone, online, x0, mask0), pooled(m.backbone, online, x1, mask1)
            with torch.no_grad():
                t0 = pooled(m.backbone_momentum, m.projection_head_momentum, x0, mask0)
                t1 = pooled(m.backbone_momentum, m.projection_head_momentum, x1, mask1)
            return crit(p0, p1, t0, t1, idx, idx)
    return m, step


PARITY = {
    "directclr": ({"loss_dim": 16}, 2), "macl": ({"out_dim": 8}, 2), "fastsiam": ({"out_dim": 16, "pred_hidden_dim": 8}, 4),
    "frossl": ({"hidden_dim": 16, "out_dim": 16}, 2), "mmcr": ({"out_dim": 8}, 3),
    "smog": ({"hidden_dim": 16, "out_dim": 8, "pred_hidden_dim": 16, "n_groups": 4, "memory_bank_size": 32}, 2),
    "wmse": ({"hidden_dim": 16, "out_dim": 4, "w_size": 8}, 2), "emp_ssl": ({"hidden_dim": 16, "out_dim": 8}, 4),
    "vicregl": ({"hidden_dim": 16, "out_dim": 16, "local_hidden_dim": 8, "local_out_dim": 8}, 4),
    "detcon_s": ({"out_dim": 8, "num_classes": 4}, 2), "detcon_b": ({"hidden_dim": 16, "out_dim": 8, "num_classes": 4}, 2),
}  # fmt: skip


def _views(method: str, n: int, seed: int) -> tuple[list, list]:
    """(our views, the views Lightly's example loop receives)."""
    g = torch.Generator().manual_seed(seed)
    imgs = [torch.randn(16, 3, 32, 32, generator=g) for _ in range(n)]
    if method == "vicregl":  # 2 global 32 px views (4x4 maps), 2 local 16 px views (2x2 maps), then their grids
        v = imgs[:2] + [torch.randn(16, 3, 16, 16, generator=g) for _ in range(2)]
        v += [torch.rand(16, 4, 4, 2, generator=g) for _ in range(2)] + [torch.rand(16, 2, 2, 2, generator=g) for _ in range(2)]
        return v, v
    if method.startswith("detcon"):
        masks = [torch.randint(0, 4, (16, 1, 32, 32), generator=g) for _ in range(2)]
        return [imgs[0], masks[0], imgs[1], masks[1]], [(imgs[0], masks[0]), (imgs[1], masks[1])]
    return imgs, imgs


@pytest.mark.parametrize("method", sorted(PARITY) + ["mmcr-unnormalised"])
def test_training_steps_match_lightly_examples(method):
    if method == "mmcr-unnormalised":  # Lightly's example exactly (its loss is unbounded below)
        method, (kwargs, n_views) = "mmcr", ({**PARITY["mmcr"][0], "normalize": False}, PARITY["mmcr"][1])
    else:
        kwargs, n_views = PARITY[method]
    torch.manual_seed(0)
    bb = sslhub.create_backbone("resnet-9", width=0.0625)
    ours = build_method(method, bb, bb.num_features, **kwargs).train()
    with torch.no_grad():  # momentum copies apart from the online nets: equal ones make MMCR's SVD degenerate
        for name, p in ours.named_parameters():
            if "_momentum." in name:
                p.add_(0.01 * torch.randn_like(p))
    ref, ref_step = _ref_module(method, ours)
    ref.load_state_dict(ours.state_dict(), strict=True)  # same keys: Lightly's attribute layout
    ref.train()
    opt_a = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=0.1)
    opt_b = torch.optim.SGD([p for p in ref.parameters() if p.requires_grad], lr=0.1)
    # Two steps (momentum updates, SMoG's view swap, W-MSE's running statistics), one for VICRegL: its VICReg terms
    # agree with Lightly's to float rounding (gradients to 3e-6), and nearest-neighbour matching turns rounding in
    # the weights into different matches at the next step.
    for i in range(1 if method == "vicregl" else 2):
        views, ref_views = _views(method, n_views, seed=i)
        torch.manual_seed(100 + i)  # W-MSE's sub-batch permutation
        loss_a = ours(views, (i, 10, 0))
        torch.manual_seed(100 + i)
        loss_b = ref_step(ref_views, i)
        assert torch.allclose(loss_a.reshape(()), loss_b.reshape(()), atol=1e-5), (i, loss_a, loss_b)
        for opt, loss in ((opt_a, loss_a), (opt_b, loss_b)):
            opt.zero_grad()
            loss.backward()
            opt.step()
        ours.after_step(i, 10**6)  # momentum 0.996 (cosine start) ~ the examples' values; checked below
    sd_a, sd_b = ours.state_dict(), ref.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        if "momentum." in k and method in ("mmcr", "detcon_b", "smog"):
            continue  # ours applied the EMA after the last step too; the examples do it before the next one
        assert torch.allclose(sd_a[k].float(), sd_b[k].float(), atol=1e-5), (k, (sd_a[k].float() - sd_b[k].float()).abs().max())


def test_methods_train_a_torchvision_resnet():
    """The methods with their own feature paths on torchvision's ResNet-18 (stride 32: VICRegL pools the 1x1 map
    to the grid, DetCon pools masks on it, PIRL embeds 16 px tiles): one step is finite and moves the backbone.
    The others use pooled features, as the methods test_training.py trains on torchvision ResNets."""
    g = torch.Generator().manual_seed(0)
    img = lambda s=32: torch.randn(8, 3, s, s, generator=g)  # noqa: E731
    masks = [torch.randint(0, 4, (8, 1, 32, 32), generator=g) for _ in range(2)]
    views = {
        "vicregl": [img(), img(), torch.rand(8, 4, 4, 2, generator=g), torch.rand(8, 4, 4, 2, generator=g)],
        "detcon_b": [img(), masks[0], img(), masks[1]], "pirl": [img(), torch.randn(8, 9, 3, 16, 16, generator=g)],
    }
    resnet = sslhub.create_backbone("resnet18")  # built once: slow to initialise
    for method in ("vicregl", "detcon_b", "pirl"):
        bb = copy.deepcopy(resnet)
        model = build_method(method, bb, bb.num_features, **{**PARITY, "pirl": ({"out_dim": 8}, 2)}[method][0]).train()
        before = bb.conv1.weight.detach().clone()
        loss = model(views[method], (0, 10, 0))
        assert torch.isfinite(loss), method
        loss.backward()
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
        assert not torch.equal(before, bb.conv1.weight), method


def test_bad_settings_name_the_option_to_change():
    bb = sslhub.create_backbone("resnet-9", width=0.0625)
    with pytest.raises(ValueError, match="model.loss_dim=64 is larger"):
        build_method("directclr", bb, bb.num_features, loss_dim=64)
    with pytest.raises(ValueError, match=r"model.w_size >= 2 \* model.out_dim"):
        build_method("wmse", bb, bb.num_features, out_dim=64, w_size=64)
    with pytest.raises(ValueError, match="model.memory_bank_size=2 must be at least"):
        build_method("smog", bb, bb.num_features, n_groups=4, memory_bank_size=2)
    wmse = build_method("wmse", bb, bb.num_features, hidden_dim=8, out_dim=4, w_size=8)
    with pytest.raises(ValueError, match="raise batch_size or lower model.w_size"):
        wmse([torch.randn(4, 3, 32, 32)] * 2, (0, 1, 0))
    with pytest.raises(ValueError, match="DetConSTransform"):
        build_method("detcon_s", bb, bb.num_features, out_dim=8)([torch.randn(4, 3, 32, 32)] * 2, (0, 1, 0))


def test_mmcr_loss_is_bounded_with_normalised_embeddings():
    """With the paper's unit-sphere embeddings the loss cannot fall below -sqrt(B * min(B, D)) (the centroids' nuclear
    norm is at most sqrt(rank) times their Frobenius norm, <= sqrt(B)); without, scaling the head scales the loss."""
    torch.manual_seed(0)
    bb = sslhub.create_backbone("resnet-9", width=0.0625)
    views = [torch.randn(8, 3, 32, 32) for _ in range(3)]
    losses = {}
    for normalize in (True, False):
        m = build_method("mmcr", bb, bb.num_features, out_dim=8, normalize=normalize).train()
        with torch.no_grad():
            for head in (m.projection_head, m.projection_head_momentum):
                last = [mod for mod in head.modules() if isinstance(mod, nn.Linear)][-1]
                last.weight.mul_(1000.0)
            losses[normalize] = float(m(views, (0, 10, 0)))
    assert losses[True] >= -((8 * 8) ** 0.5) - 1e-4, losses
    assert losses[False] < 100 * losses[True], losses  # unnormalised: grows with the weights

