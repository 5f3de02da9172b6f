"""``RUN_DIR/curves.png``: the per-epoch metrics of a training run, as a figure people can read.

Drawn with matplotlib (a dependency of sslhub: pictures are part of a run's result): 1600x1000 px, six panels
(loss, learning rate, throughput, kNN top-1 with the random-init reference when the run measured one, the collapse
monitor, and a summary), labelled axes and a title naming the recipe and the run folder.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sslhub.checkpoints.io import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["FIGURE_PANELS", "write_curves"]

# (metrics.jsonl key, panel title, y label); the figure's 2 x 3 grid in reading order, then the summary panel
FIGURE_PANELS = (
    ("loss", "training loss", "loss (epoch mean)"),
    ("lr", "learning rate", "lr (end of epoch)"),
    ("images_per_s", "throughput", "images / s"),
    ("knn_top1", "kNN top-1 on the val folder", "top-1 (%)"),
    ("embedding_std_ratio", "collapse monitor", "std of l2-normalised\nembeddings x sqrt(D)"),
)
SIZE_PX, DPI = (1600, 1000), 100


def _rows(metrics: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]


def _title(metrics: Path) -> str:
    run = metrics.parent
    recipe = None
    cfg = run / "config.yaml"
    if cfg.is_file():
        import yaml

        try:
            recipe = ((yaml.safe_load(cfg.read_text()) or {}).get("recipe") or {}).get("name")
        except yaml.YAMLError:
            recipe = None
    where = run.resolve()
    return f"{recipe or 'training run'}  ({where.parent.name}/{where.name}/)"


def _figure(rows: list[dict[str, Any]], title: str) -> Any:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI)
    fig.suptitle(title, fontsize=17, fontweight="bold")
    axes = fig.subplots(2, 3).flatten()
    fig.subplots_adjust(left=0.07, right=0.98, top=0.89, bottom=0.08, wspace=0.32, hspace=0.42)
    last_epoch = max((int(r["epoch"]) for r in rows), default=1)
    for ax, (key, name, ylabel) in zip(axes, FIGURE_PANELS):
        pts = [(int(r["epoch"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
        ax.set_title(name, fontsize=14)
        ax.set_xlabel("epoch", fontsize=12)
        ax.set_ylabel(ylabel, fontsize=12)
        ax.tick_params(labelsize=11)
        ax.grid(True, alpha=0.3)
        ax.set_xlim(0.5, last_epoch + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.margins(y=0.12)
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color="tab:blue", marker="o" if len(pts) < 40 else None, markersize=4, linewidth=2,
                    label="trained" if key == "knn_top1" else None)  # fmt: skip
        else:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", fontsize=13,
                    color="gray")  # fmt: skip
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        if key == "images_per_s" and pts:
            ax.set_ylim(bottom=0, top=max(ys) * 1.15)  # from 0: run-to-run noise is not a trend
        if key == "knn_top1":
            init = next((float(r["knn_top1_random_init"]) for r in rows
                         if isinstance(r.get("knn_top1_random_init"), (int, float))), None)  # fmt: skip
            if init is not None:
                ax.axhline(init, color="tab:red", linestyle="--", linewidth=2, label=f"random init ({init:.1f}%)")
            if pts or init is not None:
                ax.legend(fontsize=11, loc="best")
    _summary(axes[5], rows)
    return fig


def _summary(ax: Any, rows: list[dict[str, Any]]) -> None:
    ax.axis("off")
    ax.set_title("summary", fontsize=14)
    lines = []
    if rows:
        lines.append(f"epochs        {rows[-1]['epoch']}")
        if isinstance(rows[0].get("loss"), (int, float)) and isinstance(rows[-1].get("loss"), (int, float)):
            lines.append(f"loss          {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")
        knn = [r["knn_top1"] for r in rows if isinstance(r.get("knn_top1"), (int, float))]
        if knn:
            lines.append(f"kNN top-1     last {knn[-1]:.1f}%, best {max(knn):.1f}%")
        init = next((r["knn_top1_random_init"] for r in rows if "knn_top1_random_init" in r), None)
        if init is not None:
            lines.append(f"random init   {init:.1f}%")
        t = sum(float(r.get("time_s", 0.0)) for r in rows)
        if t:
            lines.append(f"train time    {t / 60:.1f} min")
    ax.text(0.0, 0.95, "\n".join(lines) or "no rows", transform=ax.transAxes, va="top", ha="left", fontsize=12,
            family="monospace")  # fmt: skip


def write_curves(metrics: str | os.PathLike, out: str | os.PathLike, title: str | None = None) -> Path:
    """Draw the per-epoch metrics of ``metrics.jsonl`` into a PNG (written atomically).

    Args:
        metrics: a run's ``metrics.jsonl``; its ``config.yaml`` (same folder) names the recipe in the title.
        out: the PNG file.
        title: the figure title (default: recipe name and run folder).
    """
    metrics, out = Path(metrics), Path(out)
    rows = _rows(metrics)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _figure(rows, title or _title(metrics))
    FigureCanvasAgg(fig)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out
