"""Plain state dicts: a torchvision ResNet/ViT, a timm ViT or a Lightly ResNetGenerator, bare or under a prefix.

The last reader: whatever no layout above claimed and whose tensors hold a backbone that
:func:`~sslhub.checkpoints.anchors.find_backbones` knows (or that ``arch=`` names). Also the reader of a
``prefix=`` that asks for another copy than a layout's evaluation one (a MoCo key encoder, a student).
"""

from __future__ import annotations

from sslhub.checkpoints.anchors import choose_prefix, find_backbones, read_copy
from sslhub.checkpoints.readers.base import Reader
from sslhub.checkpoints.spec import Checkpoint, Detected


class PlainStateDict(Reader):
    name = "state-dict"
    upstream = ""
    evaluation_copy = "the first of anchors.PREFERRED_PREFIXES that holds a backbone, else the only one"

    def recognise(self, ckpt: Checkpoint, where: str, *, prefix: str | None, arch: str | None) -> Detected | None:
        found = find_backbones(ckpt.tensors)
        chosen = choose_prefix(ckpt.tensors, where, found, prefix=prefix, arch=arch)
        if chosen is None:
            return None
        det = read_copy(ckpt.tensors, where, chosen, found, arch, self.name)
        det.reader = self.name
        return det
