"""Vision Transformers with token masking, on top of timm's ``VisionTransformer`` (Lightly's API and names).

* :class:`MaskedVisionTransformerTIMM` wraps a timm ViT as ``self.vit`` (so a method's ``backbone.vit.*`` keys
  are exactly timm's) and adds a ``mask_token``; ``encode``/``forward`` take Lightly's ``idx_mask`` /
  ``idx_keep`` / ``mask`` arguments.
* :class:`MaskedCausalVisionTransformer` is a timm ``VisionTransformer`` whose ``forward_features`` accepts
  AIM's prefix mask (prefix tokens attend bidirectionally, the rest causally). It has no extra parameters,
  so its state dict is timm's.
* Masking helpers with Lightly's names and random-number use (``random_token_mask`` ...), 2D sine-cosine
  positional embeddings, and :func:`annotate_vit`, which records what is needed to rebuild a ViT
  (``pretrained_cfg["timm_kwargs"]``) so that a trained backbone loads strictly into
  ``timm.create_model(arch, num_classes=0, img_size=..., **timm_kwargs)``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "MaskedVisionTransformer",
    "MaskedCausalVisionTransformer",
    "MaskedVisionTransformerTIMM",
    "annotate_vit",
    "expand_index_like",
    "get_2d_sine_cosine_positional_embedding",
    "get_at_index",
    "initialize_2d_sine_cosine_positional_embedding",
    "mask_at_index",
    "mask_bool",
    "prefix_causal_attention_mask",
    "random_patch_mask",
    "random_prefix_mask",
    "random_token_mask",
    "repeat_token",
    "require_timm_vit",
    "set_at_index",
    "timm_vit_kwargs",
]

Device = Optional[Union[torch.device, str]]


# --------------------------------------------------------------------------------------------------- masking


def random_token_mask(
    size: tuple[int, int], mask_ratio: float = 0.6, mask_class_token: bool = False, device: Device = None
) -> tuple[Tensor, Tensor]:
    """Random ``(idx_keep, idx_mask)`` over a token sequence (Lightly's ``random_token_mask``, same RNG use).

    Args:
        size: ``(batch_size, sequence_length)``.
        mask_ratio: Fraction of tokens to mask.
        mask_class_token: If False, token 0 (the class token) is always kept.
        device: Device of the returned indices.

    Returns:
        ``idx_keep`` (batch_size, num_keep) and ``idx_mask`` (batch_size, sequence_length - num_keep).
    """
    batch_size, sequence_length = size
    num_keep = int((sequence_length - int(not mask_class_token)) * (1 - mask_ratio))
    noise = torch.rand(batch_size, sequence_length, device=device)
    if not mask_class_token and sequence_length > 0:
        noise[:, 0] = -1  # sorts first: the class token is always kept
        num_keep = max(1, num_keep + 1)
    indices = torch.argsort(noise, dim=1)
    return indices[:, :num_keep], indices[:, num_keep:]


def random_patch_mask(
    batch_size: int, num_patches: int, mask_ratio: float, num_prefix_tokens: int = 1, device: Device = None
) -> tuple[Tensor, Tensor]:
    """Like :func:`random_token_mask`, for any number of prefix tokens (class + register tokens).

    Only patch tokens are masked; all ``num_prefix_tokens`` leading tokens are kept. Indices refer to the full
    sequence (prefix tokens first), so ``idx_mask - num_prefix_tokens`` indexes the image's patches.
    """
    num_keep = int(num_patches * (1 - mask_ratio))
    order = torch.argsort(torch.rand(batch_size, num_patches, device=device), dim=1) + num_prefix_tokens
    prefix = torch.arange(num_prefix_tokens, device=order.device).expand(batch_size, -1)
    return torch.cat([prefix, order[:, :num_keep]], dim=1), order[:, num_keep:]


def random_prefix_mask(size: tuple[int, int], max_prefix_length: int, device: Device = None) -> Tensor:
    """AIM's prefix mask (Lightly's ``random_prefix_mask``): True for tokens at or after a random prefix length
    drawn uniformly from ``[0, max_prefix_length)`` per sequence; those tokens are treated causally."""
    batch_size, sequence_length = size
    arange = torch.arange(sequence_length, device=device).expand(batch_size, sequence_length)
    indices = torch.randint(0, max_prefix_length, (batch_size, 1), device=device)
    return arange >= indices


def prefix_causal_attention_mask(mask: Tensor) -> Tensor:
    """Boolean attention mask (batch, 1, N, N), True where query i may attend to key j.

    Keys in the prefix (``mask`` False) are visible to every query, so prefix tokens attend bidirectionally;
    keys after it (``mask`` True) are visible only to queries at or after their position (causal attention),
    as in AIM and Lightly's ``MaskedCausalAttention``.
    """
    n = mask.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()
    return (causal.unsqueeze(0) | (~mask.bool()).unsqueeze(1)).unsqueeze(1)


def repeat_token(token: Tensor, size: tuple[int, int]) -> Tensor:
    """Repeats a (1, 1, dim) token to (batch_size, sequence_length, dim)."""
    batch_size, sequence_length = size
    return token.repeat(batch_size, sequence_length, 1)


def expand_index_like(index: Tensor, tokens: Tensor) -> Tensor:
    """Expands a (batch, n) index to (batch, n, dim) for gather/scatter over ``tokens``' last dimension."""
    return index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])


