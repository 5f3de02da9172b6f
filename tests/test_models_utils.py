"""``sslhub.models.utils`` and ``sslhub.utils.scheduler`` versus ``lightly.models.utils`` and
``lightly.utils.scheduler``: same names, signatures and outputs on the same inputs and seeds."""

from __future__ import annotations

import inspect
import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

LU = pytest.importorskip("lightly.models.utils")
LS = pytest.importorskip("lightly.utils.scheduler")

import sslhub.models.utils as U  # noqa: E402
import sslhub.utils.scheduler as S  # noqa: E402

# Lightly 1.6 names sslhub leaves out on purpose (see the module docstring of sslhub.models.utils).
NOT_PORTED = {"get_2d_sine_cosine_positional_embedding_from_grid", "get_1d_sine_cosine_positional_embedding_from_positions"}


def _public_functions(module: object) -> set[str]:
    return {n for n, o in vars(module).items() if not n.startswith("_") and inspect.isfunction(o)
            and o.__module__ == module.__name__}  # fmt: skip


def _params(fn: object) -> list:
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]


def test_every_lightly_function_is_ported_with_its_signature() -> None:
    assert _public_functions(LU) - NOT_PORTED <= set(U.__all__)
    assert NOT_PORTED <= _public_functions(LU)  # the exclusions are real Lightly names
    for name in sorted(_public_functions(LU) - NOT_PORTED):
        mine, ref = _params(getattr(U, name)), _params(getattr(LU, name))
        if name == "concat_all_gather":  # one positional tensor (sslhub.losses.dist names it ``tensor``)
            mine, ref = [p[1:] for p in mine], [p[1:] for p in ref]
        assert mine == ref, name
    assert U.get_2d_sincos_pos_embed is U.get_2d_sine_cosine_positional_embedding
    for name in ("cosine_schedule", "cosine_warmup_schedule", "linear_warmup_schedule", "CosineWarmupScheduler"):
        assert _params(getattr(S, name)) == _params(getattr(LS, name)), name


def test_momentum_and_requires_grad_helpers_equal_lightly() -> None:
    torch.manual_seed(0)
    model, ema = nn.Linear(4, 3), nn.Linear(4, 3)
    ref_ema = nn.Linear(4, 3)
    ref_ema.load_state_dict(ema.state_dict())
    U.update_momentum(model, ema, 0.9)
    LU.update_momentum(model, ref_ema, 0.9)
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), ref_ema.parameters()))
    U.deactivate_requires_grad(model)
    assert not any(p.requires_grad for p in model.parameters())
    U.activate_requires_grad(model)
    assert all(p.requires_grad for p in model.parameters())
    w, w_ref = nn.Parameter(torch.randn(5, 4)), None
    w_ref = nn.Parameter(w.detach().clone())
    U.normalize_weight(w)
    LU.normalize_weight(w_ref)
    assert torch.equal(w, w_ref)


def test_batch_shuffle_round_trip_and_seeded_equality() -> None:
    x = torch.randn(10, 3)
    torch.manual_seed(1)
    shuffled, idx = U.batch_shuffle(x)
    torch.manual_seed(1)
    ref_shuffled, ref_idx = LU.batch_shuffle(x)
    assert torch.equal(shuffled, ref_shuffled) and torch.equal(idx, ref_idx) and not torch.equal(shuffled, x)
    assert torch.equal(U.batch_unshuffle(shuffled, idx), x)
    # Single process: the distributed variants reduce to a plain shuffle (Lightly's need an initialised group).
    torch.manual_seed(2)
    shuffled, idx = U.batch_shuffle(x, distributed=True)
    torch.manual_seed(2)
    assert torch.equal(shuffled, x[torch.randperm(10)])
    assert torch.equal(U.batch_unshuffle(shuffled, idx, distributed=True), x)
    assert torch.equal(U.concat_all_gather(x), x)


