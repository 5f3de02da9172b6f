"""facebookresearch/swav (also its DeepCluster-v2 and SeLa-v2 models).

The released ``swav_800ep_pretrain.pth.tar`` is the bare DDP state dict: ``module.`` + the ``src/resnet50.py``
ResNet (torchvision names; its extra ``ConstantPad2d(1)`` before a padding-2 stem conv equals torchvision's
padding 3), ``module.projection_head.`` and ``module.prototypes.`` (or ``module.prototypes.prototypes<i>.`` with
several heads). The training checkpoint wraps the same dict as ``{epoch, state_dict, optimizer[, amp]}``.
Evaluation copy: the trunk (``eval_linear.py`` drops the head and prototypes)."""

from __future__ import annotations

from typing import Any, Mapping

from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_resnet


class SwAV(Reader):
    name = "swav"
    method = "swav"
    upstream = "facebookresearch/swav"
    evaluation_copy = "trunk (module.), projection_head and prototypes dropped"
    drop = ("projection_head.", "prototypes.")
    signature = ("module.conv1.weight", "module.prototypes.")

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        if not is_resnet(sd, "module."):
            return None
        if "module.prototypes.weight" in sd or any(k.startswith("module.prototypes.") for k in sd):
            variant = "training checkpoint" if "optimizer" in extras else "released"
            return Match("module.", variant)
        return None
