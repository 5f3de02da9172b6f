"""Lightly's ``lightly.models.utils`` at ``sslhub.models.utils``: port with ``lightly.`` -> ``sslhub.``.

Names with a home elsewhere in sslhub are re-exported from it (momentum helpers from :mod:`sslhub.heads.utils`,
token masking and positional embeddings from :mod:`sslhub.backbones.masked_vit`, block masks from
:mod:`sslhub.backbones.block_masks`, I-JEPA's ``apply_masks`` / ``repeat_interleave_batch`` from
:mod:`sslhub.backbones.ijepa_predictor`, ``patchify`` from :mod:`sslhub.losses.reconstruction`,
``concat_all_gather`` from :mod:`sslhub.losses.dist`, ``nearest_neighbors`` from :mod:`sslhub.losses.dense`); the
rest (batch shuffling, masked pooling, feature matching, weight-decay groups, ...) is defined here with Lightly's
signatures and numbers.

Not here: the numpy internals of the sine-cosine table (``get_2d_sine_cosine_positional_embedding_from_grid``,
``get_1d_sine_cosine_positional_embedding_from_positions``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Optional

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _NormBase

from sslhub.backbones import masked_vit as _vit
from sslhub.backbones.block_masks import (
    random_block_mask,
    random_block_mask_image,
    random_grid_token_mask,
    random_inverse_block_mask,
)
from sslhub.backbones.ijepa_predictor import apply_masks, repeat_interleave_batch
from sslhub.backbones.masked_vit import (
    expand_index_like,
    get_at_index,
    mask_at_index,
    mask_bool,
    random_prefix_mask,
    random_token_mask,
    repeat_token,
    set_at_index,
)
from sslhub.heads.utils import activate_requires_grad, deactivate_requires_grad, normalize_weight, update_momentum
from sslhub.losses.dense import nearest_neighbors
from sslhub.losses.dist import concat_all_gather, rank, world_size
from sslhub.losses.reconstruction import normalize_mean_var, patchify, unpatchify

__all__ = [
    "activate_requires_grad",
    "add_stochastic_depth_to_blocks",
    "apply_masks",
    "batch_shuffle",
    "batch_shuffle_distributed",
    "batch_unshuffle",
    "batch_unshuffle_distributed",
    "concat_all_gather",
    "deactivate_requires_grad",
    "expand_index_like",
    "get_2d_sincos_pos_embed",
    "get_2d_sine_cosine_positional_embedding",
    "get_at_index",
    "get_named_leaf_modules",
    "get_weight_decay_parameters",
    "initialize_2d_sine_cosine_positional_embedding",
    "initialize_learnable_positional_embedding",
    "initialize_positional_embedding",
    "mask_at_index",
    "mask_bool",
    "most_similar_index",
    "nearest_neighbors",
    "normalize_mean_var",
    "normalize_weight",
    "patchify",
    "pool_masked",
    "prepend_class_token",
    "random_block_mask",
    "random_block_mask_image",
    "random_grid_token_mask",
    "random_inverse_block_mask",
    "random_prefix_mask",
    "random_token_mask",
    "repeat_interleave_batch",
    "repeat_token",
    "select_most_similar",
    "set_at_index",
    "unpatchify",
    "update_drop_path_rate",
    "update_momentum",
]


# ------------------------------------------------------------------------------------- batch shuffling (MoCo)


@torch.no_grad()
def batch_shuffle(batch: Tensor, distributed: bool = False) -> tuple[Tensor, Tensor]:
    """Returns ``(batch[shuffle], shuffle)`` for a random permutation ``shuffle`` (across processes with
    ``distributed``); :func:`batch_unshuffle` restores the order."""
    if distributed:
        return batch_shuffle_distributed(batch)
    shuffle = torch.randperm(batch.shape[0], device=batch.device)
    return batch[shuffle], shuffle


@torch.no_grad()
def batch_unshuffle(batch: Tensor, shuffle: Tensor, distributed: bool = False) -> Tensor:
    """Undoes :func:`batch_shuffle`."""
    if distributed:
        return batch_unshuffle_distributed(batch, shuffle)
    return batch[torch.argsort(shuffle)]


@torch.no_grad()
def batch_shuffle_distributed(batch: Tensor) -> tuple[Tensor, Tensor]:
    """MoCo's shuffle across processes: gathers all batches, permutes them with rank 0's permutation and returns
    this process's share plus the index that restores the order (a plain shuffle when not distributed)."""
    gathered = concat_all_gather(batch)
    devices = gathered.shape[0] // batch.shape[0]
    idx_shuffle = torch.randperm(gathered.shape[0], device=batch.device)
    if world_size() > 1:
        torch_dist.broadcast(idx_shuffle, src=0)
    return gathered[idx_shuffle.view(devices, -1)[rank()]], torch.argsort(idx_shuffle)