def get_at_index(tokens: Tensor, index: Tensor) -> Tensor:
    """Selects ``tokens[b, index[b]]``: (batch, seq, dim) -> (batch, n, dim)."""
    return torch.gather(tokens, 1, expand_index_like(index, tokens))


def set_at_index(tokens: Tensor, index: Tensor, value: Union[Tensor, float]) -> Tensor:
    """Returns ``tokens`` with ``tokens[b, index[b]] = value[b]`` (out of place)."""
    return torch.scatter(tokens, 1, expand_index_like(index, tokens), value)


def mask_at_index(tokens: Tensor, index: Tensor, mask_token: Tensor) -> Tensor:
    """Replaces the tokens at ``index`` by ``mask_token`` (1, 1, dim)."""
    mask = set_at_index(tokens.new_zeros(tokens.shape), index, 1)
    return (1 - mask) * tokens + mask * mask_token


def mask_bool(tokens: Tensor, mask: Tensor, mask_token: Tensor) -> Tensor:
    """Replaces the tokens where the boolean ``mask`` (batch, seq) is True by ``mask_token``."""
    m = mask.unsqueeze(-1).to(torch.bool).to(torch.int)
    return (1 - m) * tokens + m * mask_token


def _mask_embed_select(
    tokens: Tensor,
    mask_token: Tensor,
    add_pos_embed: Callable[[Tensor], Tensor],
    idx_mask: Optional[Tensor],
    idx_keep: Optional[Tensor],
    mask: Optional[Tensor],
) -> Tensor:
    """The token pipeline of Lightly's masked encoders and decoders: masked tokens (``idx_mask`` indices or boolean
    ``mask``, not both) replaced by ``mask_token``, positions added, then the ``idx_keep`` tokens selected."""
    if idx_mask is not None and mask is not None:
        raise ValueError("idx_mask and mask cannot both be set at the same time.")
    if idx_mask is not None:
        tokens = mask_at_index(tokens, idx_mask, mask_token)
    elif mask is not None:
        tokens = mask_bool(tokens, mask, mask_token)
    tokens = add_pos_embed(tokens)
    return tokens if idx_keep is None else get_at_index(tokens, idx_keep)


# ------------------------------------------------------------------------------------- positional embeddings


