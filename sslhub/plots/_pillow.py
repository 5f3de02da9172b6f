"""The Pillow fallback of ``curves.png`` (no matplotlib): loss, kNN and std panels, 1080x240 px."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw

__all__ = ["draw_curves"]

PANELS = (("loss", "loss"), ("knn_top1", "kNN top-1 (%)"), ("embedding_std_ratio", "embedding std x sqrt(D)"))
W, H, PAD = 360, 240, 40


def _panel(values: list[tuple[int, float]], title: str) -> Image.Image:
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((PAD, 8), title, fill="black")
    d.rectangle((PAD, PAD, W - 10, H - PAD), outline="gray")
    if not values:
        d.text((PAD + 10, H // 2), "no data", fill="gray")
        return img
    xs, ys = [v[0] for v in values], [v[1] for v in values]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1e-6
    sx = lambda x: PAD + (x - x0) / (x1 - x0) * (W - 10 - PAD)  # noqa: E731
    sy = lambda y: H - PAD - (y - y0) / (y1 - y0) * (H - 2 * PAD)  # noqa: E731
    pts = [(sx(x), sy(y)) for x, y in values]
    if len(pts) > 1:
        d.line(pts, fill=(31, 119, 180), width=2)
    for p in pts:
        d.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=(31, 119, 180))
    d.text((2, PAD - 6), f"{y1:.3g}", fill="black")
    d.text((2, H - PAD - 6), f"{y0:.3g}", fill="black")
    d.text((PAD, H - PAD + 4), f"epoch {x0}", fill="black")
    d.text((W - 70, H - PAD + 4), f"epoch {x1}", fill="black")
    return img


def draw_curves(rows: list[dict[str, Any]]) -> Image.Image:
    """One panel per metric of :data:`PANELS`, side by side."""
    canvas = Image.new("RGB", (W * len(PANELS), H), "white")
    for i, (key, title) in enumerate(PANELS):
        vals = [(int(r["epoch"]), float(r[key])) for r in rows if key in r]
        canvas.paste(_panel(vals, title), (i * W, 0))
    return canvas
