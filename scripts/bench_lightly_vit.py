"""The Lightly side of ``scripts/bench_vs_lightly.py`` for the ViT methods: DINO (ViT), MAE, iBOT, DINOv2, I-JEPA.

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

iBOT, DINOv2 and I-JEPA follow Lightly's ``examples/pytorch/{ibot,dinov2,ijepa}.py`` (I-JEPA with Lightly's timm
modules: ``MaskedVisionTransformerTIMM`` + ``IJEPAPredictorTIMM``, masks from ``IJEPAMaskCollator``), with the
attribute names of sslhub's methods (``teacher_backbone``, ``student_head.dino_head`` ...) so that the initial
weights copy by key, and where sslhub's recipe decides: teacher temperature warmup by epoch (the examples warm up
per step), the student's last layer frozen for ``freeze_last_layer`` epochs, I-JEPA's EMA momentum linear (as the
I-JEPA reference; ``momentum_at``).

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

# Parameter names that sslhub's ViT methods never decay (besides norms and biases, which Lightly exempts too);
# LayerScale's gamma (DINOv2's ViTs) is 1-d, undecayed in sslhub as in the DINOv2 code.
NO_DECAY_NAMES = ("cls_token", "reg_token", "pos_embed", "mask_token", "gamma")

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


class _HeadPair(nn.Module):
    """DINOv2's per-network heads: ``dino_head`` (class token) and, when separate, ``ibot_head`` (patch tokens)."""

    def __init__(self, dino_head: nn.Module, ibot_head: nn.Module | None) -> None:
        super().__init__()
        self.dino_head = dino_head
        if ibot_head is not None:
            self.ibot_head = ibot_head

    def patch_head(self) -> nn.Module:
        return self._modules.get("ibot_head") or self.dino_head


