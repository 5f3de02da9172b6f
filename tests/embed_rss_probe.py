"""Subprocess probe for the flat-memory test and scripts/bench_embed.py: embed N synthetic 8x8 images into
shards (or, with --in-memory, the old all-in-memory way) and print one JSON line with the peak RSS and timing."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sslhub.data.sources import SyntheticSource  # noqa: E402
from sslhub.evaluation import embed_to_shards, extract_features  # noqa: E402


def wide_tiny_model() -> nn.Module:
    """A one-conv model with 512-d outputs at 8 px: cheap to run, yet wide enough that holding every
    embedding in memory (the old way) would grow the RSS by 2 KB per image."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten()).eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--in-memory", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = wide_tiny_model()
    src = SyntheticSource(args.n, size=8)
    t = time.perf_counter()
    if args.in_memory:
        from torchvision.transforms import v2

        n = len(extract_features(model, src.with_decoding(8, v2.CenterCrop(8)), batch_size=args.batch_size,
                                 device="cpu", num_workers=0))  # fmt: skip
    else:
        n = embed_to_shards(model, src, args.out, input_size=8, batch_size=args.batch_size, device="cpu",
                            num_workers=0, shard_size=args.shard_size, force=True).num_embeddings  # fmt: skip
    dt = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "seconds": dt, "images_per_s": n / dt, "peak_rss_mb": rss_mb}))


if __name__ == "__main__":
    main()
