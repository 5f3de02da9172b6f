"""Lightly's benchmark checkpoints (``lightly/benchmarks``: Lightning ``.ckpt`` files of a ``LightningModule``).

``{"state_dict": ..., "pytorch-lightning_version": ..., "epoch": ...}`` with the method's attributes as key
groups: ``backbone.`` (the evaluation copy in every benchmark), ``teacher_backbone.``/``student_backbone.``,
``momentum_backbone.``, heads and criteria. Recognised by the Lightning wrapper around a backbone that
:func:`~sslhub.checkpoints.anchors.choose_prefix` picks; the method is guessed from the key groups
(:func:`~sslhub.checkpoints.anchors.guess_method`). Evaluated as the benchmarks do: Resize(256) + CenterCrop(224).
"""

from __future__ import annotations

from sslhub.checkpoints.readers.state_dict import PlainStateDict
from sslhub.checkpoints.spec import Checkpoint, Detected

LIGHTNING_KEY = "pytorch-lightning_version"


class LightlyBenchmark(PlainStateDict):
    """A plain state dict's backbone choice, inside Lightning's wrapper."""

    name = "lightly-benchmark"
    upstream = ""  # Lightly's own layouts: sslhub's home format, not an upstream's
    evaluation_copy = "backbone. (then teacher_backbone. for iBOT/DINOv2-style files)"

    def recognise(self, ckpt: Checkpoint, where: str, *, prefix: str | None, arch: str | None) -> Detected | None:
        if LIGHTNING_KEY not in ckpt.extras:
            return None
        det = super().recognise(ckpt, where, prefix=prefix, arch=arch)
        if det is not None:
            det.why = f"{LIGHTNING_KEY!r} in the wrapper, {det.why}"
        return det
