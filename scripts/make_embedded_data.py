"""Rebuild the embedded default dataset (training/data/clothing10_mini) from the CC0 clothing dataset.

Usage: python scripts/make_embedded_data.py [--src ../shared/data/clothing10_160px]

Deterministic: the first N files per class in sorted order, resized (shorter side 64, bicubic), centre-cropped
to 64x64 and saved as JPEG q90.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared/data/clothing10_160px")
    ap.add_argument("--dst", type=Path, default=ROOT / "training/data/clothing10_mini")
    ap.add_argument("--train-per-class", type=int, default=40)
    ap.add_argument("--val-per-class", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    if args.dst.exists():
        shutil.rmtree(args.dst)
    splits = {"train": (["train"], args.train_per_class), "val": (["val", "test"], args.val_per_class)}
    for split, (sources, n) in splits.items():
        for cls in sorted(p.name for p in (args.src / "train").iterdir()):
            files = [f for s in sources for f in sorted((args.src / s / cls).glob("*.jpg"))][:n]
            out = args.dst / split / cls
            out.mkdir(parents=True, exist_ok=True)
            for f in files:
                im = Image.open(f).convert("RGB")
                w, h = im.size
                scale = args.size / min(w, h)
                im = im.resize((max(args.size, round(w * scale)), max(args.size, round(h * scale))), Image.BICUBIC)
                w, h = im.size
                left, top = (w - args.size) // 2, (h - args.size) // 2
                im.crop((left, top, left + args.size, top + args.size)).save(out / f.name, quality=90)
    shutil.copy(args.src / "SOURCE.txt", args.dst / "SOURCE_ORIGINAL.txt")


if __name__ == "__main__":
    main()
