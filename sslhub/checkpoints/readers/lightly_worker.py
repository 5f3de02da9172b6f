"""The Lightly Worker's ``checkpoint.ckpt`` (``lightly.cli`` and the Worker: ``{"state_dict": ...}``).

The model is a ``SelfSupervisedEmbedding`` whose ResNetGenerator backbone sits under ``model.backbone.``
(``0``..``6`` the ResNet, ``7`` the ``num_ftrs`` 1x1 conv that ``lightly-embed`` keeps), next to
``model.projection_head.``; files from lightly < 1.1 name the backbone ``model.features.`` (the legacy layout).
The method is SimCLR, as the Worker trains it. Recognised when the evaluation copy that
:func:`~sslhub.checkpoints.anchors.choose_prefix` picks is one of those prefixes.
"""

from __future__ import annotations

from sslhub.checkpoints.anchors import choose_prefix, find_backbones, read_copy
from sslhub.checkpoints.readers.base import Reader
from sslhub.checkpoints.spec import Checkpoint, Detected

_PREFIXES = {"model.backbone.": "lightly-worker", "model.features.": "lightly-worker-legacy"}


class LightlyWorker(Reader):
    name = "lightly-worker"
    upstream = ""  # Lightly's own layouts: sslhub's home format, not an upstream's
    evaluation_copy = "model.backbone (num_ftrs conv model.backbone.7 kept only for features='embedding')"

    def recognise(self, ckpt: Checkpoint, where: str, *, prefix: str | None, arch: str | None) -> Detected | None:
        found = find_backbones(ckpt.tensors)
        chosen = choose_prefix(ckpt.tensors, where, found, prefix=prefix, arch=arch)
        layout = next((v for k, v in _PREFIXES.items() if chosen is not None and chosen.startswith(k)), None)
        if chosen is None or layout is None:
            return None
        det = read_copy(ckpt.tensors, where, chosen, found, arch, layout)
        det.reader = self.name
        return det
