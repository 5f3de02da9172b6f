"""sslhub.heads versus lightly 1.6.0: same modules, same state-dict keys, weights load both ways and give
the same outputs; momentum utilities and schedules behave identically."""

from __future__ import annotations

import copy
import inspect
import warnings

import pytest
import torch
from torch import nn

lightly_heads = pytest.importorskip("lightly.models.modules.heads")

import sslhub.heads as ours  # noqa: E402
from lightly.models import utils as lightly_utils  # noqa: E402
from lightly.utils import scheduler as lightly_scheduler  # noqa: E402

ATOL = 1e-5

# (class name, small constructor kwargs); several configs per head where options change the structure.
CASES = [
    ("SimCLRProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("SimCLRProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6, num_layers=4, batch_norm=False)),
    ("MoCoProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("MoCoProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6, num_layers=3, batch_norm=True)),
    ("BYOLProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("BYOLPredictionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("SimSiamProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("SimSiamPredictionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("BarlowTwinsProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("VICRegProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("VICRegProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6, num_layers=2)),
    ("VICRegProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6, num_layers=5)),
    ("NNCLRProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("NNCLRPredictionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("SwaVProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("SwaVPrototypes", dict(input_dim=12, n_prototypes=7)),
    ("SwaVPrototypes", dict(input_dim=12, n_prototypes=[7, 5, 3])),
    ("TiCoProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("DINOProjectionHead", dict(input_dim=12, hidden_dim=10, bottleneck_dim=8, output_dim=6)),
    ("DINOProjectionHead", dict(input_dim=12, hidden_dim=10, bottleneck_dim=8, output_dim=6, batch_norm=True, norm_last_layer=False)),
    ("DenseCLProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]


def _build(name: str, kwargs: dict, seed: int) -> tuple[nn.Module, nn.Module]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # lightly's DINO head uses the legacy weight_norm
        torch.manual_seed(seed)
        ref = getattr(lightly_heads, name)(**kwargs)
    torch.manual_seed(seed + 1)  # different init, so loading really has to copy every tensor
    return ref, getattr(ours, name)(**kwargs)


def _randomize_buffers(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d) and m.running_mean is not None:
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)


def _outputs(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    out = module(x)
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("name", sorted({n for n, _ in CASES}))
def test_constructor_signature_matches_lightly(name: str) -> None:
    ref, mine = inspect.signature(getattr(lightly_heads, name)), inspect.signature(getattr(ours, name))
    assert [(p.name, p.default) for p in mine.parameters.values()] == [
        (p.name, p.default) for p in ref.parameters.values()
    ]


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_state_dict_loads_both_ways_with_same_outputs(name: str, kwargs: dict) -> None:
    ref, mine = _build(name, kwargs, seed=0)
    with torch.no_grad():
        _randomize_buffers(ref)
    sd_ref = ref.state_dict()
    assert list(mine.state_dict()) == list(sd_ref)  # same keys in the same order
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in sd_ref.items()}
    if name != "DINOProjectionHead":  # DINO's last layer is WeightNormLinear instead of a hooked nn.Linear
        assert str(mine) == str(ref)  # same module tree (types, sizes, options)

    x = torch.randn(6, kwargs["input_dim"], generator=torch.Generator().manual_seed(3))
    mine.load_state_dict(sd_ref, strict=True)
    for train in (False, True):  # eval: running stats; train: batch statistics
        ref.train(train), mine.train(train)
        for a, b in zip(_outputs(ref, x), _outputs(mine, x)):
            assert torch.allclose(a, b, atol=ATOL, rtol=0)

    # ...and back: a fresh lightly head loads ours.
    ref2, _ = _build(name, kwargs, seed=10)
    ref2.load_state_dict(mine.state_dict(), strict=True)
    ref2.eval(), mine.eval()
    for a, b in zip(_outputs(ref2, x), _outputs(mine, x)):
        assert torch.allclose(a, b, atol=ATOL, rtol=0)

    # Same requires_grad flags (e.g. DINO's frozen weight_g).
    assert [p.requires_grad for p in mine.parameters()] == [p.requires_grad for p in ref.parameters()]


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_same_seed_gives_same_initialisation(name: str, kwargs: dict) -> None:
    ref, _ = _build(name, kwargs, seed=5)
    torch.manual_seed(5)
    mine = getattr(ours, name)(**kwargs)
    for (k, a), b in zip(ref.state_dict().items(), mine.state_dict().values()):
        assert torch.equal(a, b), k


def test_generic_projection_head_block_convention() -> None:
    blocks = lambda: [  # noqa: E731
        (8, 6, nn.BatchNorm1d(6), nn.ReLU()),
        (6, 5, None, nn.GELU(), False),
        (5, 4, nn.LayerNorm(4), None, True),
        (4, 3, None, None),
    ]
    torch.manual_seed(0)
    ref = lightly_heads.ProjectionHead(blocks())
    torch.manual_seed(0)
    mine = ours.ProjectionHead(blocks())
    assert str(mine) == str(ref)
    assert [(k, v.shape) for k, v in mine.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
    x = torch.randn(4, 8)
    assert torch.allclose(mine(x), ref(x), atol=ATOL)


def test_dino_head_freezing_and_deepcopy() -> None:
    torch.manual_seed(0)
    head = ours.DINOProjectionHead(12, 10, 8, 6, freeze_last_layer=2)
    teacher = copy.deepcopy(head)  # DINO builds its teacher this way
    head(torch.randn(4, 12)).sum().backward()
    assert head.last_layer.weight_v.grad is not None and head.last_layer.weight_g.grad is None
    head.cancel_last_layer_gradients(current_epoch=1)
    assert head.last_layer.weight_v.grad is None and head.layers[0].weight.grad is not None
    x = torch.randn(4, 12)
    assert torch.allclose(teacher(x), copy.deepcopy(head)(x))  # deepcopy works after a forward too
    ours.update_momentum(head, teacher, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = lightly_heads.DINOProjectionHead(12, 10, 8, 6)
    ref.load_state_dict(head.state_dict())
    assert torch.allclose(ref(x), head(x), atol=ATOL)  # lightly's hook refreshes .weight on forward
    assert torch.allclose(ref.last_layer.weight, head.last_layer.weight, atol=ATOL)  # effective weight


def test_swav_prototypes_normalize_and_frozen_steps() -> None:
    torch.manual_seed(0)
    ref = lightly_heads.SwaVPrototypes(8, [5, 4], n_steps_frozen_prototypes=3)
    mine = ours.SwaVPrototypes(8, [5, 4], n_steps_frozen_prototypes=3)
    mine.load_state_dict(ref.state_dict())
    ref.normalize(), mine.normalize()
    for a, b in zip(ref.parameters(), mine.parameters()):
        assert torch.allclose(a, b, atol=ATOL)
    assert torch.allclose(mine.heads[0].weight.norm(dim=1), torch.ones(5), atol=1e-6)
    x = torch.randn(2, 8)
    with pytest.raises(ValueError):
        mine(x)
    mine(x, step=1)
    assert not any(p.requires_grad for p in mine.parameters())
    mine(x, step=3)
    assert all(p.requires_grad for p in mine.parameters())


def test_update_momentum_and_requires_grad_helpers_match_lightly() -> None:
    torch.manual_seed(0)
    model, ema = nn.Linear(5, 3), nn.Linear(5, 3)
    ema_ref = copy.deepcopy(ema)
    for m in (0.0, 0.5, 0.99):
        ours.update_momentum(model, ema, m)
        lightly_utils.update_momentum(model, ema_ref, m)
        for a, b in zip(ema.parameters(), ema_ref.parameters()):
            assert torch.equal(a, b)
    ours.update_momentum(model, ema, 0.0)
    assert torch.equal(ema.weight, model.weight)  # m=0 copies the online weights
    ours.deactivate_requires_grad(ema)
    assert not any(p.requires_grad for p in ema.parameters())
    ours.activate_requires_grad(ema)
    assert all(p.requires_grad for p in ema.parameters())


def test_cosine_schedules_match_lightly_and_return_python_floats() -> None:
    cases = [
        (0, 10, 0.996, 1.0, None),
        (3, 10, 0.996, 1.0, None),
        (9, 10, 0.996, 1.0, None),
        (12, 10, 0.1, 0.0, None),
        (0, 1, 0.5, 1.0, None),
        (7, 100, 1.0, 0.0, 10),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # step > max_steps warns in both
        for args in cases:
            value = ours.cosine_schedule(*args)
            assert type(value) is float
            assert value == pytest.approx(lightly_scheduler.cosine_schedule(*args), abs=1e-12)
        for step in (0, 2, 5, 9, 10):
            args = (step, 10, 1.0, 0.1, 3, 0.0)
            value = ours.cosine_warmup_schedule(*args)
            assert type(value) is float
            assert value == pytest.approx(lightly_scheduler.cosine_warmup_schedule(*args), abs=1e-12)
    for bad in [(-1, 10, 0.0, 1.0), (0, -1, 0.0, 1.0)]:
        with pytest.raises(ValueError):
            ours.cosine_schedule(*bad)
    with pytest.raises(ValueError):
        ours.cosine_schedule(0, 10, 0.0, 1.0, period=0)
