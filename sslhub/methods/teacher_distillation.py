"""Distillation from a frozen pretrained teacher into any student (LightlyTrain's ``distillationv1/v2/v3``).

The teacher is anything :func:`sslhub.load_pretrained` accepts (a registry name such as
``dinov2-vitb14.fb-lvd142m``, a local file, an ``hf-hub:`` id); it runs without gradients, in eval mode, once per
batch (bf16 autocast on a GPU). Student and teacher see the same augmented image, mixed with a shuffled copy of
the batch (mixup, a weight drawn uniformly in [0, 1) per batch). The three versions, after LightlyTrain's
documentation and source (facts only; this code is sslhub's own):

* **v1** (global): teacher pooled feature and the student's pooled feature through a linear projection to the
  teacher's width, both L2-normalised; a queue of the latest teacher features (newest first, this batch included)
  gives pseudo-class logits ``f @ queue.T / temperature``; loss ``KL(softmax(teacher) || softmax(student))``
  (batch mean). Default temperature 0.07.
* **v2** (dense): the last ``n_teacher_blocks`` (2) teacher token maps (final norm applied) concatenated along the
  channels; the student's last feature map through a per-location projection, resized (bilinear) to the teacher's
  grid; loss: mean squared error, no normalisation.
* **v3** (both): v1's queue loss on the pooled features plus, per image, the KL divergence between the teacher's
  and the student's token-to-token similarity distributions (L2-normalised features, temperature 0.07), weighted by
  ``loss_local_weight`` (1.0); separate linear projections for the pooled and the dense student features.

Only the student (``backbone``) and its projections train and are saved; the teacher lives under ``criterion.``,
which ``model.safetensors`` leaves out. Students: Lightly ResNetGenerator, torchvision ResNets, timm CNNs
(ConvNeXt, ResNets) and timm ViTs. Teachers: timm ViTs (DINOv2 files load as such), timm Eva (DINOv3 ViT files
load as such: pooled = the class token, the 4 storage tokens are skipped like any prefix token), ResNets, timm
CNNs. Default teachers, as LightlyTrain's: DINOv2 ViT-B/14 for v1 and v2, DINOv3 ViT-B/16 for v3.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sslhub.methods.base import METHODS, SSLMethod, feature_map

__all__ = ["DEFAULT_TEACHER", "DEFAULT_TEACHER_V3", "DistillationV1", "DistillationV2", "DistillationV3",
           "dense_and_pooled", "queue_kl_loss", "similarity_kl_loss"]  # fmt: skip

DEFAULT_TEACHER = "dinov2-vitb14.fb-lvd142m"  # LightlyTrain's v1 and v2 default: DINOv2 ViT-B/14
DEFAULT_TEACHER_V3 = "dinov3-vitb16.fb-lvd1689m"  # LightlyTrain's v3 default: DINOv3 ViT-B/16 (gated download)


# --- the losses, as functions (the tests compute them by hand against these) ----------------------------------


def queue_kl_loss(teacher: Tensor, student: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """``KL(softmax(teacher @ queue.T / t) || softmax(student @ queue.T / t))``, summed over the queue and
    averaged over the batch. All inputs L2-normalised: ``(B, D)``, ``(B, D)``, ``(Q, D)``."""
    target = F.softmax(teacher @ queue.t() / temperature, dim=-1)
    log_pred = F.log_softmax(student @ queue.t() / temperature, dim=-1)
    return F.kl_div(log_pred, target, reduction="batchmean")


def similarity_kl_loss(teacher: Tensor, student: Tensor, temperature: float) -> Tensor:
    """Per image, KL between the teacher's and the student's token-to-token similarity distributions (each token
    a row): ``(B, N, D)`` L2-normalised inputs; averaged over the ``B * N`` rows."""
    t = torch.einsum("bmd,bnd->bmn", teacher, teacher).flatten(0, 1)
    s = torch.einsum("bmd,bnd->bmn", student, student).flatten(0, 1)
    return F.kl_div(F.log_softmax(s / temperature, dim=-1), F.softmax(t / temperature, dim=-1), reduction="batchmean")


# --- features of any backbone ------------------------------------------------------------------------------------


def dense_and_pooled(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(feature map (B, C, h, w), pooled features (B, D))`` of a ResNet, a timm CNN or a timm ViT (patch tokens
    on their grid; the pooled feature is what the model returns, e.g. the class token)."""
    inner = getattr(model, "vit", model)  # load_pretrained(features="tokens") wraps the ViT
    if hasattr(inner, "forward_features") and hasattr(inner, "forward_head"):  # timm
        f = inner.forward_features(x)
        pooled = inner.forward_head(f, pre_logits=True)
        if f.ndim == 4:  # CNN: (B, C, h, w)
            return f, pooled
        prefix = int(getattr(inner, "num_prefix_tokens", 1))
        gh, gw = (s // p for s, p in zip(x.shape[-2:], inner.patch_embed.patch_size))
        patches = f[:, prefix:]
        return patches.transpose(1, 2).reshape(f.shape[0], f.shape[-1], gh, gw), pooled
    fmap = feature_map(inner, x)  # Lightly ResNetGenerator / torchvision ResNet
    return fmap, fmap.mean(dim=(2, 3))


def _timm_vit_blocks(model: nn.Module, x: Tensor, n: int) -> Tensor | None:
    """The last ``n`` token maps of a timm ViT (final norm applied), concatenated: ``(B, n * D, h, w)``."""
    inner = getattr(model, "vit", model)
    if n <= 1 or not hasattr(inner, "patch_embed"):  # a CNN teacher: its one feature map
        return None
    if hasattr(inner, "forward_intermediates"):  # timm's ViT and Eva (DINOv3), which has no get_intermediate_layers
        maps = inner.forward_intermediates(x, indices=n, norm=True, output_fmt="NCHW", intermediates_only=True)
    elif hasattr(inner, "get_intermediate_layers"):
        maps = inner.get_intermediate_layers(x, n=n, reshape=True, norm=True)
    else:
        return None
    maps = list(maps)
    h, w = maps[-1].shape[-2:]
    maps = [m if m.shape[-2:] == (h, w) else F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
            for m in maps]  # fmt: skip
    return torch.cat(maps, dim=1)


def _mixup(x: Tensor) -> Tensor:
    lam = torch.empty(1).uniform_(0.0, 1.0).item()
    return lam * x + (1.0 - lam) * x[torch.randperm(x.shape[0])]


def _trunc_linear(i: int, o: int) -> nn.Linear:
    lin = nn.Linear(i, o)
    nn.init.trunc_normal_(lin.weight, std=0.02)
    return lin


class _Teacher(nn.Module):
    """The frozen teacher; stays in eval mode whatever the method's mode."""

    def __init__(self, source: str) -> None:
        super().__init__()
        from sslhub.loading import load_pretrained

        self.model = load_pretrained(source)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.source = source
        self.eval()

    def train(self, mode: bool = True) -> _Teacher:  # noqa: ARG002  (frozen: always eval)
        return super().train(False)

    def _fit_input(self, x: Tensor) -> None:
        # a timm ViT built for another image size takes this one with its position embedding resampled (as
        # DINOv2 does at other resolutions); done once, on the first batch
        inner = getattr(self.model, "vit", self.model)
        pe = getattr(inner, "patch_embed", None)
        if pe is not None and getattr(pe, "img_size", None) and tuple(pe.img_size) != tuple(x.shape[-2:]):
            inner.set_input_size(img_size=tuple(x.shape[-2:]))

    @torch.no_grad()  # not inference_mode: its outputs are saved for the student's backward (queue logits)
    def forward(self, x: Tensor, blocks: int = 1) -> tuple[Tensor, Tensor]:
        """(feature map, pooled features) of ``x``, in fp32; ``blocks > 1``: a ViT's last blocks stacked."""
        self._fit_input(x)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if x.is_cuda else contextlib.nullcontext()
        with autocast:
            dense, pooled = dense_and_pooled(self.model, x)
            if blocks > 1:
                stacked = _timm_vit_blocks(self.model, x, blocks)
                dense = stacked if stacked is not None else dense
        return dense.float(), pooled.float()


class _TeacherLoss(nn.Module):
    """Holds the teacher (so that ``model.safetensors``, which drops ``criterion.``, holds the student only)."""

    def __init__(self, teacher: str) -> None:
        super().__init__()
        self.teacher = _Teacher(teacher)


def _probe(backbone: nn.Module, teacher: _Teacher, blocks: int) -> tuple[int, int, int]:
    """(student map channels, teacher pooled width, teacher map channels), from one small dry run."""
    size = 64
    inner = getattr(teacher.model, "vit", teacher.model)
    pe = getattr(inner, "patch_embed", None)
    if pe is not None and getattr(pe, "img_size", None):
        size = int(pe.img_size[0])
    x = torch.zeros(2, 3, size, size)
    s_size = ((getattr(backbone, "pretrained_cfg", None) or {}).get("input_size") or (3, 64, 64))[-1]
    was = backbone.training
    backbone.eval()
    with torch.no_grad():
        s_map, _ = dense_and_pooled(backbone, torch.zeros(2, 3, s_size, s_size))
        t_map, t_pooled = teacher(x, blocks)
    backbone.train(was)
    return s_map.shape[1], t_pooled.shape[1], t_map.shape[1]


class _Distillation(SSLMethod):
    views_needed = 1

    def __init__(self, backbone: nn.Module, num_features: int, teacher: str, blocks: int) -> None:
        super().__init__(backbone, num_features)
        self.criterion = _TeacherLoss(teacher)
        self.blocks = blocks
        self.student_dim, self.teacher_dim, self.teacher_map_dim = _probe(backbone, self.criterion.teacher, blocks)

    @property
    def teacher(self) -> _Teacher:
        return self.criterion.teacher

    def _queue_update(self, t: Tensor) -> None:
        b, q = t.shape[0], self.teacher_queue.shape[0]
        if b >= q:
            self.teacher_queue.copy_(t[:q])
        else:  # newest first
            self.teacher_queue.copy_(torch.cat([t, self.teacher_queue[:-b]]))


class DistillationV1(_Distillation):
    """Global distillation: queue pseudo-labels of the teacher's pooled features (see the module docstring).

    Args:
        teacher: anything :func:`sslhub.load_pretrained` accepts.
        queue_size: teacher features kept as pseudo-classes (LightlyTrain picks 16..8192 by dataset size).
        temperature: softmax temperature.
    """

    def __init__(self, backbone: nn.Module, num_features: int, teacher: str = DEFAULT_TEACHER,
                 queue_size: int = 8192, temperature: float = 0.07) -> None:  # fmt: skip
        super().__init__(backbone, num_features, teacher, blocks=1)
        self.projection_head = _trunc_linear(num_features, self.teacher_dim)
        self.temperature = temperature
        self.register_buffer("teacher_queue", torch.zeros(queue_size, self.teacher_dim))

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        x = _mixup(views[0])
        _, t = self.teacher(x)
        t = F.normalize(t, dim=-1)
        s = F.normalize(self.projection_head(self.backbone(x).flatten(1)), dim=-1)
        with torch.no_grad():
            self._queue_update(t)
        return queue_kl_loss(t, s, self.teacher_queue, self.temperature)


class _DenseHead(nn.Module):
    """Per-location projection of a ``(B, C, h, w)`` map (LightlyTrain v2's head: 1 linear layer, or an MLP with
    LayerNorm + GELU)."""

    def __init__(self, in_dim: int, out_dim: int, n_layers: int = 1, hidden_dim: int = 2048) -> None:
        super().__init__()
        if n_layers <= 1:
            self.mlp: nn.Module = _trunc_linear(in_dim, out_dim)
        else:
            layers: list[nn.Module] = []
            dims = [in_dim] + [hidden_dim] * (n_layers - 1)
            for a, b in zip(dims[:-1], dims[1:]):
                layers += [_trunc_linear(a, b), nn.LayerNorm(b), nn.GELU()]
            self.mlp = nn.Sequential(*layers, _trunc_linear(hidden_dim, out_dim))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _to_tokens(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, C, h, w)`` resized (bilinear) to ``size`` -> ``(B, H * W, C)``."""
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2)


class DistillationV2(_Distillation):
    """Dense distillation: MSE between the teacher's last token maps and the projected student map.

    Args:
        teacher: anything :func:`sslhub.load_pretrained` accepts (ViT teachers give ``n_teacher_blocks`` maps).
        n_teacher_blocks: teacher blocks whose (normed) token maps are concatenated.
        n_projection_layers, projection_hidden_dim: the student's per-location projection.
    """

    def __init__(self, backbone: nn.Module, num_features: int, teacher: str = DEFAULT_TEACHER,
                 n_teacher_blocks: int = 2, n_projection_layers: int = 1, projection_hidden_dim: int = 2048) -> None:  # fmt: skip
        super().__init__(backbone, num_features, teacher, blocks=n_teacher_blocks)
        self.projection_head = _DenseHead(self.student_dim, self.teacher_map_dim, n_projection_layers,
                                          projection_hidden_dim)  # fmt: skip

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        x = _mixup(views[0])
        t_map, _ = self.teacher(x, self.blocks)
        s_map, _ = dense_and_pooled(self.backbone, x)
        grid = tuple(t_map.shape[-2:])
        return F.mse_loss(_to_tokens(self.projection_head(s_map), grid), _to_tokens(t_map, grid))


class DistillationV3(_Distillation):
    """Global queue loss plus per-image token-similarity loss (see the module docstring).

    Args:
        teacher: anything :func:`sslhub.load_pretrained` accepts; default DINOv3 ViT-B/16 (LightlyTrain's),
            whose download Meta gates behind its licence: a file downloaded after accepting it loads by path.
        queue_size: teacher features kept as pseudo-classes.
        temperature_global, temperature_local: softmax temperatures of the two terms.
        loss_local_weight: weight of the token-similarity term.
    """

    def __init__(self, backbone: nn.Module, num_features: int, teacher: str = DEFAULT_TEACHER_V3,
                 queue_size: int = 8192, temperature_global: float = 0.07, temperature_local: float = 0.07,
                 loss_local_weight: float = 1.0) -> None:  # fmt: skip
        super().__init__(backbone, num_features, teacher, blocks=1)
        self.projection_head_global = _trunc_linear(num_features, self.teacher_dim)
        self.projection_head_local = _trunc_linear(self.student_dim, self.teacher_map_dim)
        self.temperature_global = temperature_global
        self.temperature_local = temperature_local
        self.loss_local_weight = loss_local_weight
        self.register_buffer("teacher_queue", torch.zeros(queue_size, self.teacher_dim))

    def losses(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(global, local) losses of an already mixed batch."""
        t_map, t = self.teacher(x)
        t = F.normalize(t, dim=-1)
        t_tok = F.normalize(_to_tokens(t_map, tuple(t_map.shape[-2:])), dim=-1)
        s_map, s = dense_and_pooled(self.backbone, x)
        s = F.normalize(self.projection_head_global(s.flatten(1)), dim=-1)
        s_loc = self.projection_head_local(s_map.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        s_tok = F.normalize(_to_tokens(s_loc, tuple(t_map.shape[-2:])), dim=-1)
        with torch.no_grad():
            self._queue_update(t)
        return (queue_kl_loss(t, s, self.teacher_queue, self.temperature_global),
                similarity_kl_loss(t_tok, s_tok, self.temperature_local))  # fmt: skip

    def forward(self, views: list[Tensor], progress: tuple[int, int, int]) -> Tensor:
        glob, loc = self.losses(_mixup(views[0]))
        return glob + self.loss_local_weight * loc


METHODS.update({"distillationv1": DistillationV1, "distillationv2": DistillationV2, "distillationv3": DistillationV3})
