"""Benchmark: augmentation throughput, sslhub's batched transforms vs Lightly's per-image PIL transforms.

The same images (decoded once to uint8 at --size) go through each method's transform with the arguments of its
tiny/CIFAR recipe: sslhub's on the whole uint8 batch (what the trainer does, on the device or in a DataLoader
worker), Lightly's on one PIL image at a time (what its DataLoader workers do). Both run in this process with
--threads torch threads (default 1: one DataLoader worker's share of a machine). Prints ms per batch, img/s and
the ratio, median of --repeats runs.

Usage: python scripts/bench_augment.py [--data DIR] [--size 32] [--batch 256] [--repeats 5] [--device cpu]
Needs the `lightly` test extra for the reference transforms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (transform class name in both libraries, arguments at CIFAR-10 size)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "simclr": ("SimCLRTransform", {"input_size": 32}),
    "moco_v2": ("MoCoV2Transform", {"input_size": 32}),
    "byol (2 views)": ("BYOLTransform", {}),
    "dino (2x32 + 4x16 px)": ("DINOTransform", {"global_crop_size": 32, "local_crop_size": 16, "n_local_views": 4}),
    "mae": ("MAETransform", {"input_size": 32, "min_scale": 0.35}),
}


def _byol_views(module: Any, size: int) -> dict[str, Any]:
    """BYOL's two views at ``size`` (its default views are 224 px)."""
    return {
        "view_1_transform": module.BYOLView1Transform(input_size=size),
        "view_2_transform": module.BYOLView2Transform(input_size=size),
    }


def median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "training/data/clothing10_mini/train", help="image folder")
    ap.add_argument("--size", type=int, default=32, help="decode size (the recipes' load size)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="where sslhub's batch is augmented (cpu or cuda)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import lightly.transforms as LT
    from PIL import Image

    import sslhub.transforms as T
    from sslhub.data import ImageFolderDataset

    ds = ImageFolderDataset(args.data, decode_size=args.size)
    n = min(args.batch, len(ds))
    batch = torch.stack([ds[i][0] for i in range(n)])
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in batch]
    device = torch.device(args.device)
    x = batch.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    print(f"{n} images of {args.size} px from {args.data}, {args.threads} torch thread(s), sslhub on {device}")
    print("| transform | sslhub ms/batch | Lightly ms/batch | sslhub img/s | Lightly img/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (cls, kwargs) in CASES.items():
        ours_kw = {**kwargs, **(_byol_views(T, args.size) if cls == "BYOLTransform" else {})}
        theirs_kw = {**kwargs, **(_byol_views(LT, args.size) if cls == "BYOLTransform" else {})}
        ours, theirs = getattr(T, cls)(**ours_kw), getattr(LT, cls)(**theirs_kw)
        t_ours = median_time(lambda: ours(x), args.repeats, sync)
        t_theirs = median_time(lambda: [theirs(im) for im in pil], args.repeats, sync)
        print(f"| {name} | {t_ours * 1e3:.1f} | {t_theirs * 1e3:.1f} | {n / t_ours:,.0f} | {n / t_theirs:,.0f} | "
              f"{t_theirs / t_ours:.1f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
