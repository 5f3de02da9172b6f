"""Vision Transformer with token masking on top of torchvision's ``VisionTransformer`` (Lightly's API and names).

* :class:`MaskedVisionTransformerTorchvision` wraps a torchvision ViT as ``self.vit`` (so a method's
  ``backbone.vit.*`` keys are exactly torchvision's and load strictly into ``torchvision.models.vit_b_16()``
  with ``heads`` removed) and adds a ``mask_token``; ``encode``/``forward`` take Lightly's ``idx_mask`` /
  ``idx_keep`` / ``mask`` arguments and compute what Lightly's ``MaskedVisionTransformerTorchvision`` computes,
  including bicubic resampling of the positional embedding for other image sizes.
* :func:`annotate_torchvision_vit` records what is needed to rebuild the ViT (``pretrained_cfg``: family, arch,
  img_size and the size overrides in ``timm_kwargs``) so that a trained encoder loads strictly into
  ``sslhub.create_backbone(arch, img_size=..., **timm_kwargs)``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.vision_transformer import VisionTransformer

from sslhub.backbones import IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_VIT_SIZES
from sslhub.backbones.masked_vit import MaskedVisionTransformer

__all__ = [
    "MaskedVisionTransformerTorchvision",
    "annotate_torchvision_vit",
    "is_torchvision_vit",
    "torchvision_vit_kwargs",
    "torchvision_vit_sizes",
]


def is_torchvision_vit(module: nn.Module) -> bool:
    """True for a ``torchvision.models.VisionTransformer`` (what ``create_backbone("vit_b_16")`` returns)."""
    return isinstance(module, VisionTransformer)


def torchvision_vit_sizes(vit: VisionTransformer) -> dict[str, int]:
    """The ``VisionTransformer`` size arguments of ``vit`` (patch_size, num_layers, num_heads, hidden_dim, mlp_dim)."""
    layers = list(vit.encoder.layers)
    return {
        "patch_size": int(vit.patch_size),
        "num_layers": len(layers),
        "num_heads": int(layers[0].num_heads) if layers else 0,
        "hidden_dim": int(vit.hidden_dim),
        "mlp_dim": int(vit.mlp_dim),
    }


def torchvision_vit_kwargs(vit: VisionTransformer, arch: str) -> dict[str, int]:
    """The size overrides (relative to torchvision's ``arch``) that ``create_backbone(arch, ...)`` needs to rebuild
    ``vit``; empty for an unmodified ``vit_b_16`` etc."""
    defaults = TORCHVISION_VIT_SIZES[arch]
    return {k: v for k, v in torchvision_vit_sizes(vit).items() if v != defaults[k]}


def annotate_torchvision_vit(vit: VisionTransformer) -> VisionTransformer:
    """Completes ``vit.pretrained_cfg`` (family, arch, img_size, input_size, timm_kwargs = size overrides) and sets
    ``num_features``, so that checkpoints written from it say how to rebuild it; returns ``vit``.

    A classifier in ``vit.heads`` is replaced by ``Identity`` (the backbone's features are the class token).
    ViTs with a convolutional stem (``conv_stem_configs``) cannot be rebuilt by name and are rejected.
    """
    if not isinstance(vit.conv_proj, nn.Conv2d):
        raise ValueError(
            "torchvision ViTs with a convolutional stem (conv_stem_configs) are not supported: "
            "use the patch-embedding ViT (sslhub.create_backbone('vit_b_16', ...))"
        )
    cfg = dict(getattr(vit, "pretrained_cfg", None) or {})
    sizes = torchvision_vit_sizes(vit)
    arch = cfg.get("arch")
    if arch not in TORCHVISION_VIT_SIZES:
        # Built by hand: name it after the torchvision ViT it equals, else vit_b_16 plus overrides.
        arch = next((a for a, s in TORCHVISION_VIT_SIZES.items() if s == sizes), "vit_b_16")
    if not isinstance(vit.heads, nn.Identity):
        vit.heads = nn.Identity()
    vit.num_features = int(vit.hidden_dim)
    img = int(vit.image_size)
    cfg.setdefault("mean", IMAGENET_MEAN)
    cfg.setdefault("std", IMAGENET_STD)
    cfg.update(family="torchvision_vit", arch=arch, img_size=img, input_size=(3, img, img),
               timm_kwargs=torchvision_vit_kwargs(vit, arch))  # fmt: skip
    vit.pretrained_cfg = cfg
    return vit


def _initialize_linear_layers(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):  # includes MultiheadAttention's out_proj (a Linear subclass)
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)


class MaskedVisionTransformerTorchvision(MaskedVisionTransformer):
    """A torchvision ViT (``self.vit``) with a ``mask_token``: Lightly's ``MaskedVisionTransformerTorchvision``.

    Args:
        vit: The torchvision ``VisionTransformer``.
        mask_token: Share an existing (1, 1, hidden_dim) mask token; a zero one is created otherwise.
        weight_initialization: ``""`` applies MAE's init (xavier linear layers and patch embedding, normal class
            token, as Lightly), ``"skip"`` keeps ``vit``'s weights.
        antialias: Antialias when resampling the positional embedding for other image sizes.
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
        super().__init__(vit, vit.hidden_dim, mask_token, weight_initialization, antialias, pos_embed_initialization)

    def _pos_embedding(self) -> tuple[Optional[nn.Parameter], int]:
        return self.vit.encoder.pos_embedding, 1  # covers the class token

    @property
    def sequence_length(self) -> int:
        """Tokens per image at the ViT's image size: patches plus the class token."""
        return int(self.vit.seq_length)

    def interpolate_pos_encoding(self, input: Tensor) -> Tensor:
        """The positional embedding for ``input`` (batch, 1 + num_patches, dim), bicubically resampled over the
        patch grid (not the class token) when the number of patches differs from the ViT's; square grids only."""
        pos = self.vit.encoder.pos_embedding
        npatch, n = input.shape[1] - 1, pos.shape[1] - 1
        if npatch == n:
            return pos
        grid, old = math.isqrt(npatch), math.isqrt(n)
        if grid * grid != npatch:
            raise ValueError(f"cannot resample the positional embedding to {npatch} patches: not a square grid")
        dim = input.shape[-1]
        patches = pos[:, 1:].reshape(1, old, old, dim).permute(0, 3, 1, 2)
        # the target size rather than Lightly's sqrt(npatch / N) scale factor: same sampling, no rounding of the size
        patches = nn.functional.interpolate(patches, size=(grid, grid), mode="bicubic", antialias=self.antialias)
        return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)

    def forward(
        self,
        images: Tensor,
        idx_mask: Optional[Tensor] = None,
        idx_keep: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """The encoded class token (batch, dim); equals ``vit(images)`` (``heads`` = Identity) when nothing is masked.

        Args:
            images: (batch, 3, H, W).
            idx_mask: (batch, n) token indices to replace by the mask token. Excludes ``mask``.
            idx_keep: (batch, n) token indices to keep (the others are dropped), applied after masking. Keep
                index 0 for the class token to be the output.
            mask: (batch, sequence_length) boolean, True where the token is replaced by the mask token.
        """
        return self.encode(images, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask)[:, 0]

    def forward_intermediates(
        self,
        images: Tensor,
        idx_mask: Optional[Tensor] = None,
        idx_keep: Optional[Tensor] = None,
        norm: bool = False,
        mask: Optional[Tensor] = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Output tokens after the final norm and each encoder layer's output tokens (final-normed when ``norm``),
        as Lightly's timm version returns them (Lightly's torchvision class does not implement this)."""
        tokens = self.vit.encoder.dropout(self.preprocess(images, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask))
        intermediates: list[Tensor] = []
        ln = self.vit.encoder.ln
        for layer in self.vit.encoder.layers:
            tokens = self._run(layer, tokens)
            intermediates.append(ln(tokens) if norm else tokens)
        return ln(tokens), intermediates

    def encode(
        self,
        images: Tensor,
        idx_mask: Optional[Tensor] = None,
        idx_keep: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """All output tokens (batch, n, dim) after the final norm; only the kept ones if ``idx_keep`` is set."""
        tokens = self.vit.encoder.dropout(self.preprocess(images, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask))
        if self.grad_checkpointing and torch.is_grad_enabled():
            for layer in self.vit.encoder.layers:
                tokens = self._run(layer, tokens)
        else:
            tokens = self.vit.encoder.layers(tokens)
        return self.vit.encoder.ln(tokens)

    def _run(self, layer: nn.Module, tokens: Tensor) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(layer, tokens, use_reentrant=False)
        return layer(tokens)

    def images_to_tokens(self, images: Tensor) -> Tensor:
        """(batch, 3, H, W) -> patch tokens (batch, num_patches, dim); any H, W divisible by the patch size."""
        return self.vit.conv_proj(images).flatten(2).transpose(1, 2)

    def prepend_prefix_tokens(self, x: Tensor, prepend_class_token: bool = True) -> Tensor:
        """Prepends the class token (torchvision ViTs have no other prefix tokens)."""
        if not prepend_class_token:
            return x
        return torch.cat([self.vit.class_token.expand(x.shape[0], -1, -1), x], dim=1)

    def add_prefix_tokens(self, x: Tensor) -> Tensor:
        """Alias of :meth:`prepend_prefix_tokens` (Lightly keeps it for backwards compatibility)."""
        return self.prepend_prefix_tokens(x)

    def add_pos_embed(self, x: Tensor) -> Tensor:
        """Adds the positional embedding to every token, the class token included (as torchvision does)."""
        return x + self.interpolate_pos_encoding(x)

    def _initialize_weights(self) -> None:
        w = self.vit.conv_proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))  # like a linear layer (MAE)
        nn.init.normal_(self.vit.class_token, std=0.02)
        self.apply(_initialize_linear_layers)

    def extra_repr(self) -> str:
        return f"antialias={self.antialias}"