class LIBOT(LightlyViTModel):
    """iBOT (``dinov2=False``) and DINOv2 (``dinov2=True``) as Lightly's ``examples/pytorch/ibot.py`` /
    ``dinov2.py``: ``MaskedVisionTransformerTIMM`` teacher and student (antialias off, timm's position init), DINO
    (iBOT) or DINOv2 heads, ``DINOLoss`` + ``IBOTPatchLoss`` (+ 0.1 * ``KoLeoLoss``), ``random_block_mask``."""

    def __init__(self, vit: ViTFactory, *, dinov2: bool = False, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 out_dim: int = 8192, ibot_separate_head: bool = False, warmup_teacher_temp: float = 0.04,
                 teacher_temp: float = 0.07, warmup_teacher_temp_epochs: int = 30, student_temp: float = 0.1,
                 center_momentum: float = 0.9, momentum_start: float = 0.992, momentum_end: float = 1.0,
                 student_drop_path_rate: float = 0.1, freeze_last_layer: int = 1, mask_ratio_min: float = 0.1,
                 mask_ratio_max: float = 0.5, mask_probability: float = 0.5, koleo_weight: float = 0.1,
                 pos_embed: str = "skip", **_: Any) -> None:  # fmt: skip
        super().__init__()
        import copy

        from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss
        from lightly.models.modules import DINOProjectionHead, DINOv2ProjectionHead, MaskedVisionTransformerTIMM
        from lightly.models.utils import deactivate_requires_grad, update_drop_path_rate

        self.teacher_backbone = MaskedVisionTransformerTIMM(vit=vit(), antialias=False, pos_embed_initialization=pos_embed)
        self.student_backbone = copy.deepcopy(self.teacher_backbone)
        update_drop_path_rate(self.student_backbone.vit, drop_path_rate=student_drop_path_rate, mode="uniform")
        deactivate_requires_grad(self.teacher_backbone)
        dim = int(self.teacher_backbone.vit.embed_dim)
        self.dinov2 = dinov2
        if dinov2:
            def head() -> nn.Module:
                return DINOv2ProjectionHead(dim, hidden_dim, bottleneck_dim, out_dim)

            t_dino, s_dino = head(), head()
            t_ibot, s_ibot = (head(), head()) if ibot_separate_head else (None, None)
            self.teacher_head: nn.Module = _HeadPair(t_dino, t_ibot)
            self.student_head: nn.Module = _HeadPair(s_dino, s_ibot)
        else:
            self.student_head = DINOProjectionHead(dim, hidden_dim, bottleneck_dim, out_dim, norm_last_layer=False)
            self.teacher_head = DINOProjectionHead(dim, hidden_dim, bottleneck_dim, out_dim)
        deactivate_requires_grad(self.teacher_head)
        self.freeze_last_layer = freeze_last_layer
        self.mask_args = dict(batch_mask_ratio=mask_probability, min_image_mask_ratio=mask_ratio_min,
                              max_image_mask_ratio=mask_ratio_max)  # fmt: skip
        self.dino_criterion = DINOLoss(output_dim=out_dim, warmup_teacher_temp=warmup_teacher_temp, teacher_temp=teacher_temp,
                                       warmup_teacher_temp_epochs=warmup_teacher_temp_epochs, student_temp=student_temp,
                                       center_momentum=center_momentum)  # fmt: skip
        self.ibot_criterion = IBOTPatchLoss(output_dim=out_dim, teacher_temp=teacher_temp, student_temp=student_temp,
                                            center_momentum=center_momentum)  # fmt: skip
        self.koleo_criterion = KoLeoLoss()
        self.koleo_weight = koleo_weight if dinov2 else 0.0
        self.momentum = (momentum_start, momentum_end)

    @property
    def backbone(self) -> nn.Module:  # the evaluation encoder: the teacher
        return self.teacher_backbone

    def trained_modules(self) -> list[nn.Module]:
        return [self.student_backbone, self.student_head]

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.student_backbone, self.teacher_backbone), (self.student_head, self.teacher_head)]

    def _heads(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        t, s = self.teacher_head, self.student_head
        if self.dinov2:
            return t.dino_head, t.patch_head(), s.dino_head, s.patch_head()
        return t, t, s, s

    def forward(self, views: list[Tensor]) -> Tensor:
        from lightly.models.utils import random_block_mask

        t_cls_head, t_patch_head, s_cls_head, s_patch_head = self._heads()
        global_views = torch.cat(views[:2])
        B = len(global_views)
        mask = global_views.new_zeros((B, self.teacher_backbone.sequence_length), dtype=torch.bool)
        H, W = self.teacher_backbone.vit.patch_embed.grid_size
        block_mask = random_block_mask(size=(B, H, W), device=mask.device, **self.mask_args)
        mask[:, 1:] = block_mask.flatten(start_dim=1)
        with torch.no_grad():
            t_features = self.teacher_backbone.encode(global_views)
            t_cls_out, t_masked_out = t_cls_head(t_features[:, 0]), t_patch_head(t_features[mask])
        s_features = self.student_backbone.encode(global_views, mask=mask)
        s_cls_out = [s_cls_head(s_features[:, 0])]
        if len(views) > 2:
            s_cls_out.append(s_cls_head(self.student_backbone.encode(torch.cat(views[2:]))[:, 0]))
        c = self.dino_criterion
        epoch = self.current_epoch
        temp = float(c.teacher_temp_schedule[epoch]) if epoch < c.warmup_teacher_temp_epochs else float(c.teacher_temp)
        loss = c(teacher_out=t_cls_out.chunk(2), student_out=torch.cat(s_cls_out).chunk(len(views)), teacher_temp=temp)
        loss = loss + self.ibot_criterion(teacher_out=t_masked_out, student_out=s_patch_head(s_features[mask]),
                                          mask=block_mask, teacher_temp=temp)  # fmt: skip
        if self.koleo_weight:
            loss = loss + self.koleo_weight * sum(self.koleo_criterion(t) for t in s_features[:, 0].chunk(2))
        return loss

    def before_optimizer_step(self) -> None:
        if self.current_epoch < self.freeze_last_layer:
            for name, p in self.student_head.named_parameters():
                if "last_layer" in name:
                    p.grad = None


class LDINOv2(LIBOT):
    """DINOv2 (see :class:`LIBOT`)."""

    def __init__(self, vit: ViTFactory, **kwargs: Any) -> None:
        super().__init__(vit, dinov2=True, **kwargs)


class LIJEPA(LightlyViTModel):
    """I-JEPA as Lightly's ``examples/pytorch/ijepa.py`` with its timm modules: ``encoder`` / ``target_encoder``
    (``MaskedVisionTransformerTIMM`` around a ViT without class token), ``IJEPAPredictorTIMM``, masks from
    ``IJEPAMaskCollator``, layer-normalised targets, ``SmoothL1Loss``."""

    def __init__(self, vit: ViTFactory, *, predictor_embed_dim: int = 384, predictor_depth: int = 12,
                 predictor_num_heads: int = 12, enc_mask_scale: tuple[float, float] = (0.85, 1.0),
                 pred_mask_scale: tuple[float, float] = (0.15, 0.2), aspect_ratio: tuple[float, float] = (0.75, 1.5),
                 nenc: int = 1, npred: int = 4, min_keep: int = 10, allow_overlap: bool = False,
                 momentum_start: float = 0.996, momentum_end: float = 1.0, pos_embed: str = "sincos", **_: Any) -> None:  # fmt: skip
        super().__init__()
        import copy

        from lightly.data import IJEPAMaskCollator
        from lightly.models.modules import IJEPAPredictorTIMM, MaskedVisionTransformerTIMM
        from lightly.models.utils import deactivate_requires_grad

        encoder = vit()
        self.encoder = MaskedVisionTransformerTIMM(vit=encoder, pos_embed_initialization=pos_embed)
        self.encoder.mask_token.requires_grad = False  # unused: context tokens are selected (frozen as in sslhub)
        self.predictor = IJEPAPredictorTIMM(num_patches=encoder.patch_embed.num_patches, depth=predictor_depth,
                                            mlp_dim=encoder.embed_dim, predictor_embed_dim=predictor_embed_dim,
                                            num_heads=predictor_num_heads)  # fmt: skip
        self.target_encoder = copy.deepcopy(self.encoder)
        deactivate_requires_grad(self.target_encoder)
        size, patch = encoder.patch_embed.img_size, encoder.patch_embed.patch_size[0]
        self.collator = IJEPAMaskCollator(input_size=tuple(size), patch_size=patch, enc_mask_scale=tuple(enc_mask_scale),
                                          pred_mask_scale=tuple(pred_mask_scale), aspect_ratio=tuple(aspect_ratio),
                                          nenc=nenc, npred=npred, min_keep=min_keep, allow_overlap=allow_overlap)  # fmt: skip
        self.criterion = nn.SmoothL1Loss()
        self.momentum = (momentum_start, momentum_end)

    @property
    def backbone(self) -> nn.Module:  # the evaluation encoder: the target encoder
        return self.target_encoder

    def momentum_at(self, step: int, total: int) -> float:
        start, end = self.momentum  # linear, as in the I-JEPA example's momentum_scheduler
        return start + (end - start) * min(1.0, step / max(1, total - 1))

    def trained_modules(self) -> list[nn.Module]:
        return [self.encoder, self.predictor]

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self.target_encoder)]

    def forward(self, views: list[Tensor]) -> Tensor:
        from lightly.models import utils
        from torch.nn import functional as F

        images = views[0]
        _, masks_enc, masks_pred = self.collator([(torch.zeros(1), 0)] * len(images))
        masks_enc = [m.to(images.device) for m in masks_enc]
        masks_pred = [m.to(images.device) for m in masks_pred]
        with torch.no_grad():
            h = self.target_encoder.encode(images)
            h = F.layer_norm(h, (h.size(-1),))
            h = utils.repeat_interleave_batch(utils.apply_masks(h, masks_pred), len(images), repeat=len(masks_enc))
        z = torch.cat([self.encoder.encode(images, idx_keep=m) for m in masks_enc])
        return self.criterion(self.predictor(z, masks_enc, masks_pred), h)


