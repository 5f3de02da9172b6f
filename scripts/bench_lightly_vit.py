"""The Lightly side of ``scripts/bench_vs_lightly.py`` for the ViT methods: DINO (ViT) and MAE.

Each model is assembled from Lightly's own modules the way Lightly's ImageNet ViT benchmarks do it
(``benchmarks/imagenet/vitb16/dino.py`` and ``mae.py`` in the Lightly repository), minus Lightning:

* the encoder is ``lightly.models.modules.MaskedVisionTransformerTIMM`` around a timm ViT built with timm's
  own constructor (``timm.models.vision_transformer.<arch>(...)``), evaluated on its class token;
* DINO: ``DINOProjectionHead`` for teacher and student, ``lightly.loss.DINOLoss`` (centering, teacher
  temperature warmup by epoch), student-only stochastic depth (timm's ``drop_path_rate``), the student's last
  head layer frozen for ``freeze_last_layer`` epochs, EMA teacher (the loop calls ``update_momentum`` with
  ``cosine_schedule``), global views and local views each through the student as one batch;
* MAE: ``MAEDecoderTIMM`` with a separate decoder mask token, ``random_token_mask``, ``set_at_index`` /
  ``get_at_index``, ``patchify`` targets (per-patch normalised with ``normalize_mean_var`` when the recipe's
  ``norm_pix_loss`` is on, as in Lightly's AIM benchmark) and ``MSELoss``.

Where sslhub's method differs from Lightly's benchmark defaults, the model here follows sslhub's so that the two
sides train the same recipe (the benchmark compares implementations, not recipes):

* the timm ViT has no classifier (``num_classes=0``); Lightly's benchmark keeps timm's unused 1000-class head;
* no weight decay on class/register/mask tokens and positional embeddings (sslhub's ``param_groups``; Lightly's
  ``get_weight_decay_parameters`` exempts only norms and biases);
* the DINO teacher temperature follows the recipe's warmup (Lightly's benchmark fixes it at 0.04);
* the MAE encoder's mask token (unused: the encoder drops masked tokens) is frozen, as in sslhub.

The models have the interface the benchmark's loop uses: ``forward(views) -> loss``, ``backbone`` (the
evaluation encoder), ``momentum`` / ``momentum_pairs()`` (EMA), ``current_epoch`` (set by the loop),
``before_optimizer_step()`` and ``param_groups(weight_decay)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

# Parameter names that sslhub's ViT methods never decay (besides norms and biases, which Lightly exempts too).
NO_DECAY_NAMES = ("cls_token", "reg_token", "pos_embed", "mask_token")

ViTFactory = Callable[..., nn.Module]


def timm_vit_factory(backbone: dict[str, Any]) -> ViTFactory:
    """A function building the recipe's timm ViT (``backbone``: ``arch`` plus timm keyword arguments) with timm's
    own constructor, as Lightly's benchmarks do (``vit_small_patch16_224(dynamic_img_size=True)``); extra keyword
    arguments (``drop_path_rate``) are passed through."""
    import timm.models.vision_transformer as V

    kw = {k: v for k, v in backbone.items() if k != "arch" and v is not None}
    fn = getattr(V, backbone["arch"], None)
    if fn is None:
        raise SystemExit(f"{backbone['arch']}: not a timm.models.vision_transformer constructor")

    def build(**extra: Any) -> nn.Module:
        return fn(pretrained=False, num_classes=0, **kw, **extra)

    return build


class LightlyViTModel(nn.Module):
    """Shared parts: hooks with no effect by default and sslhub's two AdamW parameter groups."""

    momentum: tuple[float, float] | None = None
    current_epoch: int = 0

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return []

    def before_optimizer_step(self) -> None:
        """Between backward and the optimizer step."""

    def trained_modules(self) -> list[nn.Module]:  # pragma: no cover - overridden
        raise NotImplementedError

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """``lightly.models.utils.get_weight_decay_parameters`` (no decay on norms and biases) over the trained
        modules, with tokens and positional embeddings moved to the no-decay group as sslhub does; frozen
        parameters left out. Groups are named so that ``lightly.utils.optim.update_param_groups`` can schedule
        the decay of the first one."""
        from lightly.models.utils import get_weight_decay_parameters

        modules = self.trained_modules()
        decay, no_decay = get_weight_decay_parameters(modules)
        tokens = {id(p) for m in modules for n, p in m.named_parameters() if n.endswith(NO_DECAY_NAMES)}
        trained = [p for p in decay if p.requires_grad]
        return [
            {"name": "decay", "params": [p for p in trained if id(p) not in tokens], "weight_decay": weight_decay},
            {"name": "no_decay", "params": [p for p in no_decay if p.requires_grad] + [p for p in trained if id(p) in tokens],
             "weight_decay": 0.0},
        ]  # fmt: skip