@torch.no_grad()
def batch_unshuffle_distributed(batch: Tensor, shuffle: Tensor) -> Tensor:
    """Undoes :func:`batch_shuffle_distributed`."""
    gathered = concat_all_gather(batch)
    devices = gathered.shape[0] // batch.shape[0]
    return gathered[shuffle.view(devices, -1)[rank()]]


# --------------------------------------------------------------------------------------- dense / region methods


def pool_masked(source: Tensor, mask: Tensor, num_cls: int, reduce: str = "mean") -> Tensor:
    """Reduces feature maps (B, C, H, W) or (C, H, W) over the regions of an integer ``mask`` (B, H, W) or
    (H, W): (B, C, num_cls) or (C, num_cls); empty regions give 0 (DetCon's region pooling)."""
    if source.dim() not in (3, 4):
        raise ValueError(f"pool_masked: source must have 3 or 4 dimensions, got {source.dim()}")
    single = source.dim() == 3
    if single:
        source, mask = source.unsqueeze(0), mask.unsqueeze(0)
    b, c = source.shape[:2]
    index = mask.reshape(b, 1, -1).expand(-1, c, -1)
    out = source.new_zeros(b, c, num_cls).scatter_reduce_(2, index, source.reshape(b, c, -1), reduce=reduce,
                                                          include_self=False)  # fmt: skip
    out = torch.nan_to_num(out, nan=0.0)  # as Lightly (scatter_reduce leaves NaN where a region is empty)
    return out[0] if single else out


# Lightly's private helpers under its names: Lightly's own tests of this module import them
# (scripts/run_lightly_tests.py), and without them none of that file's tests of the public names runs. Lightly's
# (C, H, W) and (B, C, H, W) forms are both pool_masked.
_mask_reduce = _mask_reduce_batched = pool_masked


@torch.no_grad()
def _no_grad_trunc_normal(tensor: Tensor, mean: float, std: float, a: float, b: float) -> Tensor:
    # Lightly's inverse-CDF sampler (uniform in [cdf(a), cdf(b)] mapped through erfinv), kept for its draws: torch's
    # own trunc_normal_ now samples differently
    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
    tensor.uniform_(2 * lo - 1, 2 * hi - 1).erfinv_().mul_(std * math.sqrt(2.0)).add_(mean)
    return tensor.clamp_(min=a, max=b)


def most_similar_index(x: Tensor, y: Tensor) -> Tensor:
    """(B, N): for every ``x[b, i]`` (B, N, C), the index of the most cosine-similar ``y[b, j]`` (B, M, C)."""
    return torch.einsum("bnc,bmc->bnm", F.normalize(x, dim=-1), F.normalize(y, dim=-1)).argmax(dim=2)


def select_most_similar(x: Tensor, y: Tensor, y_values: Tensor) -> Tensor:
    """(B, N, D): for every ``x[b, i]``, the row of ``y_values`` (B, M, D) at its most similar ``y[b, j]`` (DenseCL)."""
    index = most_similar_index(x, y).unsqueeze(-1).expand(y_values.shape)
    return torch.gather(y_values, dim=1, index=index)


# ------------------------------------------------------------------------------------------ optimisation helpers


_NORM_LAYERS = (_NormBase, nn.LayerNorm, nn.CrossMapLRN2d, nn.LocalResponseNorm, nn.GroupNorm)


