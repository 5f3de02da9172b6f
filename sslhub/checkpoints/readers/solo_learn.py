"""solo-learn (vturrisi/solo-learn) Lightning checkpoints.

``BaseMethod`` holds ``backbone`` (torchvision ``resnet18``/``resnet50`` with ``fc = Identity``, or a timm ViT),
the online linear ``classifier`` and the method's ``projector``/``predictor``; momentum methods add
``momentum_backbone``/``momentum_projector`` (and ``momentum_classifier``). The file is Lightning's
``{epoch, global_step, pytorch-lightning_version, state_dict, loops, callbacks, optimizer_states, lr_schedulers}``.
Evaluation copy: ``backbone.``.

CIFAR runs replace the ResNet stem with ``nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)`` and
``maxpool = nn.Identity()`` (``solo/methods/base.py``). The tensors show the 3x3 kernel but not the padding, and
padding 1 would give other features without any error, so the stem is a fact of this layout
(``stem="solo-cifar"``, built by :func:`sslhub.backbones.create_backbone`).
"""

from __future__ import annotations

from typing import Any, Mapping

from sslhub.backbones import SOLO_CIFAR_STEM
from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_resnet, is_timm_vit


class SoloLearn(Reader):
    name = "solo-learn"
    upstream = "vturrisi/solo-learn"
    evaluation_copy = "backbone; classifier, projector, predictor and momentum copies dropped"
    signature = ("backbone.", "classifier.weight")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        if "classifier.weight" not in sd or "pytorch-lightning_version" not in extras:
            return None
        if is_resnet(sd, "backbone.") or is_timm_vit(sd, "backbone."):
            return Match("backbone.")
        return None

    def facts(self, spec: Any, sub: StateDict) -> list[str]:
        w = sub.get("conv1.weight")
        if spec.family != "torchvision_resnet" or w is None or tuple(w.shape[2:]) != (3, 3):
            return []
        spec.timm_kwargs["stem"] = SOLO_CIFAR_STEM
        return ["CIFAR stem: conv1 3x3 stride 1 padding 2, no max-pool (solo-learn base.py; not in the tensors)"]
