"""Training curves and augmentation previews are real pictures of the data they are given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sslhub.plots import preview, write_curves

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini"


def _metrics(run: Path, epochs: int = 12, knn: bool = True) -> Path:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "step": 10 * e, "loss": 5 - 0.2 * e, "lr": 0.1 * min(1, e / 3), "images_per_s": 100 + e,
               "time_s": 2.0}  # fmt: skip
        if knn and e % 3 == 0:
            row.update(knn_top1=10 + e, embedding_std=0.05, embedding_std_ratio=0.2 + 0.01 * e)
        rows.append(row)
    if knn:
        rows[0]["knn_top1_random_init"] = 15.0
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text("recipe: {name: simclr-resnet-18-mini}\n")
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return run / "metrics.jsonl"


def _cells(img: np.ndarray) -> list[np.ndarray]:
    """The 2 x 3 panels of the figure, below the title band (equal cells of the 1600x1000 canvas)."""
    h, w = img.shape[:2]
    top = int(0.08 * h)
    ch, cw = (h - top) // 2, w // 3
    return [img[top + r * ch: top + (r + 1) * ch, c * cw:(c + 1) * cw] for r in range(2) for c in range(3)]


def test_curves_figure_has_every_panel_with_data(tmp_path):
    img = np.asarray(Image.open(write_curves(_metrics(tmp_path / "run"), tmp_path / "curves.png")).convert("RGB"))
    assert img.shape == (1000, 1600, 3)
    blue = (img[..., 2] > 150) & (img[..., 0] < 80) & (img[..., 1] > 90) & (img[..., 1] < 150)  # tab:blue lines
    red = (img[..., 0] > 180) & (img[..., 1] < 60) & (img[..., 2] < 60)  # tab:red random-init reference
    cells, lines, reds = _cells(img), _cells(blue), _cells(red)
    for i in range(5):  # loss, lr, img/s, kNN, std: each has axes, labels and a plotted line
        assert (cells[i] < 128).all(axis=2).sum() > 2000, f"panel {i} has no axes/labels"
        assert lines[i].sum() > 100, f"panel {i} has no plotted line"
    assert reds[3].sum() > 200 and sum(reds[i].sum() for i in (0, 1, 2, 4)) == 0  # random init: kNN panel only
    assert (cells[5] < 128).all(axis=2).sum() > 500  # summary text
    assert (img[:60] < 128).all(axis=2).sum() > 300  # a title


def test_curves_without_monitor_rows_say_not_measured(tmp_path):
    out = write_curves(_metrics(tmp_path / "run", knn=False), tmp_path / "curves.png")
    img = np.asarray(Image.open(out).convert("RGB"))
    gray_text = (np.abs(img[..., 0].astype(int) - 128) < 10) & (np.abs(img[..., 2].astype(int) - 128) < 10)
    assert gray_text[500:].sum() > 50  # "not measured" in the kNN / std panels


def test_preview_shows_labelled_originals_and_views(tmp_path):
    out = preview("simclr-resnet-18", DATA / "train", tmp_path / "grid.png", n=3)
    img = np.asarray(Image.open(out).convert("RGB")).astype(float)
    tile, header = 96 + 2, 40
    assert img.shape[1] == 3 * tile + 2  # 3 columns: original + 2 views
    assert img.shape[0] > 3 * tile + 2 + header  # plus a header and a caption
    first, view = img[header + 2:header + 96, 2:96], img[header + 2:header + 96, tile + 2:tile + 96]
    assert first.std() > 5 and view.std() > 5 and np.abs(first - view).mean() > 1  # augmented, not a copy
    for c in range(3):  # a dark label above each column
        assert (img[:header, c * tile:(c + 1) * tile] < 100).all(axis=2).sum() > 20
    assert (img[header + 3 * tile + 2:] < 120).all(axis=2).sum() > 100  # the caption


def test_plots_do_not_import_the_trainer():
    """Layout: the trainer imports plots, so plots must not import the trainer (no import circle)."""
    import subprocess
    import sys

    code = "import sys, sslhub.plots; print(sorted(m for m in sys.modules if m.startswith('sslhub.training')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
