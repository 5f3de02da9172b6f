"""A recipe's training transform, built from its ``transform`` block (shared by the trainer and the previews)."""

from __future__ import annotations

import inspect
from typing import Any

import torch

__all__ = ["RegionViews", "build_recipe_transform"]


class RegionViews:
    """DetCon's transform made to fit the loop: its ``(view, mask)`` pairs become a flat list of tensors
    ``[x0, mask0, x1, mask1]``, and a grid-segmenting ``DetConSTransform`` gets the placeholder mask that it fills
    with the grid before cropping (Lightly's callers pass one; without it no mask comes back)."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        if getattr(self.transform, "grid_size", None) is not None:
            from torchvision.tv_tensors import Mask

            out = self.transform(images, Mask(torch.zeros_like(images[..., :1, :, :], dtype=torch.long)))
        else:
            out = self.transform(images)
        return [t.as_subclass(torch.Tensor) for v in out for t in (v if isinstance(v, (tuple, list)) else (v,))]


def build_recipe_transform(recipe: dict[str, Any]) -> Any:
    """The training transform of a (validated) recipe: ``recipe["transform"]`` built at ``recipe["input_size"]``.

    It maps a ``uint8`` batch ``(N, 3, H, W)`` to the list of views the recipe's method takes; the trainer and
    :func:`sslhub.plots.preview` both use it, so a preview shows exactly what training sees.
    """
    import sslhub.transforms as T

    spec = recipe["transform"]
    args = dict(spec.get("args") or {})
    cls = getattr(T, spec["name"])
    size = recipe["input_size"]
    params = inspect.signature(cls).parameters
    if "input_size" in params and "input_size" not in args:
        args["input_size"] = size
    # Two-view transforms built from view objects (BYOL, TiCo): build each view at the recipe's size, with
    # per-view arguments under args.view_1 / args.view_2.
    for i in (1, 2):
        key = f"view_{i}_transform"
        view_cls = getattr(T, spec["name"].replace("Transform", f"View{i}Transform"), None)
        if key in params and key not in args and view_cls is not None:
            view_args = {"input_size": size, **(args.pop(f"view_{i}", None) or {})}
            args[key] = view_cls(**view_args)
    if spec["name"] == "DetConSTransform":
        return RegionViews(cls(**args))
    return cls(**args)