def get_weight_decay_parameters(
    modules: Iterable[nn.Module],
    decay_norm: bool = False,
    decay_bias: bool = False,
    norm_layers: tuple[type[nn.Module], ...] = _NORM_LAYERS,
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(params, params_no_weight_decay)`` of ``modules``: normalisation parameters and biases go to the second
    list unless ``decay_norm`` / ``decay_bias``."""
    params: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules:
        for mod in module.modules():
            if isinstance(mod, norm_layers):
                (params if decay_norm else no_decay).extend(mod.parameters(recurse=False))
                continue
            for name, param in mod.named_parameters(recurse=False):
                (no_decay if not decay_bias and name.endswith("bias") else params).append(param)
    return params, no_decay


def get_named_leaf_modules(module: nn.Module) -> dict[str, nn.Module]:
    """All modules of ``module`` without children, by name."""
    return {name: mod for name, mod in module.named_modules() if not any(mod.children())}


# -------------------------------------------------------------------------------------------- Vision Transformers


def prepend_class_token(tokens: Tensor, class_token: Tensor) -> Tensor:
    """(B, N, D) tokens -> (B, N + 1, D) with the (1, 1, D) ``class_token`` first."""
    return torch.cat([class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)


def get_2d_sine_cosine_positional_embedding(
    embed_dim: int, grid_size: int, cls_token: bool = True, num_prefix_tokens: Optional[int] = None
) -> np.ndarray:
    """MAE's fixed 2D sine-cosine table as a numpy array (as Lightly returns it): (prefix + grid_size**2,
    embed_dim), zero rows for the ``num_prefix_tokens`` (default ``int(cls_token)``) prefix tokens."""
    n_prefix = int(cls_token) if num_prefix_tokens is None else num_prefix_tokens
    table = _vit.get_2d_sine_cosine_positional_embedding(embed_dim, grid_size, num_prefix_tokens=n_prefix).numpy()
    return table.astype(np.float64) if n_prefix > 0 else table  # Lightly's dtypes (zeros rows are float64)


get_2d_sincos_pos_embed = get_2d_sine_cosine_positional_embedding  # Lightly's I-JEPA alias


def initialize_2d_sine_cosine_positional_embedding(
    pos_embedding: nn.Parameter, has_class_token: bool = True, num_prefix_tokens: Optional[int] = None
) -> None:
    """Fills ``pos_embedding`` (1, prefix + grid**2, D) with the sine-cosine table and freezes it; the prefix is
    ``num_prefix_tokens`` or, if None, one token when ``has_class_token``."""
    n_prefix = int(has_class_token) if num_prefix_tokens is None else num_prefix_tokens
    _vit.initialize_2d_sine_cosine_positional_embedding(pos_embedding, num_prefix_tokens=n_prefix)


def initialize_learnable_positional_embedding(pos_embedding: nn.Parameter) -> None:
    """timm's ViT initialisation (truncated normal, std 0.02) of a trainable positional embedding."""
    nn.init.trunc_normal_(pos_embedding, std=0.02)
    pos_embedding.requires_grad = True


def initialize_positional_embedding(pos_embedding: nn.Parameter, strategy: str, num_prefix_tokens: int) -> None:
    """Initialises ``pos_embedding`` by ``strategy``: ``"learn"``, ``"sincos"`` (fixed) or ``"skip"``."""
    strategies = ["learn", "sincos", "skip"]
    if strategy not in strategies:
        raise ValueError(f"Invalid positional embedding strategy: '{strategy}'. Valid options are: {strategies}.")
    if strategy == "learn":
        initialize_learnable_positional_embedding(pos_embedding)
    elif strategy == "sincos":
        initialize_2d_sine_cosine_positional_embedding(pos_embedding, num_prefix_tokens=num_prefix_tokens)


def update_drop_path_rate(model: nn.Module, drop_path_rate: float, mode: str = "linear") -> None:
    """Sets stochastic depth on the ``blocks`` of a timm ``VisionTransformer``: rising linearly from 0 (first
    block) to ``drop_path_rate`` (last block) with ``mode="linear"``, ``drop_path_rate`` everywhere with
    ``"uniform"``. Parameter-free: the state dict is unchanged.

    Unlike Lightly 1.6.0, whose linear mode gives every block after the first the full ``drop_path_rate``, the
    linear mode does what its documentation (and timm) say.
    """
    from timm.layers import DropPath

    depth = len(model.blocks)
    if mode == "linear":
        rates = np.linspace(0, drop_path_rate, depth).tolist()
    elif mode == "uniform":
        rates = [drop_path_rate] * depth
    else:
        raise ValueError(f"Unknown mode: '{mode}', supported modes are 'linear' and 'uniform'.")
    for block, rate in zip(model.blocks, rates):
        block.drop_path1 = DropPath(drop_prob=rate) if rate > 0 else nn.Identity()
        block.drop_path2 = DropPath(drop_prob=rate) if rate > 0 else nn.Identity()


def add_stochastic_depth_to_blocks(vit: nn.Module, prob: float = 0.0, mode: str = "row") -> None:
    """Adds ``StochasticDepth(prob, mode)`` after both residual branches of every torchvision ``EncoderBlock``."""
    from torchvision.models.vision_transformer import EncoderBlock
    from torchvision.ops import StochasticDepth

    if prob <= 0:
        return
    for mod in vit.modules():
        if isinstance(mod, EncoderBlock):
            mod.dropout = nn.Sequential(mod.dropout, StochasticDepth(p=prob, mode=mode))
            mod.mlp = nn.Sequential(mod.mlp, StochasticDepth(p=prob, mode=mode))
