"""Heads of the issue-14 methods (VICRegL, MMCR, SMoG) against lightly 1.6: same signatures, module trees,
state-dict keys, initialisation and outputs; SMoG's group-feature updates behave identically."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

lightly_heads = pytest.importorskip("lightly.models.modules.heads")

import sslhub.heads as ours  # noqa: E402

ATOL = 1e-5
CASES = [
    ("VicRegLLocalProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("MMCRProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("MMCRProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6, num_layers=3, batch_norm=False, use_bias=True)),
    ("MMCRProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6, num_layers=1)),
    ("SMoGProjectionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
    ("SMoGPredictionHead", dict(input_dim=12, hidden_dim=10, output_dim=6)),
]
NAMES = sorted({n for n, _ in CASES} | {"SMoGPrototypes"})


@pytest.mark.parametrize("name", NAMES)
def test_signatures_match_lightly(name: str) -> None:
    ref, mine = inspect.signature(getattr(lightly_heads, name)), inspect.signature(getattr(ours, name))
    assert [(p.name, p.default) for p in mine.parameters.values()] == [(p.name, p.default) for p in ref.parameters.values()]


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_heads_match_lightly(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    ref = getattr(lightly_heads, name)(**kwargs)
    torch.manual_seed(0)
    mine = getattr(ours, name)(**kwargs)
    assert str(mine) == str(ref)
    for (k, a), (k2, b) in zip(ref.state_dict().items(), mine.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k  # same keys, order and seeded initialisation
    for m in ref.modules():  # non-trivial running statistics, copied over by the state dict
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    mine.load_state_dict(ref.state_dict(), strict=True)
    shape = (2, 3, 3, 12) if name.startswith("VicRegL") else (6, 12)  # the local head maps feature grids
    x = torch.randn(*shape)
    for train in (False, True):
        ref.train(train), mine.train(train)
        assert torch.allclose(mine(x), ref(x), atol=ATOL, rtol=0)


def test_smog_prototypes_match_lightly() -> None:
    g = torch.randn(5, 8)
    ref, mine = lightly_heads.SMoGPrototypes(g.clone(), beta=0.9), ours.SMoGPrototypes(g.clone(), beta=0.9)
    assert list(mine.state_dict()) == list(ref.state_dict()) == ["group_features"]
    assert not mine.group_features.requires_grad
    x = torch.randn(16, 8)
    assert torch.allclose(mine(x, mine.group_features, 0.2), ref(x, ref.group_features, 0.2), atol=ATOL)
    assert torch.equal(mine.assign_groups(x), ref.assign_groups(x))
    new_ref, new_mine = ref.get_updated_group_features(x), mine.get_updated_group_features(x)
    assert torch.allclose(new_mine, new_ref, atol=ATOL) and not torch.allclose(new_mine, g)
    ref.set_group_features(new_ref), mine.set_group_features(new_mine)
    assert torch.allclose(mine.group_features, ref.group_features, atol=ATOL)
