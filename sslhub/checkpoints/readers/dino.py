"""facebookresearch/dino training checkpoints (``checkpoint.pth`` / ``checkpoint<epoch>.pth``).

``main_dino.py`` saves ``{student, teacher, optimizer, epoch, args (argparse.Namespace), dino_loss[, fp16_scaler]}``.
Both copies are a ``MultiCropWrapper`` (``backbone.`` + ``head.``, the head's last layer weight-normed:
``head.last_layer.weight_g``/``weight_v``). The student is DDP-wrapped (``module.``); so is the teacher when the
backbone has BatchNorm (ResNet-50 with SyncBN), the ViT teacher is not. Evaluation copy: the teacher backbone
(``eval_linear.py --checkpoint_key teacher``), which the generic unwrap picks as the state dict. The backbone keys
are timm's ViT names (``vision_transformer.py`` matches timm's) or torchvision's ResNet names (``fc`` is Identity).

The released backbones (``dino_deitsmall16_pretrain.pth``, ``dino_vitbase8_pretrain.pth``,
``dino_resnet50_pretrain.pth``) are bare timm/torchvision state dicts, indistinguishable from any other, and load
as ``state-dict`` with the same result.
"""

from __future__ import annotations

from typing import Any, Mapping

from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_resnet, is_timm_vit


class Dino(Reader):
    name = "dino"
    method = "dino"
    upstream = "facebookresearch/dino"
    evaluation_copy = "teacher backbone; DINO head (with weight-normed last layer) dropped"
    signature = ("head.last_layer.weight_v", "module.head.last_layer.weight_v")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        for wrap in ("", "module."):
            if wrap + "head.last_layer.weight_v" not in sd:
                continue
            p = wrap + "backbone."
            if is_timm_vit(sd, p) or is_resnet(sd, p):
                return Match(p, "training checkpoint, teacher" if "student" in extras else "training checkpoint")
        return None
