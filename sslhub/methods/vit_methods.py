"""Transformer and masked-modelling methods: DINO (ViT), MAE, SimMIM, MSN, PMSN and AIM.

Module layout follows Lightly's ImageNet ViT benchmarks, so checkpoints read like theirs: the evaluation
encoder is ``backbone.vit.*`` (a timm ViT inside :class:`~sslhub.backbones.masked_vit.MaskedVisionTransformerTIMM`)
for DINO (the EMA teacher; the student is ``student_backbone``), MAE and SimMIM (the encoder; decoder and mask
token live elsewhere) and MSN/PMSN (the EMA target encoder; the trained one is ``anchor_backbone``), and
``backbone.*`` for AIM (a plain timm ViT). Every key under that prefix is timm's, so the encoder loads strictly
into ``timm.create_model(arch, num_classes=0, img_size=..., **timm_kwargs)``; the ViT's ``pretrained_cfg``
carries ``arch``/``img_size``/``timm_kwargs`` for the checkpoint metadata.

With a torchvision ViT (``backbone.arch: vit_b_16`` ...), DINO, MAE, SimMIM, MSN and PMSN wrap it in
:class:`~sslhub.backbones.masked_vit_torchvision.MaskedVisionTransformerTorchvision` instead: the keys under
``backbone.vit.`` are then torchvision's (``heads`` = Identity) and ``timm_kwargs`` holds the size overrides
(``patch_size``, ``num_layers`` ...) that ``create_backbone(arch, img_size=..., **timm_kwargs)`` rebuilds it
with. AIM needs timm's ViT (prefix-causal attention).

Parameters a method never uses in its loss (e.g. the encoder mask token of MAE) are frozen, so that every
trainable parameter gets a gradient (DDP without ``find_unused_parameters``).

Registered in :data:`sslhub.methods.METHODS` as ``dino_vit``, ``mae``, ``simmim``, ``msn``, ``pmsn``, ``aim``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from sslhub import losses as L
from sslhub.heads import DINOProjectionHead
from sslhub.heads.utils import deactivate_requires_grad, update_momentum
from sslhub.heads.vit_heads import AIMPredictionHead, MAEDecoderTIMM, MSNProjectionHead
from sslhub.losses.msn import MSNLoss, PMSNLoss
from sslhub.losses.reconstruction import AIMLoss, MAELoss, SimMIMLoss, patchify
from sslhub.methods import METHODS, SSLMethod
from sslhub.utils.scheduler import cosine_schedule

__all__ = ["AIM", "DINOViT", "MAE", "MSN", "PMSN", "SimMIM"]

# timm names, then torchvision's (class_token, encoder.pos_embedding)
_NO_DECAY_NAMES = ("cls_token", "reg_token", "pos_embed", "mask_token", "class_token", "pos_embedding")


def _same_size_groups(views: list[Tensor]) -> list[list[Tensor]]:
    """Consecutive views of equal shape, so each resolution runs through the encoder as one batch."""
    groups: list[list[Tensor]] = []
    for v in views:
        if groups and groups[-1][0].shape == v.shape:
            groups[-1].append(v)
        else:
            groups.append([v])
    return groups


def _num_patches(images: Tensor, patch_size: int) -> int:
    return (images.shape[-2] // patch_size) * (images.shape[-1] // patch_size)


class _ViTMethodBase(SSLMethod):
    """Evaluation backbone addressed by a dotted ``eval_prefix``; optimizer groups without decay on norms,
    biases, tokens and positional embeddings."""

    @property
    def eval_backbone(self) -> nn.Module:
        m: nn.Module = self
        for part in self.eval_prefix.rstrip(".").split("."):
            m = getattr(m, part)
        return m

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Two AdamW groups: decayed weights, and biases/norms/tokens/positional embeddings without decay
        (as MAE, DINO and AIM train)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name.endswith(_NO_DECAY_NAMES) else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _is_torchvision_vit(backbone: nn.Module) -> bool:
    from sslhub.backbones import family_of

    arch = (getattr(backbone, "pretrained_cfg", None) or {}).get("arch")
    if isinstance(arch, str) and family_of(arch) == "torchvision_vit":
        return True
    from sslhub.backbones.masked_vit_torchvision import is_torchvision_vit

    return is_torchvision_vit(backbone)


class _MaskedViTMethod(_ViTMethodBase):
    """``self.backbone`` = :class:`MaskedVisionTransformerTIMM` around the recipe's timm ViT, or
    :class:`MaskedVisionTransformerTorchvision` around a torchvision ViT (MAE init either way).

    Sets ``patch_size``, ``embed_dim``, ``num_prefix_tokens`` and ``num_patches`` (at the ViT's image size), which
    the methods use instead of either library's attribute names.
    """

    eval_prefix = "backbone.vit."

    def __init__(self, backbone: nn.Module, num_features: int, pos_embed: str = "sincos") -> None:
        if _is_torchvision_vit(backbone):
            from sslhub.backbones.masked_vit_torchvision import MaskedVisionTransformerTorchvision, annotate_torchvision_vit

            tv = annotate_torchvision_vit(backbone)
            super().__init__(tv, num_features)
            self.backbone = MaskedVisionTransformerTorchvision(tv, pos_embed_initialization=pos_embed)
            self.patch_size, self.embed_dim = int(tv.patch_size), int(tv.hidden_dim)
            self.num_prefix_tokens, self.num_patches = 1, int(tv.seq_length) - 1
            return
        from timm.models.vision_transformer import VisionTransformer

        from sslhub.backbones.masked_vit import MaskedVisionTransformerTIMM, annotate_vit

        if not isinstance(backbone, VisionTransformer):
            arch = (getattr(backbone, "pretrained_cfg", None) or {}).get("arch", type(backbone).__name__)
            raise ValueError(
                f"{type(self).__name__} needs a ViT backbone: a timm VisionTransformer (e.g. "
                f"backbone.arch=vit_small_patch16_224) or a torchvision one (backbone.arch=vit_b_16), got {arch!r}"
            )
        vit = annotate_vit(backbone)
        super().__init__(vit, num_features)
        self.backbone = MaskedVisionTransformerTIMM(vit, pos_embed_initialization=pos_embed)
        self.patch_size, self.embed_dim = int(vit.patch_embed.patch_size[0]), int(vit.embed_dim)
        self.num_prefix_tokens, self.num_patches = int(vit.num_prefix_tokens), int(vit.patch_embed.num_patches)

    def _random_mask(self, images: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor]:
        from sslhub.backbones.masked_vit import random_patch_mask

        n = _num_patches(images, self.patch_size)
        return random_patch_mask(images.shape[0], n, mask_ratio, self.num_prefix_tokens, images.device)


class DINOViT(_MaskedViTMethod):
    """DINO with a ViT and multi-crop (Lightly's ViT benchmark layout): the teacher ``backbone`` and
    ``projection_head`` are EMAs of ``student_backbone`` / ``student_projection_head``; centering and
    sharpening in :class:`~sslhub.losses.DINOLoss` with teacher-temperature warmup; the student's last head
    layer is frozen for ``freeze_last_layer`` epochs; stochastic depth on the student only.

    Views: the first two are the global crops (seen by teacher and student), the rest local crops (student).
    """

    def __init__(self, backbone: nn.Module, num_features: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 out_dim: int = 65536, norm_last_layer: bool = False, freeze_last_layer: int = 1,
                 warmup_teacher_temp: float = 0.04, teacher_temp: float = 0.04, warmup_teacher_temp_epochs: int = 30,
                 student_temp: float = 0.1, center_momentum: float = 0.9, momentum_start: float = 0.996,
                 momentum_end: float = 1.0, student_drop_path_rate: float = 0.1, pos_embed: str = "sincos") -> None:  # fmt: skip
        super().__init__(backbone, num_features, pos_embed)
        self.projection_head = DINOProjectionHead(num_features, hidden_dim, bottleneck_dim, out_dim, norm_last_layer=norm_last_layer)
        self.student_backbone = copy.deepcopy(self.backbone)
        self.student_projection_head = DINOProjectionHead(num_features, hidden_dim, bottleneck_dim, out_dim,
                                                          freeze_last_layer=freeze_last_layer, norm_last_layer=norm_last_layer)  # fmt: skip
        self.student_projection_head.load_state_dict(self.projection_head.state_dict())
        self._set_drop_path(self.student_backbone, student_drop_path_rate)
        deactivate_requires_grad(self.backbone)
        deactivate_requires_grad(self.projection_head)
        self.student_backbone.mask_token.requires_grad = False  # DINO masks nothing
        self.criterion = L.DINOLoss(output_dim=out_dim, warmup_teacher_temp=warmup_teacher_temp, teacher_temp=teacher_temp,
                                    warmup_teacher_temp_epochs=warmup_teacher_temp_epochs, student_temp=student_temp,
                                    center_momentum=center_momentum)  # fmt: skip
        self.momentum = (momentum_start, momentum_end)

    @staticmethod
    def _set_drop_path(masked_vit: nn.Module, rate: float) -> None:
        """Stochastic depth with timm's linear decay rule; parameter-free, so the state dict is unchanged."""
        from sslhub.backbones.masked_vit_torchvision import is_torchvision_vit

        if is_torchvision_vit(masked_vit.vit):
            # torchvision's EncoderBlock has no drop-path slot: put it after the attention branch's dropout and
            # at the end of the MLP branch (both run right before their residual additions).
            from torchvision.ops import StochasticDepth

            layers = list(masked_vit.vit.encoder.layers)
            for layer, r in zip(layers, [rate * i / max(1, len(layers) - 1) for i in range(len(layers))]):
                if r > 0:
                    layer.dropout = nn.Sequential(layer.dropout, StochasticDepth(r, "row"))
                    layer.mlp.append(StochasticDepth(r, "row"))
            return
        from timm.layers import DropPath

        blocks = list(masked_vit.vit.blocks)
        rates = [rate * i / max(1, len(blocks) - 1) for i in range(len(blocks))]  # torch.linspace(0, rate, depth)
        for blk, r in zip(blocks, rates):
            blk.drop_path1 = DropPath(r) if r > 0 else nn.Identity()
            blk.drop_path2 = DropPath(r) if r > 0 else nn.Identity()

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        global_views = torch.cat(views[:2])
        with torch.no_grad():
            teacher_out = self.projection_head(self.backbone(global_views)).chunk(2)
        student = [self.student_projection_head(self.student_backbone(global_views))]
        for group in _same_size_groups(views[2:]):
            student.append(self.student_projection_head(self.student_backbone(torch.cat(group))))
        student_out = torch.cat(student).chunk(len(views))
        return self.criterion(list(teacher_out), list(student_out), epoch=progress[2])

    def before_optimizer_step(self, epoch: int) -> None:
        self.student_projection_head.cancel_last_layer_gradients(epoch)

    def after_step(self, step: int, total: int) -> None:
        m = cosine_schedule(step, total, *self.momentum)
        update_momentum(self.student_backbone, self.backbone, m)
        update_momentum(self.student_projection_head, self.projection_head, m)


class MAE(_MaskedViTMethod):
    """Masked autoencoder: the encoder sees the kept patches only, :class:`MAEDecoderTIMM` reconstructs the
    masked ones; MSE on (optionally per-patch normalised) pixels of the masked patches."""

    def __init__(self, backbone: nn.Module, num_features: int, mask_ratio: float = 0.75, decoder_dim: int = 512,
                 decoder_depth: int = 8, decoder_num_heads: int = 16, norm_pix_loss: bool = True,
                 pos_embed: str = "sincos") -> None:  # fmt: skip
        super().__init__(backbone, num_features, pos_embed)
        self.backbone.mask_token.requires_grad = False  # the encoder drops masked tokens; the decoder has its own
        self.mask_ratio = mask_ratio
        self.decoder = MAEDecoderTIMM(num_patches=self.num_patches, patch_size=self.patch_size,
                                      embed_dim=self.embed_dim, decoder_embed_dim=decoder_dim, decoder_depth=decoder_depth,
                                      decoder_num_heads=decoder_num_heads, num_prefix_tokens=self.num_prefix_tokens)  # fmt: skip
        self.criterion = MAELoss(norm_pix_loss=norm_pix_loss)

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        from sslhub.backbones.masked_vit import get_at_index, repeat_token, set_at_index

        images = views[0]
        idx_keep, idx_mask = self._random_mask(images, self.mask_ratio)
        encoded = self.decoder.embed(self.backbone.encode(images, idx_keep=idx_keep))
        tokens = repeat_token(self.decoder.mask_token, (images.shape[0], self.decoder.decoder_pos_embed.shape[1]))
        tokens = set_at_index(tokens, idx_keep, encoded.type_as(tokens))
        predictions = self.decoder.predict(get_at_index(self.decoder.decode(tokens), idx_mask))
        target = get_at_index(patchify(images, self.patch_size), idx_mask - self.num_prefix_tokens)
        return self.criterion(predictions, target)


class SimMIM(_MaskedViTMethod):
    """SimMIM: masked patches are replaced by the mask token and encoded with the rest; a linear decoder
    predicts their pixels; L1 loss on the masked patches."""

    def __init__(self, backbone: nn.Module, num_features: int, mask_ratio: float = 0.6, norm_pix_loss: bool = False,
                 pos_embed: str = "sincos") -> None:  # fmt: skip
        super().__init__(backbone, num_features, pos_embed)
        self.mask_ratio = mask_ratio
        self.decoder = nn.Linear(self.embed_dim, self.patch_size**2 * 3)
        self.criterion = SimMIMLoss(norm_pix_loss=norm_pix_loss)

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        from sslhub.backbones.masked_vit import get_at_index

        images = views[0]
        _, idx_mask = self._random_mask(images, self.mask_ratio)
        encoded = self.backbone.encode(images, idx_mask=idx_mask)
        predictions = self.decoder(get_at_index(encoded, idx_mask))
        target = get_at_index(patchify(images, self.patch_size), idx_mask - self.num_prefix_tokens)
        return self.criterion(predictions, target)


class MSN(_MaskedViTMethod):
    """Masked Siamese Networks: the trained ``anchor_backbone`` sees masked anchor views (random and focal),
    the EMA target ``backbone`` sees the unmasked first view; :class:`~sslhub.losses.msn.MSNLoss` over
    learnable ``prototypes``. The EMA momentum rises linearly from ``momentum_start`` to ``momentum_end``.

    Views: ``views[0]`` is the target, the others anchors (consecutive views of one size form one batch).
    """

    def __init__(self, backbone: nn.Module, num_features: int, mask_ratio: float = 0.15, hidden_dim: int = 2048,
                 out_dim: int = 256, num_prototypes: int = 1024, temperature: float = 0.1, sinkhorn_iterations: int = 3,
                 regularization_weight: float = 1.0, target_sharpen_temperature: float = 0.25,
                 momentum_start: float = 0.996, momentum_end: float = 1.0, pos_embed: str = "sincos",
                 gather_distributed: bool = False) -> None:  # fmt: skip
        super().__init__(backbone, num_features, pos_embed)
        self.mask_ratio = mask_ratio
        self.projection_head = MSNProjectionHead(num_features, hidden_dim, out_dim)
        self.anchor_backbone = copy.deepcopy(self.backbone)
        self.anchor_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone)
        deactivate_requires_grad(self.projection_head)
        self.anchor_backbone.mask_token.requires_grad = False  # MSN drops masked tokens
        self.prototypes = nn.Linear(out_dim, num_prototypes, bias=False).weight
        self.target_sharpen_temperature = target_sharpen_temperature
        self.criterion: MSNLoss = MSNLoss(temperature=temperature, sinkhorn_iterations=sinkhorn_iterations,
                                          regularization_weight=regularization_weight, gather_distributed=gather_distributed)  # fmt: skip
        self.momentum = (momentum_start, momentum_end)

    def _anchor(self, images: Tensor) -> Tensor:
        idx_keep, _ = self._random_mask(images, self.mask_ratio)
        return self.anchor_projection_head(self.anchor_backbone(images, idx_keep=idx_keep))

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        with torch.no_grad():
            targets = self.projection_head(self.backbone(views[0]))
        anchors = torch.cat([self._anchor(torch.cat(group)) for group in _same_size_groups(views[1:])])
        return self.criterion(anchors, targets, self.prototypes, target_sharpen_temperature=self.target_sharpen_temperature)

    def after_step(self, step: int, total: int) -> None:
        start, end = self.momentum
        m = start + (end - start) * min(1.0, step / max(1, total - 1))
        update_momentum(self.anchor_backbone, self.backbone, m)
        update_momentum(self.anchor_projection_head, self.projection_head, m)


class PMSN(MSN):
    """PMSN: MSN with a power-law prior on the mean prototype usage (:class:`~sslhub.losses.msn.PMSNLoss`)."""

    def __init__(self, backbone: nn.Module, num_features: int, mask_ratio: float = 0.15, hidden_dim: int = 2048,
                 out_dim: int = 256, num_prototypes: int = 1024, temperature: float = 0.1, sinkhorn_iterations: int = 3,
                 regularization_weight: float = 1.0, target_sharpen_temperature: float = 0.25,
                 momentum_start: float = 0.996, momentum_end: float = 1.0, pos_embed: str = "sincos",
                 power_law_exponent: float = 0.25, gather_distributed: bool = False) -> None:  # fmt: skip
        super().__init__(backbone, num_features, mask_ratio=mask_ratio, hidden_dim=hidden_dim, out_dim=out_dim,
                         num_prototypes=num_prototypes, temperature=temperature, sinkhorn_iterations=sinkhorn_iterations,
                         regularization_weight=regularization_weight, target_sharpen_temperature=target_sharpen_temperature,
                         momentum_start=momentum_start, momentum_end=momentum_end, pos_embed=pos_embed)  # fmt: skip
        self.criterion = PMSNLoss(temperature=temperature, sinkhorn_iterations=sinkhorn_iterations,
                                  regularization_weight=regularization_weight, power_law_exponent=power_law_exponent,
                                  gather_distributed=gather_distributed)  # fmt: skip


class AIM(_ViTMethodBase):
    """Autoregressive image model: a timm ViT without prefix tokens (``class_token=False``,
    ``no_embed_class=True``) attends causally after a random prefix, :class:`AIMPredictionHead` predicts the
    next patch's normalised pixels (:class:`~sslhub.losses.reconstruction.AIMLoss`). Fixed sine-cosine
    positional embeddings, added again before the head as in Lightly's AIM. Features: mean over tokens
    (``global_pool="avg"`` in the recipe)."""

    eval_prefix = "backbone."

    def __init__(self, backbone: nn.Module, num_features: int, hidden_dim: int = 2048, num_blocks: int = 12,
                 mlp_ratio: float = 4.0, norm_pix_loss: bool = True, shift: bool = True) -> None:  # fmt: skip
        from sslhub.backbones.masked_vit import annotate_vit, initialize_2d_sine_cosine_positional_embedding, require_timm_vit

        if _is_torchvision_vit(backbone):
            arch = (getattr(backbone, "pretrained_cfg", None) or {}).get("arch", "a torchvision ViT")
            raise ValueError(
                f"AIM needs timm's VisionTransformer (prefix-causal attention, no class token); {arch!r} is a "
                "torchvision ViT, which has neither. Use a timm name, e.g. backbone.arch=vit_small_patch16_224 "
                "with backbone.class_token=false, backbone.no_embed_class=true and backbone.global_pool=avg"
            )
        vit = require_timm_vit(backbone, "AIM")
        if vit.num_prefix_tokens or not vit.no_embed_class:
            raise ValueError(
                "AIM needs a ViT without class/register tokens: set backbone.class_token=false, "
                "backbone.no_embed_class=true and backbone.global_pool=avg"
            )
        super().__init__(annotate_vit(vit), num_features)
        initialize_2d_sine_cosine_positional_embedding(vit.pos_embed, num_prefix_tokens=0)
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.projection_head = AIMPredictionHead(vit.embed_dim, 3 * self.patch_size**2, hidden_dim=hidden_dim,
                                                 num_blocks=num_blocks, mlp_ratio=mlp_ratio)  # fmt: skip
        self.criterion = AIMLoss(norm_pix_loss=norm_pix_loss, shift=shift)

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        from timm.layers import resample_abs_pos_embed

        from sslhub.backbones.masked_vit import prefix_causal_attention_mask, random_prefix_mask

        images = views[0]
        n = _num_patches(images, self.patch_size)
        mask = random_prefix_mask((images.shape[0], n), max_prefix_length=n - 1, device=images.device)
        features = self.backbone.forward_features(images, attn_mask=prefix_causal_attention_mask(mask))
        pos = self.backbone.pos_embed
        if pos.shape[1] != n:
            g = int(n**0.5)
            pos = resample_abs_pos_embed(pos, (g, g), num_prefix_tokens=0)
        predictions = self.projection_head(features + pos)
        return self.criterion(predictions, patchify(images, self.patch_size), mask)


METHODS.update({"dino_vit": DINOViT, "mae": MAE, "simmim": SimMIM, "msn": MSN, "pmsn": PMSN, "aim": AIM})