class LDINOViT(LightlyViTModel):
    """DINO with a ViT as in Lightly's ``benchmarks/imagenet/vitb16/dino.py``: ``backbone`` /
    ``projection_head`` are the EMA teacher, ``student_backbone`` / ``student_projection_head`` are trained."""

    def __init__(self, vit: ViTFactory, *, hidden_dim: int = 2048, bottleneck_dim: int = 256, out_dim: int = 65536,
                 norm_last_layer: bool = False, freeze_last_layer: int = 1, warmup_teacher_temp: float = 0.04,
                 teacher_temp: float = 0.04, warmup_teacher_temp_epochs: int = 30, student_temp: float = 0.1,
                 center_momentum: float = 0.9, momentum_start: float = 0.996, momentum_end: float = 1.0,
                 student_drop_path_rate: float = 0.1, pos_embed: str = "sincos", **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import DINOLoss
        from lightly.models.modules import (
            DINOProjectionHead,
            MaskedVisionTransformerTIMM,
        )
        from lightly.models.utils import deactivate_requires_grad

        teacher_vit = vit()
        dim = int(teacher_vit.embed_dim)
        self.backbone = MaskedVisionTransformerTIMM(vit=teacher_vit, pos_embed_initialization=pos_embed)
        self.projection_head = DINOProjectionHead(dim, hidden_dim, bottleneck_dim, out_dim, norm_last_layer=norm_last_layer)
        # The student's ViT is a second timm model with stochastic depth (timm's linear rule, as sslhub's).
        student_vit = vit(drop_path_rate=student_drop_path_rate)
        self.student_backbone = MaskedVisionTransformerTIMM(vit=student_vit, pos_embed_initialization=pos_embed)
        self.student_projection_head = DINOProjectionHead(dim, hidden_dim, bottleneck_dim, out_dim,
                                                          freeze_last_layer=freeze_last_layer,
                                                          norm_last_layer=norm_last_layer)  # fmt: skip
        # Teacher starts as the student (as in Lightly's DINO example); the benchmark overwrites both with
        # sslhub's initial weights anyway unless --independent-init.
        self.backbone.load_state_dict(self.student_backbone.state_dict())
        self.projection_head.load_state_dict(self.student_projection_head.state_dict())
        deactivate_requires_grad(self.backbone)
        deactivate_requires_grad(self.projection_head)
        self.student_backbone.mask_token.requires_grad = False  # DINO masks nothing
        self.criterion = DINOLoss(output_dim=out_dim, warmup_teacher_temp=warmup_teacher_temp, teacher_temp=teacher_temp,
                                  warmup_teacher_temp_epochs=warmup_teacher_temp_epochs, student_temp=student_temp,
                                  center_momentum=center_momentum)  # fmt: skip
        self.momentum = (momentum_start, momentum_end)

    def trained_modules(self) -> list[nn.Module]:
        return [self.student_backbone, self.student_projection_head]

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.student_backbone, self.backbone), (self.student_projection_head, self.projection_head)]

    def forward_student(self, x: Tensor) -> Tensor:
        return self.student_projection_head(self.student_backbone(x).flatten(start_dim=1))

    def forward(self, views: list[Tensor]) -> Tensor:
        global_views = torch.cat(views[:2])
        with torch.no_grad():
            teacher_projections = self.projection_head(self.backbone(global_views).flatten(start_dim=1))
        student = [self.forward_student(global_views)]
        if len(views) > 2:  # the local crops share one size: one batch, as in Lightly's benchmark
            student.append(self.forward_student(torch.cat(views[2:])))
        student_projections = torch.cat(student)
        return self.criterion(teacher_out=list(teacher_projections.chunk(2)),
                              student_out=list(student_projections.chunk(len(views))), epoch=self.current_epoch)  # fmt: skip

    def before_optimizer_step(self) -> None:
        self.student_projection_head.cancel_last_layer_gradients(self.current_epoch)