def get_2d_sine_cosine_positional_embedding(embed_dim: int, grid_size: int, num_prefix_tokens: int = 1) -> Tensor:
    """MAE's fixed 2D sine-cosine embedding, (num_prefix_tokens + grid_size**2, embed_dim), zeros for prefix tokens.

    The first half of the channels encodes the column (x), the second half the row (as MAE and Lightly do).
    """
    if embed_dim % 4:
        raise ValueError(f"2D sine-cosine positional embeddings need embed_dim divisible by 4, got {embed_dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    # meshgrid(w, h) as in MAE: grid[0] varies along columns, grid[1] along rows
    grid_w, grid_h = torch.meshgrid(coords, coords, indexing="xy")
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4))

    def one_d(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([one_d(grid_w), one_d(grid_h)], dim=1)
    if num_prefix_tokens:
        emb = torch.cat([emb.new_zeros(num_prefix_tokens, embed_dim), emb], dim=0)
    return emb.float()


@torch.no_grad()
def initialize_2d_sine_cosine_positional_embedding(pos_embedding: nn.Parameter, num_prefix_tokens: int = 1) -> None:
    """Fills a (1, num_prefix_tokens + grid**2, dim) embedding with the sine-cosine table and freezes it."""
    _, seq_length, dim = pos_embedding.shape
    grid = math.isqrt(seq_length - num_prefix_tokens)
    if grid * grid != seq_length - num_prefix_tokens:
        raise ValueError(f"positional embedding of length {seq_length} is not {num_prefix_tokens} prefix tokens plus a square grid")
    pos_embedding.copy_(get_2d_sine_cosine_positional_embedding(dim, grid, num_prefix_tokens).unsqueeze(0))
    pos_embedding.requires_grad = False


# ------------------------------------------------------------------------------------------ timm ViT config


def require_timm_vit(backbone: nn.Module, method: str) -> VisionTransformer:
    """Returns ``backbone`` if it is a timm ``VisionTransformer``, else raises a ValueError saying what to use."""
    if not isinstance(backbone, VisionTransformer):
        arch = (getattr(backbone, "pretrained_cfg", None) or {}).get("arch", type(backbone).__name__)
        raise ValueError(
            f"{method} needs a timm VisionTransformer backbone (e.g. backbone.arch=vit_small_patch16_224), "
            f"got {arch!r}"
        )
    return backbone


def _flags(vit: VisionTransformer) -> dict[str, Any]:
    blk = vit.blocks[0]
    attn = blk.attn
    ls = getattr(blk, "ls1", None)
    gamma = getattr(ls, "gamma", None)
    out: dict[str, Any] = {
        "patch_size": int(vit.patch_embed.patch_size[0]),
        "embed_dim": int(vit.embed_dim),
        "depth": len(vit.blocks),
        "num_heads": int(attn.num_heads),
        "mlp_ratio": blk.mlp.fc1.out_features / vit.embed_dim,
        "qkv_bias": attn.qkv.bias is not None,
        "qk_norm": not isinstance(attn.q_norm, nn.Identity),
        "class_token": vit.cls_token is not None,
        "reg_tokens": int(vit.num_reg_tokens),
        "no_embed_class": bool(vit.no_embed_class),
        "global_pool": vit.global_pool,
        "fc_norm": not isinstance(vit.fc_norm, nn.Identity),
        "pre_norm": not isinstance(vit.norm_pre, nn.Identity),
        "dynamic_img_size": bool(vit.dynamic_img_size),
        # gamma still holds init_values when this runs at construction; the value only matters for training
        "init_values": None if gamma is None else float(gamma.detach().flatten()[0]) if not gamma.is_meta else 1e-5,
    }
    return out


def timm_vit_kwargs(vit: VisionTransformer, arch: str) -> dict[str, Any]:
    """The ``timm.create_model(arch, ...)`` keyword arguments (besides ``img_size``) that rebuild ``vit``.

    Found by comparing ``vit`` with a default ``arch`` built on the meta device, so only what differs is listed
    (e.g. ``patch_size``, ``class_token``, ``global_pool``, ``dynamic_img_size``).
    """
    import timm

    from sslhub.backbones import build_on_meta

    ref = build_on_meta(lambda: timm.create_model(arch, pretrained=False, num_classes=0))
    ours, theirs = _flags(vit), _flags(ref)
    kw = {k: v for k, v in ours.items() if v != theirs[k] and k not in ("fc_norm", "init_values")}
    if (ours["init_values"] is None) != (theirs["init_values"] is None):
        kw["init_values"] = ours["init_values"]
    # fc_norm defaults to "global_pool is avg/max"; record it only when it differs from that default
    if ours["fc_norm"] != (ours["global_pool"] in ("avg", "avgmax", "max")):
        kw["fc_norm"] = ours["fc_norm"]
    return kw


def annotate_vit(vit: VisionTransformer) -> VisionTransformer:
    """Completes ``vit.pretrained_cfg`` (family, arch, img_size, input_size, timm_kwargs) so that checkpoints
    written from it say how to rebuild it; returns ``vit``."""
    cfg = dict(getattr(vit, "pretrained_cfg", None) or {})
    arch = cfg.get("arch") or cfg.get("architecture")
    if not arch:
        raise ValueError("the ViT has no pretrained_cfg['arch']; build it with sslhub.create_backbone(<timm name>)")
    img = int(vit.patch_embed.img_size[0]) if vit.patch_embed.img_size is not None else None
    cfg.update(family="timm", arch=arch, img_size=img, timm_kwargs=timm_vit_kwargs(vit, arch))
    if img:
        cfg["input_size"] = (3, img, img)
    vit.pretrained_cfg = cfg
    return vit


# -------------------------------------------------------------------------------------------------- modules


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.LayerNorm):
        nn.init.constant_(module.bias, 0)
        nn.init.constant_(module.weight, 1.0)


