"""Subprocess probe for the flat-memory test and scripts/bench_embed.py: embed N synthetic 8x8 images (or the
images of --folder) into shards, or the old all-in-memory way (--in-memory), or the way ``lightly-embed`` does
(--lightly: LightlyDataset + its transform + SelfSupervisedEmbedding.embed), and print one JSON line with the
peak RSS and timing."""

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


def lightly_embed(model: nn.Module, folder: str, batch_size: int) -> int:
    """lightly-embed's pipeline (lightly/cli/embed_cli.py) with ``model``: PIL decoding, Resize, ToTensor, Normalize,
    every embedding kept in memory."""
    from lightly.data import LightlyDataset
    from lightly.embedding import SelfSupervisedEmbedding
    from lightly.transforms.torchvision_v2_compatibility import torchvision_transforms as T

    transform = T.Compose([T.Resize((8, 8)), T.ToTensor(),
                           T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])  # fmt: skip
    dataset = LightlyDataset(folder, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    wrapper = nn.Module()
    wrapper.backbone = model  # SelfSupervisedEmbedding embeds with model.backbone, as lightly-embed's model has
    emb, _, _ = SelfSupervisedEmbedding(wrapper, None, None, None).embed(loader, device=torch.device("cpu"))
    return len(emb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--in-memory", action="store_true")
    ap.add_argument("--lightly", action="store_true")
    ap.add_argument("--folder", help="embed this image folder instead of n synthetic images")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = wide_tiny_model()
    src = SyntheticSource(args.n, size=8) if args.folder is None else args.folder
    # Imports outside the timed part (torchvision's v2 transforms pull in torch._dynamo: seconds on a busy machine).
    import torchvision.io  # noqa: F401
    from torchvision.transforms import v2  # noqa: F401

    if args.lightly:
        import lightly.data  # noqa: F401
        import lightly.embedding  # noqa: F401
    t = time.perf_counter()
    if args.lightly:
        n = lightly_embed(model, args.folder, args.batch_size)
    elif args.in_memory:
        from torchvision.transforms import v2

        data = src.with_decoding(8, v2.CenterCrop(8)) if args.folder is None else src
        n = len(extract_features(model, data, input_size=8, batch_size=args.batch_size, device="cpu", num_workers=0))
    else:
        n = embed_to_shards(model, src, args.out, input_size=8, batch_size=args.batch_size, device="cpu",
                            num_workers=0, shard_size=args.shard_size, force=True).num_embeddings  # fmt: skip
    dt = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "seconds": dt, "images_per_s": n / dt, "peak_rss_mb": rss_mb}))


if __name__ == "__main__":
    main()
