"""Tutorial (d): a Lightly Worker checkpoint -> safetensors -> publishable folder -> back, features unchanged.

1. build the Lightly Worker's SimCLR model exactly as Lightly's docs do ("Use Checkpoint from Model Trained
   Outside the Lightly Worker": ResNetGenerator + input BatchNorm + num_ftrs 1x1 conv), train it a few steps on
   real images (embedded CC0 clothing photos) with lightly's own loss and transform, and save it the way the docs
   say: ``torch.save({"state_dict": model.state_dict(prefix="model.")}, "checkpoint.ckpt")``;
2. ``sslhub.convert`` it to ``.safetensors`` and back to ``.ckpt`` (lossless: every tensor bit-identical);
3. ``publish(..., dry_run=DIR)``: the folder a Hugging Face repo would get (model.safetensors, config.json,
   README.md), nothing uploaded;
4. from that folder back to a Worker ``.ckpt`` that Lightly's documented loader reads;
5. features of every file, through sslhub and through Lightly's own loader, against the trained model in memory.

Needs the ``lightly`` package (``pip install lightly``). Exit code 0 only if the round trip is lossless and every
max |diff| is exactly 0.

Usage: python scripts/tutorials/worker_roundtrip.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import sslhub  # noqa: E402
from sslhub.checkpoints.io import save_torch  # noqa: E402  (atomic torch.save: temp file + rename)

DATA = ROOT / "training/data/clothing10_mini"


def build_model(name: str = "resnet-18", out_dim: int = 128, num_ftrs: int = 32, width: float = 1) -> nn.Module:
    """Lightly's documented ``build_model``: the Worker's SimCLR (backbone indices 0-8, see the fact sheet)."""
    from lightly.models import ResNetGenerator, batchnorm
    from lightly.models.modules import SimCLRProjectionHead

    class SimCLR(nn.Module):
        def __init__(self, backbone: nn.Module, num_ftrs: int, out_dim: int) -> None:
            super().__init__()
            self.backbone = backbone
            # batch_norm=False is the head the Worker/CLI itself trains (lightly.cli._cli_simclr); the docs'
            # snippet leaves the default BN head, which the lightly CLI's strict loader rejects.
            self.projection_head = SimCLRProjectionHead(num_ftrs, num_ftrs, out_dim, batch_norm=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

    resnet = ResNetGenerator(name=name, width=width)
    last_conv_channels = list(resnet.children())[-1].in_features
    backbone = nn.Sequential(
        batchnorm.get_norm_layer(3, 0),
        *list(resnet.children())[:-1],
        nn.Conv2d(last_conv_channels, num_ftrs, 1),
        nn.AdaptiveAvgPool2d(1),
    )
    return SimCLR(backbone, num_ftrs=num_ftrs, out_dim=out_dim)


def train_a_few_steps(model: nn.Module, steps: int, batch_size: int, input_size: int) -> list[float]:
    """SimCLR steps with lightly's transform and loss: trained weights and BatchNorm statistics, not init values."""
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=input_size, gaussian_blur=0.0)
    dataset = torchvision.datasets.ImageFolder(str(DATA / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0)
    )
    criterion = NTXentLoss(temperature=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9)
    model.train()
    losses: list[float] = []
    while len(losses) < steps:
        for (x0, x1), _ in loader:
            loss = criterion(model(x0), model(x1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return losses


def documented_worker_loader(path: Path, model_name: str, model_width: float) -> nn.Module:
    """The loader from Lightly's docs ("Load Model from Checkpoint"), as written there (weights_only added)."""
    import lightly

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = OrderedDict()
    for key, value in checkpoint["state_dict"].items():
        if ("projection_head" in key) or ("backbone.7" in key):
            continue  # drop layers used for projection head
        state_dict[key.replace("model.backbone.", "")] = value
    resnet = lightly.models.ResNetGenerator(name=model_name, width=model_width)
    model = nn.Sequential(
        lightly.models.batchnorm.get_norm_layer(3, 0),
        *list(resnet.children())[:-1],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
    )
    model.load_state_dict(state_dict)  # strict: any renamed or missing key fails here
    return model.eval()


def real_images(n: int, size: int) -> torch.Tensor:
    """``n`` validation photos, resized and normalised as Lightly's embedding code does (ImageNet mean/std)."""
    import torchvision
    from torchvision.transforms import v2

    tf = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    ds = torchvision.datasets.ImageFolder(str(DATA / "val"), transform=tf)
    return torch.stack([ds[i][0] for i in range(0, len(ds), max(1, len(ds) // n))][:n])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output folder (default: a temporary folder, deleted at exit)")
    ap.add_argument("--quick", action="store_true", help="CI size: 2 training steps, 1 thread")
    ap.add_argument("--width", type=float, default=1.0, help="ResNetGenerator width (Worker: 1)")
    ap.add_argument("--steps", type=int, help="SimCLR training steps (default 10, --quick 2)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        torch.set_num_threads(1)  # on small CPU workloads one thread beats several contending ones
    steps = args.steps or (2 if args.quick else 10)
    with tempfile.TemporaryDirectory(prefix="sslhub_tutorial_d_") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        return run(out, steps=steps, width=args.width, batch_size=16 if args.quick else 32)


def run(out: Path, *, steps: int, width: float, batch_size: int) -> int:
    from sslhub.hub.publish import publish

    name, input_size = "resnet-18", 32
    torch.manual_seed(0)

    # 1. The Worker checkpoint, trained and saved as Lightly's docs do.
    print(f"[1/5] training Lightly's Worker SimCLR ({name}, width {width:g}) for {steps} steps ...", flush=True)
    model = build_model(name=name, width=width)
    losses = train_a_few_steps(model, steps, batch_size, input_size)
    model.eval()
    ckpt = out / "checkpoint.ckpt"
    save_torch({"state_dict": model.state_dict(prefix="model.")}, ckpt)
    about = sslhub.info(ckpt)
    print(f"      sslhub.info: layout {about['layout']}, arch {about['arch']}, width {about['width']:g}, "
          f"num_ftrs {about['num_ftrs']}, {about['num_tensors']} tensors")  # fmt: skip

    # 2. Lossless container change: .ckpt -> .safetensors -> .ckpt.
    print("[2/5] sslhub.convert: .ckpt -> .safetensors -> .ckpt ...", flush=True)
    st = sslhub.convert(ckpt, out / "checkpoint.safetensors", force=True)
    back = sslhub.convert(st, out / "checkpoint_roundtrip.ckpt", force=True)
    a = torch.load(ckpt, weights_only=True)["state_dict"]
    b = torch.load(back, weights_only=True)["state_dict"]
    lossless = list(a) == list(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)

    # 3. The publishable folder (what `sslhub publish --dry-run DIR` writes; no network).
    print("[3/5] publish(..., dry_run=DIR) ...", flush=True)
    hub = out / "hub"
    shutil.rmtree(hub, ignore_errors=True)  # this tutorial's own folder, written fresh every run
    published = publish(st, repo_id="local/simclr-worker-resnet18", dry_run=hub, license="cc0-1.0")
    files = sorted(p.name for p in hub.iterdir())

    # 4. Back to a Worker .ckpt. The published model.safetensors holds the backbone alone (indices 0-7, the
    #    num_ftrs conv kept, no projection head) under keys without a prefix; sslhub.convert puts them under the
    #    Worker's "model.backbone." again. (No projection head: Lightly's documented loader, which drops the
    #    head anyway, reads it; the lightly CLI's strict loader, which wants the head, does not.)
    print("[4/5] published folder -> Worker .ckpt ...", flush=True)
    worker_back = sslhub.convert(hub / "model.safetensors", out / "checkpoint_from_hub.ckpt", force=True)
    assert all(k.startswith("model.backbone.") for k in torch.load(worker_back, weights_only=True)["state_dict"])

    # 5. Features of every file against the trained model in memory (the reference), on real photos.
    print("[5/5] comparing features on real images ...", flush=True)
    x = real_images(8, input_size)
    reference_backbone = nn.Sequential(*list(model.backbone.children())[:7], nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    with torch.no_grad():
        ref = reference_backbone.eval()(x)  # what the documented Worker loader computes: 512*width-d
        ref_emb = model.backbone(x).flatten(1)  # what lightly-embed computes: num_ftrs-d (index 7 kept)
        diffs = {
            "Lightly loader, checkpoint.ckpt": documented_worker_loader(ckpt, name, width)(x) - ref,
            "Lightly loader, from published": documented_worker_loader(worker_back, name, width)(x) - ref,
            "sslhub, checkpoint.ckpt": sslhub.load_pretrained(ckpt)(x) - ref,
            "sslhub, checkpoint.safetensors": sslhub.load_pretrained(st)(x) - ref,
            "sslhub, published folder": sslhub.load_pretrained(hub)(x) - ref,
            "sslhub, checkpoint_from_hub.ckpt": sslhub.load_pretrained(worker_back)(x) - ref,
            "sslhub embedding, published": sslhub.load_pretrained(hub, features="embedding")(x) - ref_emb,
            "sslhub embedding, from_hub.ckpt": sslhub.load_pretrained(worker_back, features="embedding")(x)
            - ref_emb,
        }
    max_diff = {k: float(v.abs().max()) for k, v in diffs.items()}

    ok = lossless and all(d == 0.0 for d in max_diff.values())
    results = {
        "tutorial": "worker_roundtrip",
        "arch": name,
        "width": width,
        "num_ftrs": about["num_ftrs"],
        "train_steps": steps,
        "train_loss": losses,
        "lossless_roundtrip": lossless,
        "published_files": files,
        "published_sha256": published.config["sslhub"]["weights_sha256"],
        "feature_dim": int(ref.shape[1]),
        "embedding_dim": int(ref_emb.shape[1]),
        "max_abs_diff": max_diff,
        "ok": ok,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))

    print("\n== tutorial (d): Lightly Worker checkpoint round trip ==")
    print(f"worker checkpoint   {ckpt.name}: {name} width {width:g}, num_ftrs {about['num_ftrs']}, "
          f"{steps} SimCLR steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")  # fmt: skip
    print(f".ckpt -> .safetensors -> .ckpt bit-identical: {lossless}")
    print(f"published folder    {hub}: {', '.join(files)}")
    print(f"features            {ref.shape[1]}-d backbone, {ref_emb.shape[1]}-d embedding, 8 real photos")
    for k, d in max_diff.items():
        print(f"max |diff|          {k:<34} {d:.1e}")
    print(f"result              {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