class MaskedVisionTransformer(nn.Module):
    """What the timm and torchvision masked ViTs share (Lightly's abstract ``MaskedVisionTransformer``): option
    checks, gradient checkpointing and the token pipeline of :meth:`preprocess`. Subclasses hold ``vit`` and
    ``mask_token`` and define ``images_to_tokens``, ``prepend_prefix_tokens`` and ``add_pos_embed``."""

    def __init__(
        self,
        vit: nn.Module,
        dim: int,
        mask_token: Optional[nn.Parameter],
        weight_initialization: str,
        antialias: bool,
        pos_embed_initialization: str,
    ) -> None:
        super().__init__()
        if weight_initialization not in ("", "skip"):
            raise ValueError(f"Invalid weight initialization method: '{weight_initialization}'. Valid options are: ['', 'skip'].")
        if pos_embed_initialization not in ("learn", "sincos", "skip"):
            raise ValueError(
                f"Invalid positional embedding strategy: '{pos_embed_initialization}'. Valid options are: ['learn', 'sincos', 'skip']."
            )
        self.vit = vit
        self.mask_token = mask_token if mask_token is not None else nn.Parameter(torch.zeros(1, 1, dim))
        if weight_initialization != "skip":
            self._initialize_weights()
        pos, num_prefix = self._pos_embedding()
        if pos is not None:  # in this order (weights, then positions), as Lightly draws its random numbers
            if pos_embed_initialization == "sincos":
                initialize_2d_sine_cosine_positional_embedding(pos, num_prefix)
            elif pos_embed_initialization == "learn":
                nn.init.trunc_normal_(pos, std=0.02)
                pos.requires_grad = True
        self.antialias = antialias
        self.grad_checkpointing = False

    def _initialize_weights(self) -> None:
        raise NotImplementedError

    def _pos_embedding(self) -> tuple[Optional[nn.Parameter], int]:
        """The positional embedding parameter (or None) and how many prefix tokens it covers."""
        raise NotImplementedError

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass (saves memory)."""
        self.grad_checkpointing = enable

    def images_to_tokens(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def prepend_prefix_tokens(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def add_pos_embed(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def preprocess(
        self,
        images: Tensor,
        idx_mask: Optional[Tensor] = None,
        idx_keep: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Patch tokens with prefix tokens, masking and positional embeddings; then ``idx_keep`` selection."""
        if idx_mask is not None and mask is not None:  # before the patch embedding runs
            raise ValueError("idx_mask and mask cannot both be set at the same time.")
        tokens = self.prepend_prefix_tokens(self.images_to_tokens(images))
        return _mask_embed_select(tokens, self.mask_token, self.add_pos_embed, idx_mask, idx_keep, mask)