def test_token_helpers_equal_lightly() -> None:
    torch.manual_seed(0)
    tokens, token = torch.randn(2, 6, 4), torch.randn(1, 1, 4)
    index = torch.tensor([[0, 3], [5, 1]])
    values = torch.randn(2, 2, 4)
    mask = torch.rand(2, 6) > 0.5
    for name, args in [("repeat_token", (token, (2, 3))), ("expand_index_like", (index, tokens)),
                       ("get_at_index", (tokens, index)), ("set_at_index", (tokens, index, values)),
                       ("mask_at_index", (tokens, index, token)), ("mask_bool", (tokens, mask, token)),
                       ("prepend_class_token", (tokens, token)), ("normalize_mean_var", (tokens,)),
                       ("apply_masks", (tokens, [index, index.flip(1)])),
                       ("repeat_interleave_batch", (torch.arange(12.0).view(6, 2), 2, 3))]:  # fmt: skip
        assert torch.equal(getattr(U, name)(*args), getattr(LU, name)(*args)), name
    images = torch.randn(2, 3, 8, 8)
    patches = U.patchify(images, 4)
    assert torch.equal(patches, LU.patchify(images, 4))
    assert torch.equal(U.unpatchify(patches, 4), LU.unpatchify(patches, 4))
    for name, args, kwargs in [("random_token_mask", ((3, 10),), dict(mask_ratio=0.7)),
                               ("random_token_mask", ((3, 10),), dict(mask_class_token=True)),
                               ("random_prefix_mask", ((3, 10), 6), {})]:  # fmt: skip
        torch.manual_seed(5)
        mine = getattr(U, name)(*args, **kwargs)
        torch.manual_seed(5)
        ref = getattr(LU, name)(*args, **kwargs)
        mine, ref = (mine, ref) if isinstance(mine, tuple) else ((mine,), (ref,))
        assert all(torch.equal(a, b) for a, b in zip(mine, ref)), name


def test_dense_matching_and_pooling_equal_lightly() -> None:
    torch.manual_seed(0)
    x, y, values = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 3)
    assert torch.equal(U.most_similar_index(x, y), LU.most_similar_index(x, y))
    assert torch.equal(U.select_most_similar(x, y, values), LU.select_most_similar(x, y, values))
    y = torch.randn(2, 7, 8)
    distances = torch.cdist(x, y)
    for k in (None, -1, 3, 10):
        for a, b in zip(U.nearest_neighbors(x, y, distances, k), LU.nearest_neighbors(x, y, distances, k)):
            assert torch.equal(a, b)
    source = torch.randn(2, 4, 6, 6)
    mask = torch.randint(0, 3, (2, 6, 6))  # label 3 never occurs: an empty region
    for reduce in ("mean", "sum", "amax"):
        mine = U.pool_masked(source, mask, 4, reduce=reduce)
        assert torch.allclose(mine, LU._mask_reduce_batched(source, mask, 4, reduce=reduce), atol=1e-6)
        assert torch.equal(mine[..., 3], torch.zeros(2, 4))
    # (Lightly's own (C, H, W) path passes ``reduce`` as ``num_cls`` and fails: compare with its batched path.)
    assert torch.allclose(U.pool_masked(source[0], mask[0], 4), LU.pool_masked(source[:1], mask[:1], 4)[0], atol=1e-6)
    with pytest.raises(ValueError, match="3 or 4 dimensions"):
        U.pool_masked(source[0, 0], mask[0], 4)


def test_lightly_private_helpers_its_tests_import_equal_lightly() -> None:
    """``_mask_reduce``, ``_mask_reduce_batched`` and ``_no_grad_trunc_normal``: Lightly's test of this module imports
    them, so they exist under its names with its numbers."""
    source, mask = torch.randn(2, 4, 6, 6), torch.randint(0, 3, (2, 6, 6))
    for reduce in ("mean", "sum", "amax"):
        assert torch.equal(U._mask_reduce_batched(source, mask, 4, reduce), LU._mask_reduce_batched(source, mask, 4, reduce))
        assert torch.equal(U._mask_reduce(source[1], mask[1], 4, reduce), LU._mask_reduce(source[1], mask[1], 4, reduce))
    draws = []
    for fn in (U._no_grad_trunc_normal, LU._no_grad_trunc_normal):
        torch.manual_seed(3)
        draws.append(fn(torch.empty(64, 32), mean=0.5, std=2.0, a=-1.0, b=3.0))
    assert torch.equal(draws[0], draws[1])
    assert draws[0].min() >= -1.0 and draws[0].max() <= 3.0 and draws[0].std() > 0.5


def test_weight_decay_groups_and_leaf_modules_equal_lightly() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2), nn.LayerNorm(2)))
    for kwargs in ({}, dict(decay_norm=True), dict(decay_bias=True), dict(decay_norm=True, decay_bias=True)):
        mine, ref = U.get_weight_decay_parameters([model], **kwargs), LU.get_weight_decay_parameters([model], **kwargs)
        assert [[id(p) for p in group] for group in mine] == [[id(p) for p in group] for group in ref], kwargs
    assert U.get_named_leaf_modules(model) == LU.get_named_leaf_modules(model)


