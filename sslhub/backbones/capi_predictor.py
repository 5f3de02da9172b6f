"""CAPI's cross-attention predictor with rotary position embeddings (Lightly's ``CAPIPredictorTIMM``, same keys).

- CAPI, 2025, https://arxiv.org/abs/2502.08769
- RoFormer, 2021, https://arxiv.org/abs/2104.09864
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

__all__ = ["CAPIPredictorTIMM"]


class _RoPECrossAttentionBlock(nn.Module):
    """Queries cross-attend to the context (rotary embeddings on queries and keys), then an MLP; pre-norm residuals."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query_norm = nn.LayerNorm(embed_dim)
        self.context_norm = nn.LayerNorm(embed_dim)
        self.to_query = nn.Linear(embed_dim, embed_dim)
        self.to_key_value = nn.Linear(embed_dim, 2 * embed_dim)
        self.projection = nn.Linear(embed_dim, embed_dim)
        self.mlp_norm = nn.LayerNorm(embed_dim)
        hidden = int(embed_dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))

    def forward(self, queries: Tensor, context: Tensor, query_rope: Tensor, context_rope: Tensor) -> Tensor:
        from timm.layers import apply_rot_embed_cat

        b, nq, d = queries.shape
        nc = context.shape[1]
        q = self.to_query(self.query_norm(queries)).reshape(b, nq, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.to_key_value(self.context_norm(context)).reshape(b, nc, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4)
        q = apply_rot_embed_cat(q, query_rope.unsqueeze(1))  # broadcast over heads
        k = apply_rot_embed_cat(k, context_rope.unsqueeze(1))
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim**-0.5, dim=-1)
        queries = queries + self.projection((attn @ v).transpose(1, 2).reshape(b, nq, d))
        return queries + self.mlp(self.mlp_norm(queries))


class CAPIPredictorTIMM(nn.Module):
    """A learned mask token at every masked position cross-attends to the visible encoder tokens; 2D rotary
    embeddings (timm's ``RotaryEmbeddingCat``) encode the grid positions, so no positional table is stored.

    Args:
        embed_dim: Token width (encoder and predictor).
        grid_size: Patch grid (height, width) or its side.
        depth: Cross-attention blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden size relative to ``embed_dim``.
    """

    def __init__(self, embed_dim: int, grid_size: Union[int, tuple[int, int]], depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0) -> None:  # fmt: skip
        super().__init__()
        from timm.layers import RotaryEmbeddingCat

        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}).")
        shape = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
        self.rope = RotaryEmbeddingCat(dim=embed_dim // num_heads, in_pixels=False, feat_shape=list(shape))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList([_RoPECrossAttentionBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, context: Tensor, context_positions: Tensor, query_positions: Tensor) -> Tensor:
        """Predicted tokens (B, num_queries, embed_dim) at ``query_positions`` (B, num_queries) from the visible
        ``context`` (B, num_context, embed_dim) at ``context_positions`` (row-major patch indices)."""
        rope = self.rope.get_embed().to(context.device)
        context_rope, query_rope = rope[context_positions], rope[query_positions]
        queries = self.mask_token.expand(context.shape[0], query_positions.shape[1], -1)
        for block in self.blocks:
            queries = block(queries, context, query_rope, context_rope)
        return self.norm(queries)