class LightlyIJEPATransform:
    """Lightly's ``IJEPATransform`` (``lightly.transforms.ijepa_transform``) as a one-view list, the form the
    benchmark's loop and sslhub's trainer pass on."""

    def __init__(self, input_size: int = 224, min_scale: float = 0.2) -> None:
        from lightly.transforms.ijepa_transform import IJEPATransform

        self.transform = IJEPATransform(input_size=input_size, min_scale=min_scale)

    def __call__(self, image: Any) -> list[Tensor]:
        return [self.transform(image)]


# Transforms of the recipes that ``lightly.transforms`` does not export under the recipe's name.
LIGHTLY_TRANSFORMS: dict[str, Any] = {"IJEPATransform": LightlyIJEPATransform}

# recipe method -> Lightly model class, and the CPU-sized recipe the benchmark trains for it
VIT_METHODS: dict[str, type[LightlyViTModel]] = {"dino_vit": LDINOViT, "mae": LMAE, "ibot": LIBOT, "dinov2": LDINOv2,
                                                 "ijepa": LIJEPA}  # fmt: skip
VIT_RECIPES = {"dino_vit": "dino-vit-tiny-p4-32", "mae": "mae-vit-tiny-p4-32", "ibot": "ibot-vit-tiny-p4-32",
               "dinov2": "dinov2-vit-tiny-p4-32", "ijepa": "ijepa-vit-tiny-p4-32"}  # fmt: skip
