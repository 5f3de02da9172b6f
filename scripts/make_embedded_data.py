"""Rebuild the embedded datasets from the CC0 clothing dataset (clothing10_160px).

Usage: python scripts/make_embedded_data.py [--src ../shared/data/clothing10_160px] [--preset mini|demo]

* ``mini`` (training/data/clothing10_mini, the tests' data): per class the first 40 training files, and 20 from
  the source's val then test folders.
* ``demo`` (training/data/clothing10_demo, the demo's data, shipped in the wheel as sslhub/_data/clothing10_demo):
  per class 96 training and 40 validation images (the smallest class, skirt, has 136): validation takes the
  source's val and test files first, then the last training files; training takes the first training files that
  are not in validation.

Deterministic: files in sorted order, resized (shorter side 64, bicubic), centre-cropped to 64x64, JPEG q90.
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
    ap.add_argument("--preset", choices=("mini", "demo"), default="mini")
    ap.add_argument("--dst", type=Path, help="default: training/data/clothing10_<preset>")
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    dst = args.dst or ROOT / f"training/data/clothing10_{args.preset}"
    n_train, n_val = (40, 20) if args.preset == "mini" else (96, 40)
    if dst.exists():
        shutil.rmtree(dst)
    for cls in sorted(p.name for p in (args.src / "train").iterdir()):
        train = sorted((args.src / "train" / cls).glob("*.jpg"))
        held = [f for s in ("val", "test") for f in sorted((args.src / s / cls).glob("*.jpg"))]
        if args.preset == "mini":
            picked = {"train": train[:n_train], "val": held[:n_val]}
        else:
            val = (held + train[::-1])[:n_val]
            picked = {"train": [f for f in train if f not in val][:n_train], "val": val}
        for split, files in picked.items():
            if len(files) < (n_train if split == "train" else n_val):
                raise SystemExit(f"{cls}: only {len(files)} {split} images in {args.src}")
            out = dst / split / cls
            out.mkdir(parents=True, exist_ok=True)
            for f in files:
                im = Image.open(f).convert("RGB")
                w, h = im.size
                scale = args.size / min(w, h)
                im = im.resize((max(args.size, round(w * scale)), max(args.size, round(h * scale))), Image.BICUBIC)
                w, h = im.size
                left, top = (w - args.size) // 2, (h - args.size) // 2
                im.crop((left, top, left + args.size, top + args.size)).save(out / f.name, quality=90)
    shutil.copy(args.src / "SOURCE.txt", dst / "SOURCE_ORIGINAL.txt")


if __name__ == "__main__":
    main()
