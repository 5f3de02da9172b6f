"""facebookresearch/vissl model-zoo and training files (``model_final_checkpoint_phase<N>.torch``).

The tensors sit two dicts deep: ``classy_state_dict.base_model.model = {trunk: {...}, heads: {...}}`` next to
training state (``phase_idx``, ``iteration``, ``loss``, optimizer). A ResNe(X)t trunk names its layers
``_feature_blocks.<torchvision name>`` (``conv1``, ``bn1``, ``layer1``...). The reader flattens the two dicts to
``trunk.*``/``heads.*``; evaluation copy: ``trunk._feature_blocks.``; the heads (projection, prototypes) are dropped.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from sslhub.checkpoints.readers.base import Match, Reader, StateDict, is_resnet

_P = "trunk._feature_blocks."


class VISSL(Reader):
    name = "vissl"
    upstream = "facebookresearch/vissl"
    evaluation_copy = "trunk (_feature_blocks); heads dropped"
    signature = ("trunk._feature_blocks.conv1.weight",)

    def unwrap(self, obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        csd = obj.get("classy_state_dict")
        model = csd.get("base_model", {}).get("model") if isinstance(csd, Mapping) else None
        if not isinstance(model, Mapping) or not isinstance(model.get("trunk"), Mapping):
            return None
        sd = {f"{part}.{k}": v for part in ("trunk", "heads") for k, v in (model.get(part) or {}).items()
              if isinstance(v, torch.Tensor)}  # fmt: skip
        extras = {k: v for k, v in obj.items() if k != "classy_state_dict"}
        return sd, extras

    def match(self, sd: StateDict, extras: Mapping[str, Any]) -> Match | None:
        return Match(_P) if is_resnet(sd, _P) else None