def test_positional_embeddings_equal_lightly() -> None:
    for kwargs in (dict(), dict(cls_token=False), dict(num_prefix_tokens=3)):
        mine, ref = U.get_2d_sine_cosine_positional_embedding(16, 4, **kwargs), LU.get_2d_sine_cosine_positional_embedding(16, 4, **kwargs)
        assert isinstance(mine, np.ndarray) and mine.dtype == ref.dtype and mine.shape == ref.shape
        np.testing.assert_allclose(mine, ref, atol=1e-6)
    for kwargs in (dict(), dict(has_class_token=False), dict(num_prefix_tokens=2)):
        n_prefix = kwargs.get("num_prefix_tokens", int(kwargs.get("has_class_token", True)))
        mine, ref = nn.Parameter(torch.zeros(1, n_prefix + 9, 8)), nn.Parameter(torch.zeros(1, n_prefix + 9, 8))
        U.initialize_2d_sine_cosine_positional_embedding(mine, **kwargs)
        LU.initialize_2d_sine_cosine_positional_embedding(ref, **kwargs)
        assert torch.allclose(mine, ref, atol=1e-6) and not mine.requires_grad
    learn = nn.Parameter(torch.zeros(1, 5, 8), requires_grad=False)
    U.initialize_positional_embedding(learn, "learn", 1)
    assert learn.requires_grad and 0 < learn.std() < 0.05
    with pytest.raises(ValueError, match="Invalid positional embedding strategy"):
        U.initialize_positional_embedding(learn, "fourier", 1)


def test_drop_path_and_stochastic_depth() -> None:
    timm = pytest.importorskip("timm")
    from timm.layers import DropPath

    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=4, num_classes=0)
    ref = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=4, num_classes=0)
    U.update_drop_path_rate(vit, 0.3, mode="uniform")
    LU.update_drop_path_rate(ref, 0.3, mode="uniform")
    assert [b.drop_path1.drop_prob for b in vit.blocks] == [b.drop_path1.drop_prob for b in ref.blocks] == [0.3] * 4
    U.update_drop_path_rate(vit, 0.3, mode="linear")
    LU.update_drop_path_rate(ref, 0.3, mode="linear")
    assert isinstance(vit.blocks[0].drop_path1, nn.Identity) and isinstance(ref.blocks[0].drop_path1, nn.Identity)
    rates = [b.drop_path2.drop_prob for b in vit.blocks[1:]]
    assert rates == pytest.approx([0.1, 0.2, 0.3]) and all(isinstance(b.drop_path2, DropPath) for b in vit.blocks[1:])
    assert [b.drop_path2.drop_prob for b in ref.blocks[1:]] == [0.3] * 3  # Lightly's linear mode (documented above)
    with pytest.raises(ValueError, match="Unknown mode"):
        U.update_drop_path_rate(vit, 0.1, mode="cosine")
    from torchvision.models import VisionTransformer

    tv_vit = VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16)
    U.add_stochastic_depth_to_blocks(tv_vit, prob=0.2)
    block = tv_vit.encoder.layers[0]
    assert isinstance(block.mlp, nn.Sequential) and block.mlp[-1].p == 0.2 and block.dropout[-1].p == 0.2


def test_block_masks_equal_lightly_under_the_same_python_seed() -> None:
    for kwargs in (dict(), dict(batch_mask_ratio=1.0, max_image_mask_ratio=0.8, min_num_masks_per_block=2)):
        random.seed(3)
        mine = U.random_block_mask((6, 8, 8), **kwargs)
        random.seed(3)
        ref = LU.random_block_mask((6, 8, 8), **kwargs)
        assert mine.dtype == torch.bool and torch.equal(mine, ref), kwargs
        assert mine.flatten(1).any(1).sum() == int(6 * kwargs.get("batch_mask_ratio", 0.5))
    random.seed(4)
    mine = U.random_block_mask_image((10, 12), 30, max_num_masks_per_block=12)
    random.seed(4)
    assert torch.equal(mine, LU.random_block_mask_image((10, 12), 30, max_num_masks_per_block=12))
    assert 0 < mine.sum() <= 30
    with pytest.raises(ValueError, match="max_image_mask_ratio"):
        U.random_block_mask((2, 4, 4), min_image_mask_ratio=0.5, max_image_mask_ratio=0.1)


def test_mask_helpers_have_one_home_in_backbones() -> None:
    from sslhub.backbones import block_masks, ijepa_predictor

    for module, names in ((block_masks, ("random_block_mask", "random_block_mask_image", "random_grid_token_mask",
                                         "random_inverse_block_mask")),
                          (ijepa_predictor, ("apply_masks", "repeat_interleave_batch"))):  # fmt: skip
        for name in names:
            assert getattr(U, name) is getattr(module, name), name


