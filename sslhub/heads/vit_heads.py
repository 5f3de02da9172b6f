"""Heads of the transformer / masked-modelling methods, with Lightly's names and state-dict layout:
``MAEDecoderTIMM`` (MAE), ``PixioDecoderTIMM`` (Pixio), ``AIMPredictionHead`` (AIM), ``MSNProjectionHead``
(MSN/PMSN), ``DINOv2ProjectionHead`` (DINOv2), ``CAPIProjectionHead`` (CAPI), ``LeJEPAProjectionHead`` (LeJEPA).

``timm.layers`` is imported with this module: ``Mlp`` is the default of ``AIMPredictionHead``'s ``mlp_layer`` in
Lightly's signature.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional

import torch
from timm.layers import Mlp  # the default MLP of AIM's head, as Lightly's signature has it
from torch import Tensor, nn

from sslhub.heads.heads import ProjectionHead, WeightNormLinear, _mlp

__all__ = ["AIMPredictionHead", "AIMPredictionHeadBlock", "CAPIProjectionHead", "DINOv2ProjectionHead",
           "LeJEPAProjectionHead", "MAEDecoderTIMM", "MSNProjectionHead", "PixioDecoderTIMM"]  # fmt: skip


class MSNProjectionHead(ProjectionHead):
    """MSN's 3-layer projection head: Linear-BN-GELU, Linear-BN-GELU, Linear.

    Args:
        input_dim: Backbone feature dimension (768 for ViT-B).
        hidden_dim: Hidden dimension.
        output_dim: Output dimension.
    """

    def __init__(self, input_dim: int = 768, hidden_dim: int = 2048, output_dim: int = 256) -> None:
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.GELU()),
                (hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.GELU()),
                (hidden_dim, output_dim, None, None),
            ]
        )


def _xavier_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.LayerNorm):
        nn.init.constant_(module.bias, 0)
        nn.init.constant_(module.weight, 1.0)


class MAEDecoderTIMM(nn.Module):
    """MAE decoder built from timm blocks; keys ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``
    (fixed sine-cosine), ``decoder_blocks``, ``decoder_norm``, ``decoder_pred`` as Lightly's.

    Args:
        num_patches: Patches per image.
        patch_size: Patch side in pixels.
        in_chans: Image channels.
        embed_dim: Encoder dimension.
        decoder_embed_dim: Decoder dimension.
        decoder_depth: Decoder blocks.
        decoder_num_heads: Decoder attention heads.
        num_prefix_tokens: Prefix (class/register) tokens before the patches.
        mlp_ratio: MLP hidden size relative to the decoder dimension.
        proj_drop_rate: Dropout after the MLP/attention projection.
        attn_drop_rate: Attention dropout.
        norm_layer: Normalisation layer.
        initialize_weights: Apply MAE's initialisation.
        mask_token: Share an existing (1, 1, decoder_embed_dim) mask token.
    """

    def __init__(
        self,
        num_patches: int,
        patch_size: int,
        in_chans: int = 3,
        embed_dim: int = 1024,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        num_prefix_tokens: int = 1,
        mlp_ratio: float = 4.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        initialize_weights: bool = True,
        mask_token: Optional[nn.Parameter] = None,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        self.num_prefix_tokens = num_prefix_tokens
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim)) if mask_token is None else mask_token
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + num_prefix_tokens, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.Sequential(
            *[
                Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer,
                      proj_drop=proj_drop_rate, attn_drop=attn_drop_rate)  # fmt: skip
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans, bias=True)
        if initialize_weights:
            self._initialize_weights()

    def forward(self, input: Tensor) -> Tensor:
        """Predicted pixels (batch, seq, patch_size**2 * in_chans) of encoded tokens (batch, seq, embed_dim)."""
        return self.predict(self.decode(self.embed(input)))

    def embed(self, input: Tensor) -> Tensor:
        """Encoder dimension -> decoder dimension."""
        return self.decoder_embed(input)

    def decode(self, input: Tensor) -> Tensor:
        """Adds positional embeddings, runs the blocks and the final norm on the full token sequence."""
        return self.decoder_norm(self.decoder_blocks(input + self.decoder_pos_embed))

    def predict(self, input: Tensor) -> Tensor:
        """Decoded tokens -> pixel values per patch."""
        return self.decoder_pred(input)

    def _initialize_weights(self) -> None:
        from sslhub.backbones.masked_vit import initialize_2d_sine_cosine_positional_embedding

        nn.init.normal_(self.mask_token, std=0.02)
        initialize_2d_sine_cosine_positional_embedding(self.decoder_pos_embed, self.num_prefix_tokens)
        self.apply(_xavier_init)


class AIMPredictionHeadBlock(nn.Module):
    """Residual MLP block of AIM's head: ``x + mlp(norm(x))`` (bias-free timm ``Mlp``).

    Args:
        input_dim: Input dimension.
        output_dim: Output dimension of the MLP (equal to ``input_dim`` for the residual).
        mlp_ratio: Hidden size relative to ``input_dim``.
        proj_drop: Dropout in the MLP.
        act_layer: Activation.
        norm_layer: Normalisation.
        mlp_layer: MLP class (timm ``Mlp`` by default).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        mlp_ratio: float = 4.0,
        proj_drop: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        mlp_layer: type[nn.Module] = Mlp,
    ) -> None:
        super().__init__()
        self.norm = norm_layer(input_dim)
        mlp_kwargs: dict[str, Any] = dict(in_features=input_dim, hidden_features=int(input_dim * mlp_ratio), out_features=output_dim,
                                          act_layer=act_layer, drop=proj_drop, bias=False)  # fmt: skip
        self.mlp = mlp_layer(**mlp_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """Residual MLP."""
        return x + self.mlp(self.norm(x))


class AIMPredictionHead(nn.Module):
    """AIM's pixel prediction head: Linear to ``hidden_dim``, ``num_blocks`` residual MLP blocks, norm, Linear.

    Args:
        input_dim: Token dimension of the encoder.
        output_dim: Pixels per patch (``3 * patch_size**2``).
        hidden_dim: Hidden dimension.
        num_blocks: Residual MLP blocks.
        mlp_ratio: MLP hidden size relative to ``hidden_dim``.
        proj_drop: Dropout in the MLPs.
        act_layer: Activation.
        norm_layer: Normalisation.
        mlp_layer: MLP class (timm ``Mlp`` by default).
        block_fn: Block class.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        hidden_dim: int = 2048,
        num_blocks: int = 12,
        mlp_ratio: float = 4.0,
        proj_drop: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        mlp_layer: type[nn.Module] = Mlp,
        block_fn: type[nn.Module] = AIMPredictionHeadBlock,
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Linear(input_dim, hidden_dim, bias=False),
            *[
                block_fn(input_dim=hidden_dim, output_dim=hidden_dim, mlp_ratio=mlp_ratio, proj_drop=proj_drop,
                         norm_layer=norm_layer, act_layer=act_layer, mlp_layer=mlp_layer)  # fmt: skip
                for _ in range(num_blocks)
            ],
            norm_layer(hidden_dim),
            nn.Linear(hidden_dim, output_dim, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        return self.blocks(x)


class PixioDecoderTIMM(MAEDecoderTIMM):
    """Pixio's decoder: :class:`MAEDecoderTIMM` with a deep default decoder (``decoder_depth=32``), Lightly's
    ``PixioDecoderTIMM`` (same arguments, defaults and keys; without Lightly 1.6's deprecation warning).

    - In Pursuit of Pixel Supervision for Visual Pre-training, 2025, https://arxiv.org/abs/2512.15715
    """

    def __init__(
        self,
        num_patches: int,
        patch_size: int,
        in_chans: int = 3,
        embed_dim: int = 1024,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 32,
        decoder_num_heads: int = 16,
        num_prefix_tokens: int = 1,
        mlp_ratio: float = 4.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        initialize_weights: bool = True,
        mask_token: Optional[nn.Parameter] = None,
    ) -> None:
        super().__init__(num_patches=num_patches, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
                         decoder_num_heads=decoder_num_heads, num_prefix_tokens=num_prefix_tokens, mlp_ratio=mlp_ratio,
                         proj_drop_rate=proj_drop_rate, attn_drop_rate=attn_drop_rate, norm_layer=norm_layer,
                         initialize_weights=initialize_weights, mask_token=mask_token)  # fmt: skip


class DINOv2ProjectionHead(ProjectionHead):
    """DINOv2's head: 3-layer GELU MLP to a bottleneck, L2 normalisation, weight-normalised last layer whose
    magnitude ``last_layer.weight_g`` is trained (unlike DINO's default ``norm_last_layer``).

    Args:
        input_dim: Input feature dimension.
        hidden_dim: Hidden dimension.
        bottleneck_dim: Dimension before the last layer.
        output_dim: Number of prototypes.
        batch_norm: BatchNorm in the hidden layers.
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, bottleneck_dim: int = 256, output_dim: int = 65536,
                 batch_norm: bool = False) -> None:  # fmt: skip
        super().__init__(_mlp(input_dim, hidden_dim, bottleneck_dim, 3, batch_norm, False, act=nn.GELU))
        self.apply(self._init_weights)
        self.last_layer = WeightNormLinear(bottleneck_dim, output_dim)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.constant_(module.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        x = self.layers(x)
        x = nn.functional.normalize(x, dim=-1, p=2, eps=1e-6 if x.dtype == torch.float16 else 1e-12)
        return self.last_layer(x)


class CAPIProjectionHead(nn.Module):
    """CAPI's clustering head: L2-normalised features times the prototypes (one linear layer ``layer``).

    Args:
        input_dim: Feature dimension.
        num_clusters: Prototypes.
        bias: Linear bias (the teacher's online clustering head uses one).
        weight_norm: Unit-norm prototypes with a fixed scale (the student head).
    """

    def __init__(self, input_dim: int = 384, num_clusters: int = 16384, bias: bool = False, weight_norm: bool = False) -> None:
        super().__init__()
        self.layer: nn.Module
        if weight_norm:
            self.layer = WeightNormLinear(input_dim, num_clusters, bias)
            self.layer.weight_g.requires_grad = False
        else:
            self.layer = nn.Linear(input_dim, num_clusters, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """Cluster logits (..., num_clusters) of features (..., input_dim)."""
        return self.layer(nn.functional.normalize(x, dim=-1, p=2))


class LeJEPAProjectionHead(ProjectionHead):
    """LeJEPA's projector: ``num_layers`` linear layers, BatchNorm + ReLU after all but the last.

    Args:
        input_dim: Feature dimension.
        hidden_dim: Hidden dimension.
        output_dim: Projection dimension.
        num_layers: Linear layers (at least 2).
    """

    def __init__(self, input_dim: int, hidden_dim: int = 2048, output_dim: int = 64, num_layers: int = 3) -> None:
        if num_layers < 2:
            raise ValueError("num_layers must be greater than or equal to 2.")
        super().__init__(_mlp(input_dim, hidden_dim, output_dim, num_layers, True, False, act=nn.ReLU))