class LMAE(LightlyViTModel):
    """MAE as in Lightly's ``benchmarks/imagenet/vitb16/mae.py`` (timm version): ``backbone`` is the encoder,
    ``decoder`` Lightly's ``MAEDecoderTIMM`` with its own mask token."""

    def __init__(self, vit: ViTFactory, *, mask_ratio: float = 0.75, decoder_dim: int = 512, decoder_depth: int = 8,
                 decoder_num_heads: int = 16, norm_pix_loss: bool = True, pos_embed: str = "sincos",
                 **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM

        encoder = vit()
        self.mask_ratio = mask_ratio
        self.patch_size = int(encoder.patch_embed.patch_size[0])
        self.sequence_length = int(encoder.patch_embed.num_patches + encoder.num_prefix_tokens)
        mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(mask_token, std=0.02)
        self.backbone = MaskedVisionTransformerTIMM(vit=encoder, pos_embed_initialization=pos_embed)
        self.backbone.mask_token.requires_grad = False  # the encoder drops masked tokens; frozen as in sslhub
        with warnings.catch_warnings():
            # lightly 1.6.0 deprecates MAEDecoderTIMM in favour of MaskedVisionTransformerDecoderTIMM; its ViT
            # benchmarks and sslhub's decoder (same state-dict keys) still use it.
            warnings.simplefilter("ignore")
            self.decoder = MAEDecoderTIMM(num_patches=encoder.patch_embed.num_patches, patch_size=self.patch_size,
                                          embed_dim=encoder.embed_dim, decoder_embed_dim=decoder_dim,
                                          decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads,
                                          num_prefix_tokens=encoder.num_prefix_tokens, mlp_ratio=4.0,
                                          proj_drop_rate=0.0, attn_drop_rate=0.0, mask_token=mask_token)  # fmt: skip
        self.norm_pix_loss = norm_pix_loss
        self.criterion = nn.MSELoss()

    def trained_modules(self) -> list[nn.Module]:
        return [self.backbone, self.decoder]

    def forward_decoder(self, x_encoded: Tensor, idx_keep: Tensor, idx_mask: Tensor) -> Tensor:
        from lightly.models import utils

        x_decode = self.decoder.embed(x_encoded)
        x_masked = utils.repeat_token(self.decoder.mask_token, (x_encoded.shape[0], self.sequence_length))
        x_masked = utils.set_at_index(x_masked, idx_keep, x_decode.type_as(x_masked))
        x_decoded = self.decoder.decode(x_masked)
        return self.decoder.predict(utils.get_at_index(x_decoded, idx_mask))

    def forward(self, views: list[Tensor]) -> Tensor:
        from lightly.models import utils

        images = views[0]  # MAETransform makes one view
        idx_keep, idx_mask = utils.random_token_mask(size=(images.shape[0], self.sequence_length),
                                                     mask_ratio=self.mask_ratio, device=images.device)  # fmt: skip
        x_encoded = self.backbone.encode(images=images, idx_keep=idx_keep)
        predictions = self.forward_decoder(x_encoded, idx_keep, idx_mask)
        # idx_mask counts the class token; patches don't have it
        target = utils.get_at_index(utils.patchify(images, self.patch_size), idx_mask - 1)
        if self.norm_pix_loss:
            target = utils.normalize_mean_var(target, dim=-1)
        return self.criterion(predictions, target)


# recipe method -> Lightly model class, and the CPU-sized recipe the benchmark trains for it
VIT_METHODS: dict[str, type[LightlyViTModel]] = {"dino_vit": LDINOViT, "mae": LMAE}
VIT_RECIPES = {"dino_vit": "dino-vit-tiny-p4-32", "mae": "mae-vit-tiny-p4-32"}
