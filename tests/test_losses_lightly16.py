"""Lightly 1.6's remaining image-level losses (issue 14) against the installed ``lightly``: same signatures,
same loss values and input gradients (|diff| <= 1e-5, fp32), same buffers; gathered losses match under 2 processes."""

from __future__ import annotations

import inspect
import os

import pytest
import torch
from gloo_ranks import run_ranks

lightly_loss = pytest.importorskip("lightly.loss")

import sslhub.losses as ours  # noqa: E402

ATOL = 1e-5
NAMES = ["VICRegLLoss", "MMCRLoss", "DetConSLoss", "DetConBLoss", "WMSELoss", "Whitening2d", "EMPSSLLoss",
         "DirectCLRLoss", "FroSSLLoss", "MACLLoss", "VISRegLoss", "PatchKernelAlignmentLoss"]  # fmt: skip


def _params(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", NAMES)
def test_signatures_match_lightly(name: str) -> None:
    ref, mine = getattr(lightly_loss, name), getattr(ours, name)
    own = _params(mine.__init__)
    theirs = _params(ref.__init__)
    if name == "WMSELoss":  # the default loss_fn is each library's own (equal) function: compare it by behaviour
        own, theirs = [p for p in own if p[0] != "loss_fn"], [p for p in theirs if p[0] != "loss_fn"]
    assert own == theirs
    assert [p[:1] + p[2:] for p in _params(mine.forward)] == [p[:1] + p[2:] for p in _params(ref.forward)]
    assert list(ours.VISRegLossComponents._fields) == list(lightly_loss.VISRegLossComponents._fields)


def _rand(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _check(ref_fn, our_fn, inputs: list[torch.Tensor], seed: int | None = None) -> None:
    """Same loss and same gradients for every float input; ``seed`` reseeds before each call (random losses)."""
    a = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    b = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    if seed is not None:
        torch.manual_seed(seed)
    ref = ref_fn(*a)
    if seed is not None:
        torch.manual_seed(seed)
    mine = our_fn(*b)
    assert mine.shape == ref.shape and torch.allclose(mine, ref, atol=ATOL, rtol=0), (mine, ref)
    ref.sum().backward()
    mine.sum().backward()
    for ga, gb in zip(a, b):
        if ga.grad is None or gb.grad is None:  # inputs used only for indices (VICRegL grids)
            assert ga.grad is None and gb.grad is None or not (ga.grad if gb.grad is None else gb.grad).any()
        elif ga.requires_grad:
            assert torch.allclose(gb.grad, ga.grad, atol=ATOL, rtol=1e-4), (gb.grad - ga.grad).abs().max()


def _vicregl_call(loss):
    def call(g0, g1, l0, l1, c0, c1, d0, d1, grid0, grid1, lgrid0, lgrid1):
        return loss(global_view_features=[(g0, l0), (g1, l1)], global_view_grids=[grid0, grid1],
                    local_view_features=[(c0, d0), (c1, d1)], local_view_grids=[lgrid0, lgrid1])  # fmt: skip
    return call


@pytest.mark.parametrize("kwargs", [{}, {"alpha": 0.4, "num_matches": (6, 3), "nu_param": 2.0}])
def test_vicregl_loss_matches_lightly(kwargs: dict) -> None:
    b, d = 6, 8
    inputs = [_rand(1, b, d), _rand(2, b, d), _rand(3, b, 5, 5, d), _rand(4, b, 5, 5, d), _rand(5, b, d), _rand(6, b, d),
              _rand(7, b, 3, 3, d), _rand(8, b, 3, 3, d), torch.rand(b, 5, 5, 2), torch.rand(b, 5, 5, 2),
              torch.rand(b, 3, 3, 2), torch.rand(b, 3, 3, 2)]  # fmt: skip
    _check(_vicregl_call(lightly_loss.VICRegLLoss(**kwargs)), _vicregl_call(ours.VICRegLLoss(**kwargs)), inputs)
    # global views only
    ref, mine = lightly_loss.VICRegLLoss(**kwargs), ours.VICRegLLoss(**kwargs)
    glob = [(inputs[0], inputs[2]), (inputs[1], inputs[3])]
    assert torch.allclose(mine(glob, inputs[8:10]), ref(glob, inputs[8:10]), atol=ATOL)
    with pytest.raises(ValueError, match="both be set or None"):
        mine(glob, inputs[8:10], local_view_features=glob)


@pytest.mark.parametrize("k", [2, 4])
def test_mmcr_loss_matches_lightly(k: int) -> None:
    _check(lightly_loss.MMCRLoss(), ours.MMCRLoss(lmda=5e-3), [_rand(k, 8, k, 16), _rand(k + 1, 8, k, 16)])
    _check(lightly_loss.MMCRLoss(lmda=0.1), ours.MMCRLoss(lmda=0.1), [_rand(9, 4, k, 3), _rand(10, 4, k, 3)])
    with pytest.raises(ValueError):
        ours.MMCRLoss(lmda=-1)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_detcon_losses_match_lightly(temperature: float) -> None:
    b, m, d = 4, 6, 8
    g = torch.Generator().manual_seed(0)
    masks = [torch.randint(0, 5, (b, m), generator=g) for _ in range(2)]
    feats = [_rand(20 + i, b, m, d) for i in range(4)]
    kw = dict(temperature=temperature, gather_distributed=False)
    _check(lightly_loss.DetConBLoss(**kw), ours.DetConBLoss(**kw), feats + masks)
    _check(lightly_loss.DetConSLoss(**kw), ours.DetConSLoss(**kw), feats[:2] + masks)
    _check(lightly_loss.DetConSLoss(), ours.DetConSLoss(), feats[:2] + masks)  # gather default on, one process
    with pytest.raises(ValueError, match="Illegal temperature"):
        ours.DetConBLoss(temperature=0.0)


def test_wmse_loss_and_whitening_match_lightly() -> None:
    for kw, bs in ((dict(embedding_dim=4, w_size=8), 16), (dict(embedding_dim=3, w_size=6, num_samples=3, w_iter=2, eps=0.1), 12)):
        x = _rand(bs, kw.get("num_samples", 2) * bs, kw["embedding_dim"])
        ref, mine = lightly_loss.WMSELoss(**kw), ours.WMSELoss(**kw)
        for step in range(2):  # running statistics carry over
            _check(ref, mine, [x + step], seed=step)
        assert mine.state_dict().keys() == ref.state_dict().keys()
        for k, v in ref.state_dict().items():
            assert torch.allclose(mine.state_dict()[k], v, atol=ATOL), k
    with pytest.raises(ValueError, match="w_size"):
        ours.WMSELoss(embedding_dim=128, w_size=128)
    with pytest.raises(ValueError, match="batch size"):
        ours.WMSELoss(embedding_dim=4, w_size=8)(torch.randn(8, 4))
    # the layer alone, training then evaluation (running statistics)
    ref, mine = lightly_loss.Whitening2d(5, momentum=0.3), ours.Whitening2d(5, momentum=0.3)
    x = _rand(30, 20, 5)
    _check(ref, mine, [x])
    ref.eval(), mine.eval()
    _check(ref, mine, [x * 2])


def test_multiview_and_contrastive_losses_match_lightly() -> None:
    views = [_rand(40 + i, 8, 6) for i in range(4)]
    _check(lambda *v: lightly_loss.EMPSSLLoss()(list(v)), lambda *v: ours.EMPSSLLoss()(list(v)), views)
    emp = dict(tcr_eps=0.5, inv_coef=10.0)
    _check(lambda *v: lightly_loss.EMPSSLLoss(**emp)(list(v)), lambda *v: ours.EMPSSLLoss(**emp)(list(v)), views[:2])
    for vs in (views, [_rand(50 + i, 4, 10) for i in range(3)]):  # batch > dim and batch < dim
        _check(lambda *v: lightly_loss.FroSSLLoss(0.5)(list(v)), lambda *v: ours.FroSSLLoss(0.5)(list(v)), vs)
    with pytest.raises(ValueError, match="at least two views"):
        ours.FroSSLLoss()([views[0]])
    pair = [_rand(60, 8, 16, 2, 2), _rand(61, 8, 16, 2, 2)]
    for kw in ({}, {"loss_dim": 10, "temperature": 0.2}):
        _check(lightly_loss.DirectCLRLoss(**kw), ours.DirectCLRLoss(**kw), pair)
    for kw in ({}, {"temperature": 0.3, "alpha": 1.0, "A_0": 0.2}):
        _check(lightly_loss.MACLLoss(**kw), ours.MACLLoss(**kw), [_rand(62, 8, 16), _rand(63, 8, 16)])
    for bad in ({"alpha": 2.0}, {"A_0": -0.1}, {"temperature": 0.0}):
        with pytest.raises(ValueError):
            ours.MACLLoss(**bad)


def test_visreg_loss_matches_lightly() -> None:
    local, glob = _rand(70, 4, 8, 16), _rand(71, 2, 8, 16)
    for kw in ({"num_slices": 64}, {"lambda_param": 0.3, "num_slices": 5, "lambda_center": 2.0, "eps": 0.01}):
        ref, mine = lightly_loss.VISRegLoss(**kw), ours.VISRegLoss(**kw)
        _check(lambda a, b: ref(local_proj=a, global_proj=b), lambda a, b: mine(local_proj=a, global_proj=b), [local, glob], seed=3)
        torch.manual_seed(4)
        rc = ref.forward_components(local_proj=local, global_proj=glob)
        torch.manual_seed(4)
        mc = mine.forward_components(local_proj=local, global_proj=glob)
        for f in rc._fields:
            assert torch.allclose(getattr(mc, f), getattr(rc, f), atol=ATOL), f
    with pytest.raises(ValueError, match="unit interval"):
        ours.VISRegLoss(lambda_param=1.5)
    with pytest.raises(ValueError, match="local_proj must have shape"):
        ours.VISRegLoss()(local_proj=local[0], global_proj=glob)


@pytest.mark.parametrize("max_tokens", [None, 5])
def test_patch_kernel_alignment_loss_matches_lightly(max_tokens: int | None) -> None:
    s, t = _rand(80, 3, 9, 8), _rand(81, 3, 9, 8)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[0, :4] = True
    mask[2, :8] = True  # one valid token: this image is left out
    for m in (None, mask):
        _check(lambda a, b: lightly_loss.PatchKernelAlignmentLoss(max_tokens)(a, b, m),
               lambda a, b: ours.PatchKernelAlignmentLoss(max_tokens)(a, b, m), [s, t], seed=5)  # fmt: skip
    with pytest.raises(ValueError, match="max_tokens"):
        ours.PatchKernelAlignmentLoss(max_tokens=1)


def test_roi_resample_to_grid_matches_lightly_and_feeds_the_cross_view_loss() -> None:
    assert _params(ours.roi_resample_to_grid) == _params(lightly_loss.roi_resample_to_grid)
    maps = _rand(82, 2, 8, 6, 7)
    boxes = torch.tensor([[0.5, 1.0, 6.0, 5.5], [2.0, 0.0, 7.0, 3.0]])
    _check(lambda m: lightly_loss.roi_resample_to_grid(m, boxes, 3, 4), lambda m: ours.roi_resample_to_grid(m, boxes, 3, 4),
           [maps])  # fmt: skip
    student, teacher = ours.roi_resample_to_grid(maps, boxes, 3, 3), ours.roi_resample_to_grid(maps.flip(3), boxes, 3, 3)
    assert student.shape == (2, 9, 8)
    _check(lightly_loss.PatchKernelAlignmentLoss(), ours.PatchKernelAlignmentLoss(), [student, teacher])
    for bad, match in ((maps[0], "feature_map must have shape"), (boxes[:, :3], "boxes must have shape"),
                       (boxes[:1], "does not match")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            ours.roi_resample_to_grid(*(bad, boxes) if match.startswith("feature") else (maps, bad), 3, 3)


def _gather_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    b, d = 4, 6
    g = torch.Generator().manual_seed(rank)
    masks = [torch.randint(0, 3, (b, 5), generator=g) for _ in range(2)]
    feats = [torch.randn(b, 5, d, generator=g) for _ in range(4)]
    glob = [torch.randn(b, d, generator=g) for _ in range(2)]
    loc = [torch.randn(b, 3, 3, d, generator=g) for _ in range(2)]
    grids = [torch.rand(b, 3, 3, 2, generator=g) for _ in range(2)]
    proj = torch.randn(3, b, d, generator=g)
    res = {}
    for lib in ("ref", "ours"):
        L = lightly_loss if lib == "ref" else ours
        cases = {
            "detconb": (lambda a: L.DetConBLoss(gather_distributed=True)(*a, *masks), feats),
            "vicregl": (lambda a: L.VICRegLLoss(gather_distributed=True)([(a[0], a[2]), (a[1], a[3])], grids), glob + loc),
            "visreg": (lambda a: L.VISRegLoss(num_slices=8, gather_distributed=True)(local_proj=a[0][1:], global_proj=a[0][:1]), [proj]),
            "lejepa": (lambda a: L.LeJEPALoss(sigreg_num_vectors=16, gather_distributed=True)(local_proj=a[0][1:], global_proj=a[0][:1]), [proj]),
            "sigreg": (lambda a: L.SIGReg(num_vectors=16, gather_distributed=True)(a[0]), [proj]),
        }  # fmt: skip
        for name, (fn, inputs) in cases.items():
            xs = [x.clone().requires_grad_(True) for x in inputs]
            torch.manual_seed(0)
            loss = fn(xs)
            loss.backward()
            res[f"{lib}_{name}"] = [loss.detach()] + [x.grad for x in xs]
    res["local_detconb"] = ours.DetConBLoss(gather_distributed=False)(*feats, *masks).detach()
    torch.save(res, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_gathered_losses_match_lightly_under_two_processes(tmp_path) -> None:
    for r, res in enumerate(run_ranks(_gather_worker, tmp_path, preload=("lightly.loss", "sslhub.losses"))):
        for name in ("detconb", "vicregl", "visreg", "lejepa", "sigreg"):
            for a, b in zip(res[f"ours_{name}"], res[f"ref_{name}"]):
                assert torch.allclose(a, b, atol=ATOL), (r, name)
        assert not torch.allclose(res["ours_detconb"][0], res["local_detconb"])  # the other rank's negatives count