def test_random_grid_token_mask_equals_lightly_under_the_same_torch_seed() -> None:
    for size, kwargs in (((3, 65), {}), ((2, 64 + 4), dict(mask_ratio=0.5, grid_size=2, num_prefix_tokens=4)),
                         ((2, 36), dict(grid_size=3, num_prefix_tokens=0, mask_ratio=0.0)),
                         ((1, 17), dict(grid_size=4, mask_ratio=1.0))):  # fmt: skip
        torch.manual_seed(7)
        mine = U.random_grid_token_mask(size, **kwargs)
        after = torch.rand(1)
        torch.manual_seed(7)
        ref = LU.random_grid_token_mask(size, **kwargs)
        assert torch.equal(after, torch.rand(1)), kwargs  # same number of draws
        assert all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(mine, ref)), kwargs
        keep, masked = mine
        n_prefix = kwargs.get("num_prefix_tokens", 1)
        assert torch.equal(keep[:, :n_prefix], torch.arange(n_prefix).expand(size[0], -1))
        assert torch.equal(torch.cat([keep, masked], 1).sort(1).values, torch.arange(size[1]).expand(size[0], -1))
    for size, kwargs, match in (((2, 1), {}, "greater than num_prefix_tokens"), ((2, 51), {}, "perfect square"),
                                ((2, 37), dict(grid_size=4), "divisible by grid_size")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            U.random_grid_token_mask(size, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs_list"),
    [
        ("cosine_schedule", [dict(step=s, max_steps=10, start_value=1.0, end_value=0.1) for s in range(12)]
                            + [dict(step=s, max_steps=10, start_value=0.0, end_value=2.0, period=4) for s in range(9)]
                            + [dict(step=0, max_steps=1, start_value=1.0, end_value=0.5)]),
        ("cosine_warmup_schedule", [dict(step=s, max_steps=10, start_value=1.0, end_value=0.0, warmup_steps=3,
                                         warmup_start_value=0.0) for s in range(11)]
                                   + [dict(step=s, max_steps=10, start_value=1.0, end_value=0.0, warmup_steps=2,
                                           warmup_start_value=0.1, warmup_end_value=0.5, period=3) for s in range(10)]),
        ("linear_warmup_schedule", [dict(step=s, warmup_steps=4, start_value=0.0, end_value=1.0) for s in range(6)]),
    ],
)  # fmt: skip
def test_schedules_equal_lightly(name: str, kwargs_list: list[dict]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps past max_steps warn in both
        for kwargs in kwargs_list:
            mine, ref = getattr(S, name)(**kwargs), getattr(LS, name)(**kwargs)
            assert type(mine) is float and mine == pytest.approx(ref, abs=1e-12), kwargs


def test_schedule_errors_match_lightly() -> None:
    for name, kwargs in [("cosine_schedule", dict(step=-1, max_steps=3, start_value=1, end_value=0)),
                         ("cosine_schedule", dict(step=1, max_steps=3, start_value=1, end_value=0, period=0)),
                         ("cosine_warmup_schedule", dict(step=0, max_steps=3, start_value=1, end_value=0, warmup_steps=5,
                                                         warmup_start_value=0)),
                         ("linear_warmup_schedule", dict(step=0, warmup_steps=2, start_value=2.0, end_value=1.0))]:  # fmt: skip
        with pytest.raises(ValueError) as mine:
            getattr(S, name)(**kwargs)
        with pytest.raises(ValueError) as ref:
            getattr(LS, name)(**kwargs)
        assert str(mine.value) == str(ref.value)
    with pytest.warns(RuntimeWarning, match="exceeds max_steps"):
        S.cosine_schedule(step=5, max_steps=3, start_value=1.0, end_value=0.0)


def test_cosine_warmup_scheduler_steps_like_lightly() -> None:
    lrs = []
    for module in (S, LS):
        optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.5)
        scheduler = module.CosineWarmupScheduler(optimizer, warmup_epochs=2, max_epochs=8, end_value=0.01)
        steps = []
        for _ in range(8):
            steps.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        lrs.append(steps)
    assert lrs[0] == pytest.approx(lrs[1], abs=1e-12)
    assert lrs[0][1] == pytest.approx(0.5) and lrs[0][-1] < 0.1  # warmed up, then decayed


def test_heads_utils_reexport_the_schedules() -> None:
    from sslhub.heads import utils as heads_utils

    assert heads_utils.cosine_schedule is S.cosine_schedule
    assert heads_utils.cosine_warmup_schedule is S.cosine_warmup_schedule
