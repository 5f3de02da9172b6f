"""``sslhub preview``: originals beside the augmented views a recipe's transform produces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import torch

from sslhub.checkpoints.io import atomic_path

__all__ = ["preview", "preview_image"]


def preview(recipe: str, data: str | os.PathLike, out: str | os.PathLike, *, n: int = 8,
            overrides: Iterable[str] = (), seed: int = 0) -> Path:  # fmt: skip
    """Write a grid: one row per image, the original first, then every view of the recipe's transform.

    Columns are labelled (``original``, ``view 1``, ...; ``global``/``local`` for multi-crop transforms) and a
    caption names the recipe, its transform and arguments.
    """
    from sslhub.recipes import get_recipe

    image = preview_image(get_recipe(recipe, overrides), data, n=n, seed=seed)
    out = Path(out)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG")
    return out


def preview_image(r: dict, data: str | os.PathLike, *, n: int = 8, seed: int = 0) -> Any:
    """The preview grid of a resolved recipe ``r`` as a PIL image (see :func:`preview`)."""
    from torchvision.transforms.v2 import functional as F
    from torchvision.utils import make_grid

    from sslhub.data import ImageFolderDataset
    from sslhub.transforms.recipe import build_recipe_transform

    size = int(r["input_size"])
    tile = max(size, 96)  # small training crops are hard to see
    ds = ImageFolderDataset(data, decode_size=int(r.get("load_size", size)))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[: min(n, len(ds))].tolist()
    images = torch.stack([ds[i][0] for i in idx])
    torch.manual_seed(seed)
    views = build_recipe_transform(r)(images)
    spec = r["transform"].get("args", {})
    mean = torch.tensor(spec.get("normalize", {}).get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
    std = torch.tensor(spec.get("normalize", {}).get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
    tiles = [F.resize(images.float() / 255, [tile, tile], antialias=True)]
    for v in views:
        v = v * std + mean if v.is_floating_point() else v.float() / 255
        tiles.append(F.resize(v.clamp(0, 1), [tile, tile], antialias=True))
    rows = torch.stack(tiles, dim=1).flatten(0, 1)  # image-major: original, view 1, view 2, ...
    grid = make_grid(rows, nrow=len(tiles), padding=PAD, pad_value=1.0)
    from PIL import Image

    body = Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    labels = ["original"] + _view_labels([tuple(v.shape[-2:]) for v in views])
    caption = _caption(r)
    return _labelled(body, labels, tile, caption)


PAD = 2
HEADER, FOOTER = 40, 44  # px above the grid (column labels, up to 2 lines) and below it (caption)


def _view_labels(sizes: list[tuple[int, int]]) -> list[str]:
    """``view 1, view 2`` for same-size views; ``global 1, ..., local 1, ...`` for multi-crop transforms."""
    if len(set(sizes)) <= 1:
        return [f"view {i + 1}" for i in range(len(sizes))]
    big = max(s[0] * s[1] for s in sizes)
    out, n_global, n_local = [], 0, 0
    for h, w in sizes:
        if h * w == big:
            n_global += 1
            out.append(f"global {n_global}\n{h} px")
        else:
            n_local += 1
            out.append(f"local {n_local}\n{h} px")
    return out


def _caption(r: dict) -> str:
    spec = r.get("transform") or {}
    args = ", ".join(f"{k}={v}" for k, v in (spec.get("args") or {}).items() if not isinstance(v, dict))
    text = f"{r.get('name')}: {spec.get('name')}({args})" if args else f"{r.get('name')}: {spec.get('name')}"
    return text + f" at {r['input_size']} px (tiles upscaled for viewing)"


def _labelled(body: Any, labels: list[str], tile: int, caption: str) -> Any:
    """``body`` with a header row of column labels and a caption line below."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    w, h = body.size
    chars = max(20, w // 7)  # ~7 px per character at 12 px
    lines = textwrap.wrap(caption, chars)[:6]
    footer = max(FOOTER, 8 + 16 * len(lines))
    img = Image.new("RGB", (w, HEADER + h + footer), "white")
    img.paste(body, (0, HEADER))
    d = ImageDraw.Draw(img)
    for i, text in enumerate(labels):
        x = PAD + i * (tile + PAD) + tile // 2
        first, _, second = text.partition("\n")
        d.text((x, 12 if second else HEADER // 2), first, fill="black", font=font, anchor="mm")
        if second:
            d.text((x, 29), second, fill=(90, 90, 90), font=small, anchor="mm")
    for i, line in enumerate(lines):
        d.text((PAD + 2, HEADER + h + 6 + 16 * i), line, fill=(60, 60, 60), font=small)
    return img
