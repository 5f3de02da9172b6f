"""Token decoders (predictors) of masked ViT methods, Lightly's ``MaskedVisionTransformerDecoder`` API and names.

A decoder takes patch tokens, not images: it owns the mask token, a fixed 2D sine-cosine positional embedding,
timm transformer blocks and the final norm (keys ``mask_token``, ``pos_embed``, ``blocks.*``, ``norm.*`` as
Lightly's). Input embeddings and prediction heads stay outside, so MAE-style decoders and I-JEPA's predictor
(:mod:`sslhub.backbones.ijepa_predictor`) share it.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional, cast

import torch
from torch import Tensor, nn

from sslhub.backbones.masked_vit import _init_weights, _mask_embed_select, initialize_2d_sine_cosine_positional_embedding

__all__ = ["MaskedVisionTransformerDecoder", "MaskedVisionTransformerDecoderTIMM"]


class MaskedVisionTransformerDecoder(nn.Module):
    """Shared token pipeline of the decoders (Lightly's abstract base): masking, positional embedding, selection.

    Subclasses set ``mask_token`` and define ``sequence_length``, ``add_pos_embed``, ``decode`` and ``forward``.
    """

    mask_token: nn.Parameter

    @property
    def sequence_length(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def add_pos_embed(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def preprocess(self, x: Tensor, idx_mask: Optional[Tensor] = None, idx_keep: Optional[Tensor] = None,
                   mask: Optional[Tensor] = None) -> Tensor:  # fmt: skip
        """Replaces masked tokens (``idx_mask`` indices or boolean ``mask``) by the mask token, adds positional
        embeddings, then keeps the ``idx_keep`` tokens.

        Args:
            x: (batch, sequence_length, embed_dim) tokens.
            idx_mask: (batch, n) indices of tokens to replace by the mask token. Excludes ``mask``.
            idx_keep: (batch, n) indices of tokens to return.
            mask: (batch, sequence_length) boolean, True where replaced.
        """
        return _mask_embed_select(x, self.mask_token, self.add_pos_embed, idx_mask, idx_keep, mask)


class MaskedVisionTransformerDecoderTIMM(MaskedVisionTransformerDecoder):
    """Decoder of timm ``Block``s with a fixed 2D sine-cosine positional embedding (Lightly's
    ``MaskedVisionTransformerDecoderTIMM``).

    Args:
        num_patches: Patches per image.
        embed_dim: Decoder width.
        depth: Transformer blocks.
        num_heads: Attention heads.
        num_prefix_tokens: Prefix (class/register) tokens before the patches (length of the positional embedding
            is ``num_patches + num_prefix_tokens``).
        mlp_ratio: MLP hidden size relative to ``embed_dim``.
        qkv_bias: Bias in the attention's qkv projection.
        proj_drop_rate: Dropout after the attention/MLP projections.
        attn_drop_rate: Attention dropout.
        drop_path_rate: Stochastic depth of every block.
        norm_layer: Normalisation layer.
        initialize_weights: MAE init (xavier linear layers, normal mask token) and the sine-cosine table.
        mask_token: Share an existing (1, 1, embed_dim) mask token.
    """

    def __init__(
        self,
        num_patches: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        num_prefix_tokens: int = 1,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        initialize_weights: bool = True,
        mask_token: Optional[nn.Parameter] = None,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        self.num_patches = num_patches
        self.num_prefix_tokens = num_prefix_tokens
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if mask_token is None else mask_token
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + num_prefix_tokens, embed_dim), requires_grad=False)
        self.blocks = nn.Sequential(
            *[
                Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop_rate,
                      attn_drop=attn_drop_rate, drop_path=drop_path_rate, norm_layer=cast(Any, norm_layer))  # fmt: skip
                for _ in range(depth)
            ]
        )
        self.norm = norm_layer(embed_dim)
        if initialize_weights:
            self._initialize_weights()

    @property
    def sequence_length(self) -> int:
        """Patches plus prefix tokens of the decoder input."""
        return self.num_patches + self.num_prefix_tokens

    def forward(self, x: Tensor, idx_mask: Optional[Tensor] = None, idx_keep: Optional[Tensor] = None,
                mask: Optional[Tensor] = None) -> Tensor:  # fmt: skip
        """:meth:`preprocess` then :meth:`decode`: (batch, seq, dim) -> (batch, seq or n_keep, dim)."""
        return self.decode(self.preprocess(x, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask))

    def add_pos_embed(self, x: Tensor) -> Tensor:
        """Adds the fixed sine-cosine positional embedding (full sequence)."""
        return x + self.pos_embed

    def decode(self, x: Tensor) -> Tensor:
        """Transformer blocks, then the final norm."""
        return self.norm(self.blocks(x))

    def _initialize_weights(self) -> None:
        nn.init.normal_(self.mask_token, std=0.02)
        initialize_2d_sine_cosine_positional_embedding(self.pos_embed, self.num_prefix_tokens)
        self.apply(_init_weights)
