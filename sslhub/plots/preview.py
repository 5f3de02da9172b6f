"""``sslhub preview``: originals beside the augmented views a recipe's transform produces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch

from sslhub.checkpoints.io import atomic_path

__all__ = ["preview"]


def preview(recipe: str, data: str | os.PathLike, out: str | os.PathLike, *, n: int = 8,
            overrides: Iterable[str] = (), seed: int = 0) -> Path:  # fmt: skip
    """Write a grid: one row per image, the original first, then every view of the recipe's transform."""
    from torchvision.transforms.v2 import functional as F
    from torchvision.utils import make_grid

    from sslhub.data import ImageFolderDataset
    from sslhub.recipes import get_recipe
    from sslhub.training.trainer import _build_transform

    r = get_recipe(recipe, overrides)
    size = int(r["input_size"])
    tile = max(size, 96)  # small training crops are hard to see
    ds = ImageFolderDataset(data, decode_size=int(r.get("load_size", size)))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[: min(n, len(ds))].tolist()
    images = torch.stack([ds[i][0] for i in idx])
    torch.manual_seed(seed)
    views = _build_transform(r)(images)
    spec = r["transform"].get("args", {})
    mean = torch.tensor(spec.get("normalize", {}).get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
    std = torch.tensor(spec.get("normalize", {}).get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
    tiles = [F.resize(images.float() / 255, [tile, tile], antialias=True)]
    for v in views:
        v = v * std + mean if v.is_floating_point() else v.float() / 255
        tiles.append(F.resize(v.clamp(0, 1), [tile, tile], antialias=True))
    rows = torch.stack(tiles, dim=1).flatten(0, 1)  # image-major: original, view 1, view 2, ...
    grid = make_grid(rows, nrow=len(tiles), padding=2, pad_value=1.0)
    out = Path(out)
    from PIL import Image

    with atomic_path(out) as tmp:
        Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(tmp, format="PNG")
    return out
