"""LightlyTrain (lightly-ai/lightly-train) ``out/checkpoints/last.ckpt``: a Lightning checkpoint of its ``Method``.

The weights are plain tensors under ``state_dict`` (the file's pickled ``lightly_train`` models are never run:
:mod:`sslhub.checkpoints.inert_pickle`). Keys are the Method's attributes: an ``EmbeddingModel`` whose
``wrapped_model`` holds the user's backbone, under ``_model.`` (DINOv2 ViTs, timm models) or, for torchvision
ResNets, ``_features.`` (an ``IntermediateLayerGetter`` over conv1..layer4; ``fc`` is not kept), plus heads.

Evaluation copy: what LightlyTrain's own export (``exported_models/exported_last.pt``) writes, i.e. the
``embedding_model`` the Method was built with. Its attribute differs by method: ``teacher_embedding_model`` for
the self-distillation methods (DINO, DINOv2: the student is a deepcopy trained by gradient, the teacher its EMA),
``student_embedding_model`` for ``distillation`` (whose teacher is a frozen DINOv2 outside any ``wrapped_model``),
``embedding_model`` for the single-copy methods. DINOv2 ViTs are remapped as DINOv2's own files
(:mod:`sslhub.checkpoints.readers.dinov2`); the features are what the exported model gives (the final-norm cls
token for DINOv2, the pooled layer4 for ResNets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sslhub.checkpoints.readers.base import Match, StateDict, is_resnet, is_timm_vit
from sslhub.checkpoints.readers.dinov2 import DinoV2

# (copy prefix, variant) in the order LightlyTrain's methods hold the exported model
_COPIES = (
    ("teacher_embedding_model.wrapped_model.", "self-distillation method (DINO/DINOv2): the teacher, as exported"),
    ("embedding_model.wrapped_model.", "single-copy method: the embedding model, as exported"),
    ("student_embedding_model.wrapped_model.", "distillation: the student, as exported"),
)


class LightlyTrain(DinoV2):
    name = "lightly-train"
    method = None  # type: ignore[assignment]  # the file does not say which method trained it
    upstream = "lightly-ai/lightly-train"
    evaluation_copy = "the model LightlyTrain's export writes (teacher for DINO/DINOv2, student for distillation)"

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        for copy, variant in _COPIES:
            for inner in ("_model.", "_features."):
                p = copy + inner
                if is_resnet(sd, p) or is_timm_vit(sd, p) or (p + "patch_embed.proj.weight" in sd and (
                        p + "blocks.0.0.attn.qkv.weight" in sd)):  # fmt: skip
                    return Match(p, variant, why=f"keys under {p!r}")
        return None

    def facts(self, spec: Any, sub: StateDict) -> list[str]:
        proj = sub.get("patch_embed.proj.weight")
        if proj is None or proj.shape[2] != 14 or "blocks.0.ls1.gamma" not in sub:
            return []  # not a DINOv2 ViT: the generic rules' reading stands
        return super().facts(spec, sub)