class MaskedVisionTransformerTIMM(MaskedVisionTransformer):
    """A timm ViT (``self.vit``) with a ``mask_token``: Lightly's ``MaskedVisionTransformerTIMM``.

    Args:
        vit: The timm ``VisionTransformer`` (``num_classes=0``).
        mask_token: Share an existing (1, 1, dim) mask token; a zero one is created otherwise.
        weight_initialization: ``""`` applies MAE's init (xavier linear layers/patch embedding, normal class
            token), ``"skip"`` keeps ``vit``'s weights.
        antialias: Antialias when resampling positional embeddings for other image sizes.
        pos_embed_initialization: ``"sincos"`` (fixed 2D sine-cosine, frozen), ``"learn"`` (trainable,
            truncated normal) or ``"skip"``.
    """

    def __init__(
        self,
        vit: VisionTransformer,
        mask_token: Optional[nn.Parameter] = None,
        weight_initialization: str = "",
        antialias: bool = True,
        pos_embed_initialization: str = "sincos",
    ) -> None:
        super().__init__(vit, vit.embed_dim, mask_token, weight_initialization, antialias, pos_embed_initialization)

    def _pos_embedding(self) -> tuple[Optional[nn.Parameter], int]:
        return self.vit.pos_embed, self._pos_prefix

    @property
    def _pos_prefix(self) -> int:
        """Prefix tokens that have a positional embedding entry (none when ``no_embed_class``)."""
        return 0 if self.vit.no_embed_class else self.vit.num_prefix_tokens

    @property
    def sequence_length(self) -> int:
        """Tokens per image at the ViT's image size: patches plus prefix (class/register) tokens."""
        return int(self.vit.patch_embed.num_patches + self.vit.num_prefix_tokens)

    def forward(
        self,
        images: Tensor,
        idx_mask: Optional[Tensor] = None,
        idx_keep: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Pooled features (batch, dim) as timm pools them (``global_pool`` and ``fc_norm``), over the kept tokens.

        Args:
            images: (batch, 3, H, W).
            idx_mask: (batch, n) token indices to replace by the mask token. Excludes ``mask``.
            idx_keep: (batch, n) token indices to keep (the others are dropped), applied after masking.
            mask: (batch, sequence_length) boolean, True where the token is replaced by the mask token.
        """
        return self.vit.forward_head(self.encode(images, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask), pre_logits=True)

    def encode(
        self,
        images: Tensor,
        idx_mask: Optional[Tensor] = None,
        idx_keep: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """All output tokens (batch, n, dim) after the final norm; only the kept ones if ``idx_keep`` is set."""
        tokens = self.vit.norm_pre(self.preprocess(images, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask))
        if self.grad_checkpointing and torch.is_grad_enabled():
            for blk in self.vit.blocks:
                tokens = checkpoint(blk, tokens, use_reentrant=False)
        else:
            tokens = self.vit.blocks(tokens)
        return self.vit.norm(tokens)

    def images_to_tokens(self, images: Tensor) -> Tensor:
        """(batch, 3, H, W) -> patch tokens (batch, num_patches, dim)."""
        tokens = self.vit.patch_embed(images)
        if self.vit.dynamic_img_size:  # timm returns NHWC then
            tokens = tokens.flatten(1, 2)
        return tokens

    def prepend_prefix_tokens(self, x: Tensor) -> Tensor:
        """Prepends the class and register tokens."""
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.vit.cls_token, self.vit.reg_token) if t is not None]
        return torch.cat([*prefix, x], dim=1) if prefix else x

    def add_pos_embed(self, x: Tensor) -> Tensor:
        """Adds positional embeddings (resampled to the token grid when the ViT has ``dynamic_img_size``)."""
        vit = self.vit
        if vit.pos_embed is None:
            return vit.pos_drop(x)
        n_prefix = vit.num_prefix_tokens
        prefix, patches = x[:, :n_prefix], x[:, n_prefix:]
        pos_embed = vit.pos_embed
        if vit.dynamic_img_size:
            grid = math.isqrt(patches.shape[1])
            pos_embed = resample_abs_pos_embed(pos_embed, (grid, grid), num_prefix_tokens=self._pos_prefix, antialias=self.antialias)
        if vit.no_embed_class:
            x = torch.cat([prefix, patches + pos_embed], dim=1)
        else:
            x = x + pos_embed
        return vit.pos_drop(x)

    def _initialize_weights(self) -> None:
        w = self.vit.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))  # like a linear layer (MAE)
        if self.vit.cls_token is not None:
            nn.init.normal_(self.vit.cls_token, std=0.02)
        self.apply(_init_weights)


class MaskedCausalVisionTransformer(VisionTransformer):
    """timm ``VisionTransformer`` with AIM's prefix-causal attention (Lightly's ``MaskedCausalVisionTransformer``).

    Takes timm's constructor arguments. Adds no parameters, so its state dict is timm's.
    """

    def forward_features(  # type: ignore[override]
        self, x: Tensor, mask: Optional[Tensor] = None, is_causal: bool = True, attn_mask: Optional[Tensor] = None
    ) -> Tensor:
        """Output tokens. ``mask`` (batch, N) marks tokens that attend causally (True) versus the bidirectional
        prefix (False); without ``mask`` or with ``is_causal=False`` attention is fully bidirectional."""
        if attn_mask is None and is_causal and mask is not None:
            attn_mask = prefix_causal_attention_mask(mask)
        return super().forward_features(x, attn_mask=attn_mask)
