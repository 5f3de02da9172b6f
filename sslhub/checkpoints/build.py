"""Stage 5 of loading, *build*: a :class:`~sslhub.checkpoints.remap.BackboneState` -> an eval-mode module.

The module is assembled around the tensors without a random init (a cached skeleton:
:mod:`sslhub.checkpoints.skeleton`; else built on the meta device and given the tensors with ``assign=True``),
strictly: a missing, unexpected or misshapen key is an error naming them. :func:`feature_extractor` then gives
the module the output the caller asked for and its ``pretrained_cfg``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from sslhub.backbones import create_backbone
from sslhub.backbones.pretrained_cfg import complete_pretrained_cfg
from sslhub.checkpoints.io import CheckpointError
from sslhub.checkpoints.remap import BackboneState
from sslhub.checkpoints.skeleton import assemble

logger = logging.getLogger(__name__)

__all__ = ["FEATURES", "TokenFeatures", "build_from_state", "feature_extractor"]

FEATURES = ("backbone", "embedding", "tokens")


class TokenFeatures(nn.Module):
    """A timm ViT that returns every token (``forward_features``) instead of the pooled feature."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.num_features = vit.num_features
        self.pretrained_cfg = dict(vit.pretrained_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)


def build_from_state(state: BackboneState, *, keep_num_ftrs: bool = False, where: str = "checkpoint") -> nn.Module:
    """Build the eval-mode module without random init and give it the tensors (no copies), strictly."""
    kwargs = state.spec.kwargs(keep_num_ftrs=keep_num_ftrs)
    model = assemble(kwargs, state.state_dict)  # cached skeleton: the fast path
    if model is not None:
        return model
    model = create_backbone(meta=True, **kwargs)
    try:
        model.load_state_dict(state.state_dict, strict=True, assign=True)
    except RuntimeError:
        have = set(model.state_dict())
        missing = sorted(have - set(state.state_dict))
        unexpected = sorted(set(state.state_dict) - have)
        shapes = [k for k in have & set(state.state_dict) if model.state_dict()[k].shape != state.state_dict[k].shape]
        detail = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", sorted(shapes)))
            if keys
        )
        groups = sorted({k.split(".")[0] for k in unexpected})
        hint = (
            "(for the Lightly Worker: lightly.model.name and lightly.model.width in output_dir/config/config.yaml)"
            if str(state.metadata.get("layout", "")).startswith("lightly-worker")
            else f"(unexpected key groups: {groups})" if groups else ""
        )
        raise CheckpointError(
            f"{where}: the weights do not fit a {state.spec.describe()} ({detail}). Pass arch=/width= matching "
            f"the run that made the file {hint}".rstrip()
        ) from None
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:  # buffers that are not in state dicts (none for supported families); initialise them for real
        model = create_backbone(**kwargs)
        model.load_state_dict(state.state_dict, strict=True)
    return model.eval()


def feature_extractor(
    model: nn.Module, state: BackboneState, features: str, device: str | torch.device | None = None
) -> nn.Module:
    """The built backbone as the feature extractor ``features`` names, with its complete ``pretrained_cfg``."""
    if features == "tokens":
        if not hasattr(model, "forward_features") or state.spec.family != "timm":
            raise CheckpointError(
                f"{state.metadata['source']}: features='tokens' needs a timm ViT; this file holds a "
                f"{state.spec.describe()}. Use features='backbone'."
            )
        model = TokenFeatures(model)
    cfg = dict(model.pretrained_cfg)
    if state.spec.family != "timm":  # sslhub's size-based default, to be re-derived at the size the file says
        cfg.pop("crop_pct", None)
    cfg.update({k: v for k, v in state.metadata.items() if v is not None and k not in ("components",)})
    cfg["features"] = features
    model.pretrained_cfg = complete_pretrained_cfg(cfg, getattr(model, "num_features", None))
    if model.training:  # backbones come built in eval mode; the TokenFeatures wrapper does not
        model.eval()
    if device is not None:
        model.to(device)
    logger.debug("loaded %s from %s (%s)", state.spec.describe(), state.metadata["source"], state.metadata["layout"])
    return model
