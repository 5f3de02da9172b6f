"""Rebuild the embedded datasets from the CC0 clothing dataset (clothing10_160px).

Usage: python scripts/make_embedded_data.py [--src ../shared/data/clothing10_160px] [--preset mini|demo]

* ``mini`` (training/data/clothing10_mini, the tests' data): per class the first 40 training files, and 20 from
  the source's val then test folders.
* ``demo`` (training/data/clothing10_demo, the demo's data, shipped in the wheel as sslhub/_data/clothing10_demo):
  per class 40 validation images (balanced: the source's val and test files first, then the last training files),
  and every other image of the source for training (3,381, imbalanced as the source is: 96-888 per class). SSL
  needs the images more than a balanced training set: on 960 of them (96 per class) SimCLR did not beat its
  random-init kNN within 30 epochs; on all 3,381 it does by 10+ points in 20 (training/README.md, "The demo").

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
    n_train, n_val = (40, 20) if args.preset == "mini" else (0, 40)  # demo: every non-val image trains
    readme = (dst / "README.md").read_text() if (dst / "README.md").exists() else None  # hand-written: kept
    if dst.exists():
        shutil.rmtree(dst)
    for cls in sorted(p.name for p in (args.src / "train").iterdir()):
        train = sorted((args.src / "train" / cls).glob("*.jpg"))
        held = [f for s in ("val", "test") for f in sorted((args.src / s / cls).glob("*.jpg"))]
        if args.preset == "mini":
            picked = {"train": train[:n_train], "val": held[:n_val]}
        else:
            val = (held + train[::-1])[:n_val]
            picked = {"train": [f for f in train + held if f not in val], "val": val}
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
    if readme is not None:
        (dst / "README.md").write_text(readme)


if __name__ == "__main__":
    main()
