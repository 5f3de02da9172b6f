"""Parity of sslhub.losses with lightly 1.6.0 (same inputs, same seeds, |diff| <= 1e-5 in fp32)."""

from __future__ import annotations

import inspect
import os
import zlib

import pytest
import torch
from gloo_ranks import run_ranks

lightly_loss = pytest.importorskip("lightly.loss")

import sslhub.losses as ours  # noqa: E402
from lightly.loss.dcl_loss import negative_mises_fisher_weights  # noqa: E402
from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn  # noqa: E402
from lightly.models.modules import NNMemoryBankModule as LightlyNNMemoryBank  # noqa: E402
from lightly.models.modules.memory_bank import MemoryBankModule as LightlyMemoryBank  # noqa: E402

ATOL = 1e-5
# lightly's DCLW weighting wraps a tensor in torch.tensor(...); not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")
NAMES = [
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "BarlowTwinsLoss",
    "VICRegLoss",
    "DCLLoss",
    "DCLWLoss",
    "SwaVLoss",
    "TiCoLoss",
    "DINOLoss",
]


def _params(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", NAMES)
def test_constructor_and_forward_signatures_match_lightly(name: str) -> None:
    ref, mine = getattr(lightly_loss, name), getattr(ours, name)
    assert _params(mine.__init__) == _params(ref.__init__)
    assert [p[0] for p in _params(mine.forward)] == [p[0] for p in _params(ref.forward)]


def _pair(seed: int, n: int = 8, d: int = 16, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, d, generator=g), torch.randn(n, *shape, d, generator=g)


def _check_loss_and_grads(ref_fn, our_fn, inputs: list[torch.Tensor]) -> None:
    """Same loss value and same input gradients."""
    a = [t.clone().requires_grad_(True) for t in inputs]
    b = [t.clone().requires_grad_(True) for t in inputs]
    ref_loss, our_loss = ref_fn(*a), our_fn(*b)
    assert torch.allclose(our_loss.reshape(()), ref_loss.reshape(()), atol=ATOL, rtol=0), (our_loss, ref_loss)
    ref_loss.sum().backward()
    our_loss.sum().backward()
    for ga, gb in zip(a, b):
        assert torch.allclose(gb.grad, ga.grad, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("name", "kwargs", "dims"),
    [
        ("NTXentLoss", {}, ()),
        ("NTXentLoss", {"temperature": 0.1}, ()),
        ("NTXentLoss", {"temperature": 0.2, "gather_distributed": True}, ()),
        ("NegativeCosineSimilarity", {}, ()),
        ("NegativeCosineSimilarity", {"dim": 2, "eps": 1e-6}, (5,)),
        ("BarlowTwinsLoss", {}, ()),
        ("BarlowTwinsLoss", {"lambda_param": 0.05}, ()),
        ("VICRegLoss", {}, ()),
        ("VICRegLoss", {"lambda_param": 10.0, "mu_param": 5.0, "nu_param": 2.0, "eps": 1e-3}, ()),
        ("VICRegLoss", {}, (4,)),  # (batch, tokens, dim) input
        ("DCLLoss", {}, ()),
        ("DCLLoss", {"temperature": 0.5, "gather_distributed": True}, ()),
        ("DCLWLoss", {}, ()),
        ("DCLWLoss", {"temperature": 0.2, "sigma": 0.8}, ()),
    ],
)
def test_pairwise_losses_match_lightly(name: str, kwargs: dict, dims: tuple[int, ...]) -> None:
    # a fixed seed per case (hash() of a string changes with every process's PYTHONHASHSEED)
    z0, z1 = _pair(zlib.crc32(f"{name} {sorted(kwargs.items())} {dims}".encode()) % 1000, 8, 16, *dims)
    _check_loss_and_grads(getattr(lightly_loss, name)(**kwargs), getattr(ours, name)(**kwargs), [z0, z1])


def test_dcl_custom_weight_fn_and_weights_match_lightly() -> None:
    z0, z1 = _pair(3)
    fn = lambda a, b: ((a - b) ** 2).sum(dim=1)  # noqa: E731
    _check_loss_and_grads(lightly_loss.DCLLoss(weight_fn=fn), ours.DCLLoss(weight_fn=fn), [z0, z1])
    with pytest.warns(UserWarning):  # lightly wraps a tensor in torch.tensor(...)
        ref = negative_mises_fisher_weights(z0, z1, sigma=0.3)
    assert torch.allclose(ours.negative_mises_fisher_weights(z0, z1, sigma=0.3), ref, atol=ATOL)


@pytest.mark.parametrize("bank", [(20, 16), (64, 16)])
def test_ntxent_memory_bank_over_steps_matches_lightly(bank: tuple[int, int]) -> None:
    # Same seed -> same random initial bank; 20 is not a multiple of the batch (wrap-around drops rows).
    torch.manual_seed(0)
    ref = lightly_loss.NTXentLoss(temperature=0.3, memory_bank_size=bank)
    torch.manual_seed(0)
    mine = ours.NTXentLoss(temperature=0.3, memory_bank_size=bank)
    assert torch.equal(mine.memory_bank.bank, ref.memory_bank.bank)
    assert mine.state_dict().keys() == ref.state_dict().keys() == set()  # non-persistent buffers
    for step in range(5):
        z0, z1 = _pair(100 + step)
        _check_loss_and_grads(ref, mine, [z0, z1])
        assert torch.allclose(mine.memory_bank.bank, ref.memory_bank.bank, atol=ATOL)
        assert int(mine.memory_bank.bank_ptr) == int(ref.memory_bank.bank_ptr)
    # Without gradients the bank is queried but not updated.
    before = mine.memory_bank.bank.clone()
    z0, z1 = _pair(7)
    with torch.no_grad():
        assert torch.allclose(mine(z0, z1), ref(z0, z1), atol=ATOL)
    assert torch.equal(mine.memory_bank.bank, before)


def test_memory_bank_size_validation_matches_lightly() -> None:
    for size in [-1, 5, (3,), (1, 2, 3), (4, -2)]:
        with pytest.raises(ValueError):
            LightlyMemoryBank(size)
        with pytest.raises(ValueError):
            ours.MemoryBankModule(size)
    with pytest.raises(ValueError):
        ours.NTXentLoss(temperature=0.0)


@pytest.mark.parametrize("feature_dim_first", [True, False])
def test_memory_bank_module_matches_lightly(feature_dim_first: bool) -> None:
    torch.manual_seed(1)
    ref = LightlyMemoryBank((10, 4), feature_dim_first=feature_dim_first)
    torch.manual_seed(1)
    mine = ours.MemoryBankModule((10, 4), feature_dim_first=feature_dim_first)
    for step in range(4):
        x = torch.randn(3, 4)
        (out_r, bank_r), (out_m, bank_m) = ref(x, update=True), mine(x, update=True)
        assert torch.equal(out_m, out_r) and torch.equal(bank_m, bank_r)


def test_nn_memory_bank_matches_lightly() -> None:
    torch.manual_seed(2)
    ref = LightlyNNMemoryBank(size=(16, 8))
    torch.manual_seed(2)
    mine = ours.NNMemoryBankModule(size=(16, 8))
    for step in range(4):
        x = torch.randn(6, 8)
        assert torch.equal(mine(x, update=step % 2 == 0), ref(x, update=step % 2 == 0))


# The shipped recipes fill their banks exactly: 4096 rows with batch 256 is 16 batches (MoCo, DenseCL's global
# bank, NNCLR, PIRL), SMoG's 76800 is 300. DenseCL's local bank takes 256 x 7 x 7 = 12544 tokens a step at 224 px,
# more than it holds: every step wraps. Scaled down with the same ratios, every step compared, through the wrap and
# the refill after it.
@pytest.mark.parametrize(("batches_per_fill", "batch"), [(16, 4), (300, 2), (16 / 49, 49)])
def test_memory_bank_at_exact_fill_and_wrap_matches_lightly(batches_per_fill: float, batch: int) -> None:
    size = round(batches_per_fill * batch)
    torch.manual_seed(3)
    ref = LightlyMemoryBank((size, 4), feature_dim_first=False)
    torch.manual_seed(3)
    mine = ours.MemoryBankModule((size, 4), feature_dim_first=False)
    g = torch.Generator().manual_seed(4)
    steps = max(3, int(2 * batches_per_fill) + 2)
    ptrs = []
    for step in range(steps):
        x = torch.randn(batch, 4, generator=g)
        (_, bank_r), (_, bank_m) = ref(x, update=True), mine(x, update=True)
        assert torch.equal(bank_m, bank_r), step
        assert int(mine.bank_ptr) == int(ref.bank_ptr), step
        assert torch.equal(mine.bank, ref.bank), step
        ptrs.append(int(mine.bank_ptr))
        if step == max(1, int(batches_per_fill)) - 1:  # the batch that fills the bank ends it (or its first rows fill it)
            assert torch.equal(mine.bank[-batch:], x) if size >= batch else torch.equal(mine.bank, x[:size])
    fill = max(1, int(batches_per_fill))
    assert ptrs[fill - 1] == 0 and ptrs[2 * fill - 1] == 0  # the pointer wraps at the exact fill


@pytest.mark.parametrize("temperature", [0.2, 0.07])  # MoCo and DenseCL, PIRL
def test_ntxent_memory_bank_at_exact_fill_matches_lightly(temperature: float) -> None:
    batch, dim = 8, 16
    bank = (16 * batch, dim)  # the recipes' 4096 / 256
    torch.manual_seed(5)
    ref = lightly_loss.NTXentLoss(temperature=temperature, memory_bank_size=bank)
    torch.manual_seed(5)
    mine = ours.NTXentLoss(temperature=temperature, memory_bank_size=bank)
    for step in range(16 + 3):  # step 15 fills the bank, 16 reads the wrapped one
        z0, z1 = _pair(300 + step, batch, dim)
        _check_loss_and_grads(ref, mine, [z0, z1])
        assert int(mine.memory_bank.bank_ptr) == int(ref.memory_bank.bank_ptr) == (step + 1) % 16 * batch, step
        assert torch.equal(mine.memory_bank.bank, ref.memory_bank.bank), step


def test_nn_memory_bank_at_exact_fill_matches_lightly() -> None:
    """NNCLR's use: the first view queries, the second queries and enqueues; 4096 / 256 batches fill the bank."""
    batch, dim = 4, 8
    torch.manual_seed(6)
    ref = LightlyNNMemoryBank(size=(16 * batch, dim))
    torch.manual_seed(6)
    mine = ours.NNMemoryBankModule(size=(16 * batch, dim))
    g = torch.Generator().manual_seed(7)
    for step in range(16 + 3):
        z0, z1 = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
        assert torch.equal(mine(z0, update=False), ref(z0, update=False)), step
        assert torch.equal(mine(z1, update=True), ref(z1, update=True)), step
        assert int(mine.bank_ptr) == int(ref.bank_ptr) == (step + 1) % 16 * batch, step


def _swav_outputs(seed: int, n_high: int, n_low: int, k: int = 12, n: int = 6) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    high = [torch.randn(n, k, generator=g) for _ in range(n_high)]
    low = [torch.randn(n, k, generator=g) for _ in range(n_low)]
    queue = [torch.randn(3 * n, k, generator=g) for _ in range(n_high)]
    return [high, low, queue]


@pytest.mark.parametrize(
    ("kwargs", "n_high", "n_low", "use_queue"),
    [
        ({}, 2, 0, False),
        ({}, 2, 4, False),
        ({"temperature": 0.2, "sinkhorn_iterations": 1, "sinkhorn_epsilon": 0.1}, 2, 3, True),
        ({"sinkhorn_iterations": 7, "sinkhorn_gather_distributed": True}, 3, 2, True),
        ({"sinkhorn_iterations": 0}, 2, 1, False),
    ],
)
def test_swav_loss_matches_lightly(kwargs: dict, n_high: int, n_low: int, use_queue: bool) -> None:
    high, low, queue = _swav_outputs(n_high * 10 + n_low, n_high, n_low)
    ref_loss_fn, our_loss_fn = lightly_loss.SwaVLoss(**kwargs), ours.SwaVLoss(**kwargs)
    hr = [t.clone().requires_grad_(True) for t in high + low]
    hm = [t.clone().requires_grad_(True) for t in high + low]
    q = queue if use_queue else None
    ref = ref_loss_fn(hr[:n_high], hr[n_high:], q)
    mine = our_loss_fn(hm[:n_high], hm[n_high:], q)
    assert mine.shape == () and torch.allclose(mine, ref.reshape(()), atol=ATOL)
    ref.sum().backward()
    mine.backward()
    for a, b in zip(hr, hm):
        assert torch.allclose(b.grad, a.grad, atol=ATOL)


def test_sinkhorn_matches_lightly_and_balances() -> None:
    scores = torch.randn(10, 7, generator=torch.Generator().manual_seed(5))
    for it, eps in [(1, 0.05), (3, 0.05), (10, 0.2)]:
        q = ours.sinkhorn(scores, iterations=it, epsilon=eps)
        assert torch.allclose(q, lightly_sinkhorn(scores, iterations=it, epsilon=eps), atol=ATOL)
    assert torch.allclose(q.sum(dim=1), torch.ones(10), atol=1e-4)  # one unit of mass per sample


def test_tico_loss_over_steps_matches_lightly() -> None:
    ref, mine = lightly_loss.TiCoLoss(beta=0.7, rho=4.0), ours.TiCoLoss(beta=0.7, rho=4.0)
    for step in range(4):
        z0, z1 = _pair(200 + step, 8, 12)
        _check_loss_and_grads(
            lambda a, b, s=step: ref(a, b, update_covariance_matrix=s != 2),
            lambda a, b, s=step: mine(a, b, update_covariance_matrix=s != 2),
            [z0, z1],
        )
        assert torch.allclose(mine.C, ref.C, atol=ATOL)
    assert mine.state_dict().keys() == ref.state_dict().keys()


@pytest.mark.parametrize(
    ("kwargs", "call"),
    [
        ({"output_dim": 32}, {}),
        ({"output_dim": 32, "warmup_teacher_temp": 0.02, "teacher_temp": 0.07, "warmup_teacher_temp_epochs": 5}, {"epoch": 2}),
        ({"output_dim": 32, "warmup_teacher_temp_epochs": 5}, {"epoch": 9}),
        ({"output_dim": 32, "student_temp": 0.2, "center_momentum": 0.5}, {"teacher_temp": 0.06}),
    ],
)
def test_dino_loss_with_center_updates_matches_lightly(kwargs: dict, call: dict) -> None:
    ref, mine = lightly_loss.DINOLoss(**kwargs), ours.DINOLoss(**kwargs)
    assert ref.state_dict().keys() == mine.state_dict().keys()
    g = torch.Generator().manual_seed(9)
    for step in range(3):
        teacher = [torch.randn(4, 32, generator=g) for _ in range(2)]
        student = [torch.randn(4, 32, generator=g) for _ in range(5)]  # 2 global + 3 local views
        _check_loss_and_grads(
            lambda *s: ref(teacher, list(s), **call), lambda *s: mine(teacher, list(s), **call), student
        )
        assert torch.allclose(mine.center, ref.center, atol=ATOL)
        assert mine.center.abs().sum() > 0  # the center really moved
    with pytest.raises(ValueError):
        mine([torch.randn(2, 32)], [torch.randn(2, 32)])


def test_gather_is_a_noop_without_process_group() -> None:
    from sslhub.losses import dist

    x = torch.randn(3, 4, requires_grad=True)
    (y,) = dist.gather(x)
    assert y is x and dist.rank() == 0 and dist.world_size() == 1
    assert torch.equal(dist.eye_rank(3), torch.eye(3, dtype=torch.bool))
    assert dist.all_reduce_mean(x) is x and dist.concat_all_gather(x) is x


_DIST_LOSSES = ["NTXentLoss", "DCLLoss", "VICRegLoss", "BarlowTwinsLoss", "TiCoLoss"]


def _dist_worker(rank: int, world: int, port: int, full: dict, out: str) -> None:
    import torch.distributed as td

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    td.init_process_group("gloo", rank=rank, world_size=world)
    res = {}
    try:
        n = full["z0"].shape[0] // world
        for name in _DIST_LOSSES:
            for tag, module in (("ours", ours), ("lightly", lightly_loss)):
                z0 = full["z0"][rank * n : (rank + 1) * n].clone().requires_grad_(True)
                z1 = full["z1"][rank * n : (rank + 1) * n].clone().requires_grad_(True)
                loss = getattr(module, name)(gather_distributed=True)(z0, z1)
                loss.backward()
                res[f"{tag}/{name}/{rank}"] = [loss.detach(), z0.grad, z1.grad]
        # a file, not a multiprocessing queue: a queued tensor travels as a file descriptor that the parent can
        # only pick up while this process is still alive (CI lost one that way)
        torch.save(res, f"{out}/rank{rank}.pt")
    finally:
        td.destroy_process_group()


def test_gather_distributed_two_processes(tmp_path) -> None:
    """Two gloo processes with gather_distributed=True: same losses and gradients as Lightly's, and (for
    losses that gather embeddings) the same loss as one process on the full batch, with gradients flowing
    back through the gather (rank grads = world_size x full-batch grads, which DDP's averaging undoes)."""
    world = 2
    full = dict(zip(("z0", "z1"), _pair(42, 8, 6)))
    out = {}
    for res in run_ranks(_dist_worker, tmp_path, full, world=world, preload=("lightly.loss", "sslhub.losses")):
        out.update(res)
    assert len(out) == world * 2 * len(_DIST_LOSSES)
    for name in _DIST_LOSSES:
        for r in range(world):
            for mine, ref in zip(out[f"ours/{name}/{r}"], out[f"lightly/{name}/{r}"]):
                assert torch.allclose(mine, ref, atol=ATOL), name
        if name == "BarlowTwinsLoss":
            continue  # standardises each rank's batch separately (as Lightly), so no full-batch equivalent
        z0, z1 = full["z0"].clone().requires_grad_(True), full["z1"].clone().requires_grad_(True)
        loss = getattr(ours, name)()(z0, z1)
        loss.backward()
        rank_losses = torch.stack([out[f"ours/{name}/{r}"][0] for r in range(world)])
        assert torch.allclose(rank_losses.mean(), loss.detach(), atol=ATOL), name
        g0 = torch.cat([out[f"ours/{name}/{r}"][1] for r in range(world)])
        g1 = torch.cat([out[f"ours/{name}/{r}"][2] for r in range(world)])
        assert torch.allclose(g0 / world, z0.grad, atol=ATOL), name
        assert torch.allclose(g1 / world, z1.grad, atol=ATOL), name
