"""facebookresearch/simsiam: ``{epoch, arch, state_dict, optimizer}``; ``module.encoder.`` is a torchvision ResNet
whose ``fc`` is the 3-layer projector, ``module.predictor.`` the predictor. Evaluation copy: the encoder without
``fc`` (``main_lincls.py``)."""

from __future__ import annotations

from typing import Any, Mapping

from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_resnet


class SimSiam(Reader):
    name = "simsiam"
    method = "simsiam"
    upstream = "facebookresearch/simsiam"
    evaluation_copy = "encoder (module.encoder), projector fc dropped"
    drop = ("fc.",)
    signature = ("module.encoder.conv1.weight", "module.predictor.0.weight")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        p = "module.encoder."
        if is_resnet(sd, p) and "module.predictor.0.weight" in sd:
            return Match(p)
        return None
