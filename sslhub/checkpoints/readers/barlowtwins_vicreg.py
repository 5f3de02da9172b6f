"""facebookresearch/barlowtwins and facebookresearch/vicreg training checkpoints.

Both save ``{epoch, model, optimizer}`` with the DDP model ``module.backbone.`` (a torchvision-named ResNet-50
without ``fc``) and ``module.projector.``; Barlow Twins adds the affine-free ``module.bn.`` (only running stats),
which is what tells the two apart. Their released ``resnet50.pth`` files are plain torchvision state dicts
without ``fc`` and load as ``state-dict``. VICReg's optimizer state pickles a function
(``__main__.exclude_bias_and_norm``), so its training file is refused by the safe loader; the ``model`` entry,
re-saved (see the refusal message), is read by this reader."""

from __future__ import annotations

from typing import Any, Mapping

from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_resnet

_P = "module.backbone."


class BarlowTwins(Reader):
    name = "barlowtwins"
    method = "barlowtwins"
    upstream = "facebookresearch/barlowtwins"
    evaluation_copy = "backbone (module.backbone); projector and bn dropped"
    signature = ("module.projector.0.weight", "module.bn.running_mean")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        if is_resnet(sd, _P) and "module.projector.0.weight" in sd and "module.bn.running_mean" in sd:
            return Match(_P, "training checkpoint")
        return None


class VICReg(Reader):
    name = "vicreg"
    method = "vicreg"
    upstream = "facebookresearch/vicreg"
    evaluation_copy = "backbone (module.backbone); projector dropped"
    signature = ("module.projector.0.weight", "module.backbone.conv1.weight")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        if is_resnet(sd, _P) and "module.projector.0.weight" in sd and "module.bn.running_mean" not in sd:
            return Match(_P, "training checkpoint")
        return None
