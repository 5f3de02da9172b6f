"""Training curves and augmentation previews are real pictures of the data they are given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sslhub.plots import preview, write_curves

DATA = Path(__file__).resolve().parents[1] / "training/data/clothing10_mini"


def test_curves_draw_each_metric(tmp_path):
    rows = [{"epoch": e, "loss": 5 - e, "knn_top1": 10 * e, "embedding_std_ratio": 0.1 * e} for e in range(1, 5)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    img = np.asarray(Image.open(write_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")).convert("RGB"))
    assert img.shape == (240, 3 * 360, 3)
    blue = (img[..., 2] > 150) & (img[..., 0] < 80)
    for i in range(3):  # every panel has a plotted line
        assert blue[:, i * 360:(i + 1) * 360].sum() > 50
    # loss falls: its line starts high (left) and ends low (right)
    ys, xs = np.nonzero(blue[:, :360])
    assert ys[xs.argmin()] < ys[xs.argmax()]


def test_preview_shows_originals_and_views(tmp_path):
    out = preview("simclr-resnet-18", DATA / "train", tmp_path / "grid.png", n=3)
    img = np.asarray(Image.open(out).convert("RGB")).astype(float)
    tile = 96 + 2
    assert img.shape[0] == 3 * tile + 2 and img.shape[1] == 3 * tile + 2  # 3 images x (original + 2 views)
    first, view = img[2:96, 2:96], img[2:96, tile + 2:tile + 96]
    assert first.std() > 5 and view.std() > 5 and np.abs(first - view).mean() > 1  # augmented, not a copy
