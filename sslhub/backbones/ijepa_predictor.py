"""I-JEPA's predictor on timm blocks (Lightly's ``IJEPAPredictorTIMM``, keys ``decoder.*``, ``predictor_embed``,
``predictor_proj``) and the index helpers of the I-JEPA reference (``apply_masks``, ``repeat_interleave_batch``).

- I-JEPA, 2023, https://arxiv.org/abs/2301.08243
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, Callable, Union

import torch
from torch import Tensor, nn

from sslhub.backbones.decoders import MaskedVisionTransformerDecoderTIMM
from sslhub.backbones.masked_vit import get_at_index, initialize_2d_sine_cosine_positional_embedding

__all__ = ["IJEPAPredictorTIMM", "apply_masks", "repeat_interleave_batch"]

Masks = Union[Tensor, list[Tensor]]


def apply_masks(x: Tensor, masks: Masks) -> Tensor:
    """Tokens of ``x`` (B, N, D) at each index tensor (B, K) of ``masks``, stacked: (B * len(masks), K, D)."""
    if not isinstance(masks, list):
        masks = [masks]
    return torch.cat([get_at_index(x, m) for m in masks], dim=0)


def repeat_interleave_batch(x: Tensor, B: int, repeat: int) -> Tensor:  # noqa: N803  (Lightly's argument name)
    """(N * B, ...) -> (N * repeat * B, ...): each of the ``N = len(x) // B`` consecutive chunks of ``B`` rows
    repeated ``repeat`` times in place (one reshape instead of the reference's N * repeat concatenations)."""
    n = len(x) // B
    return x[: n * B].reshape(n, 1, B, *x.shape[1:]).expand(-1, repeat, -1, *x.shape[1:]).reshape(-1, *x.shape[1:])


class IJEPAPredictorTIMM(nn.Module):
    """Predicts target-block embeddings from context tokens: embed to ``predictor_embed_dim``, add the sine-cosine
    positions of the context, append mask tokens at the target positions, run the decoder, project back.

    Args:
        num_patches: Patches per image.
        depth: Transformer blocks.
        mlp_dim: Encoder width (input and output of the predictor).
        predictor_embed_dim: Predictor width.
        num_heads: Attention heads.
        qkv_bias: Bias in the qkv projection.
        mlp_ratio: MLP hidden size relative to the predictor width.
        drop_path_rate: Stochastic depth.
        proj_drop_rate: Dropout after projections.
        attn_drop_rate: Attention dropout.
        norm_layer: Normalisation layer.
    """

    def __init__(
        self,
        num_patches: int,
        depth: int,
        mlp_dim: int,
        predictor_embed_dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),
    ) -> None:
        super().__init__()
        # I-JEPA keeps timm's default init and a zero mask token; only the positions are set (below).
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=num_patches, embed_dim=predictor_embed_dim, depth=depth, num_heads=num_heads,
            num_prefix_tokens=0, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop_rate=proj_drop_rate,
            attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate, norm_layer=norm_layer, initialize_weights=False,
        )  # fmt: skip
        self.predictor_embed = nn.Linear(mlp_dim, predictor_embed_dim, bias=True)
        self.predictor_proj = nn.Linear(predictor_embed_dim, mlp_dim, bias=True)
        with torch.no_grad():
            self.decoder.mask_token.zero_()
        initialize_2d_sine_cosine_positional_embedding(self.decoder.pos_embed, num_prefix_tokens=0)
        self._register_load_state_dict_pre_hook(self._migrate_legacy_state_dict)

    def forward(self, x: Tensor, masks_x: Masks, masks: Masks) -> Tensor:
        """Predictions (B * len(masks_x) * len(masks), K_pred, mlp_dim) for the target blocks.

        Args:
            x: (B * len(masks_x), K_ctx, mlp_dim) encoded context tokens.
            masks_x: Patch indices (B, K_ctx) of the context, one tensor per context mask.
            masks: Patch indices (B, K_pred) of the targets, one tensor per target block.
        """
        n_ctx_masks = len(masks_x) if isinstance(masks_x, list) else 1
        n_pred_masks = len(masks) if isinstance(masks, list) else 1
        B = len(x) // n_ctx_masks
        pos = self.decoder.pos_embed.repeat(B, 1, 1)
        x = self.predictor_embed(x) + apply_masks(pos, masks_x)
        n_ctx = x.shape[1]
        pos_pred = repeat_interleave_batch(apply_masks(pos, masks), B, repeat=n_ctx_masks)
        pred_tokens = self.decoder.mask_token.repeat(pos_pred.size(0), pos_pred.size(1), 1) + pos_pred
        x = torch.cat([x.repeat(n_pred_masks, 1, 1), pred_tokens], dim=1)
        return self.predictor_proj(self.decoder.decode(x)[:, n_ctx:])

    def _migrate_legacy_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        """Renames the keys of checkpoints written before Lightly moved the transformer into ``decoder``."""
        renames = {"predictor_pos_embed": "decoder.pos_embed", "mask_token": "decoder.mask_token",
                   "predictor_norm.": "decoder.norm.", "predictor_blocks.": "decoder.blocks."}  # fmt: skip
        migrated = False
        for key in list(state_dict):
            local = key[len(prefix):]
            for old, new in renames.items():
                if (old.endswith(".") and local.startswith(old)) or local == old:
                    state_dict[prefix + new + local[len(old):]] = state_dict.pop(key)
                    migrated = True
                    break
        if migrated:
            warnings.warn(
                "Loading an I-JEPA checkpoint with the old parameter names (predictor_pos_embed, predictor_blocks, "
                "predictor_norm, mask_token); they were remapped to decoder.*. Re-save the checkpoint to silence this.",
                DeprecationWarning,
                stacklevel=2,
            )
