"""The embedded demo dataset (CC0 clothing photos) that ships with the package."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_DATASET", "demo_path"]

DEMO_DATASET = "clothing10_demo"


def demo_path(split: str | None = None) -> Path:
    """The folder of the demo dataset: 3,781 CC0 garment photos, 10 classes, ``train/`` (3,381) and ``val/`` (400).

    Installed wheels carry it as ``sslhub/_data/clothing10_demo``; a source checkout reads
    ``training/data/clothing10_demo``. ``split`` ("train" or "val") returns that subfolder.

    Example::

        sslhub.train("simclr-resnet-18-demo", demo_path("train"), "runs/demo", val=demo_path("val"))

    Raises:
        ValueError: an unknown split.
        FileNotFoundError: the data is in neither place (a broken install).
    """
    if split not in (None, "train", "val"):
        raise ValueError(f"split={split!r}: the demo dataset has 'train' and 'val'")
    here = Path(__file__).resolve().parent.parent  # sslhub/
    for root in (here / "_data" / DEMO_DATASET, here.parent / "training" / "data" / DEMO_DATASET):
        if (root / "train").is_dir():
            return root / split if split else root
    raise FileNotFoundError(f"the demo dataset {DEMO_DATASET} is not installed (looked in {here / '_data'} and "
                            f"{here.parent / 'training/data'}); reinstall sslhub")  # fmt: skip
