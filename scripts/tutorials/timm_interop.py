"""Tutorial (c): timm interop. Export SSL weights to timm and get the same features from timm alone.

1. pretrain a small timm ViT (``mae-vit-tiny-p4-32``: timm ``vit_tiny_patch16_224`` with 4 px patches at 32 px)
   on the embedded CC0 clothing photos with ``sslhub.train`` (a few steps: the point here is the weights' path,
   not their quality; ``--recipe`` picks another, e.g. ``simclr-resnet18`` for a ResNet);
2. ``sslhub.export(run, to="timm")``: a state dict in timm's own key layout, checked by a strict load;
3. ``timm.create_model(arch, num_classes=0, checkpoint_path=..., **kwargs)``: timm reads the file itself;
4. ``publish(..., dry_run=DIR)`` writes what a Hugging Face repo gets; ``timm.create_model("local-dir:DIR",
   pretrained=True)`` reads that folder the way ``hf-hub:org/name`` would be read (config.json + safetensors);
5. features of both timm models against ``sslhub.load_pretrained`` on real photos: max |diff| must be 0.

Exit code 0 only if both timm models give exactly sslhub's features.

Usage: python scripts/tutorials/timm_interop.py [--out DIR] [--quick] [--recipe NAME]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import sslhub  # noqa: E402

DATA = ROOT / "training/data/clothing10_mini"


def subset_folder(src: Path, dst: Path, per_class: int) -> Path:
    """The first ``per_class`` photos of each class of ``src``, copied to ``dst`` (a smaller pretraining set)."""
    for cls in sorted(d for d in src.iterdir() if d.is_dir()):
        (dst / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy2(f, dst / cls.name / f.name)
    return dst


def real_images(model: torch.nn.Module, n: int, size: int) -> torch.Tensor:
    """``n`` validation photos with the model's own preprocessing (mean/std from its ``pretrained_cfg``)."""
    import torchvision
    from torchvision.transforms import v2

    cfg = model.pretrained_cfg
    tf = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(cfg["mean"]), list(cfg["std"])),
        ]
    )
    ds = torchvision.datasets.ImageFolder(str(DATA / "val"), transform=tf)
    return torch.stack([ds[i][0] for i in range(0, len(ds), max(1, len(ds) // n))][:n])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output folder (default: a temporary folder, deleted at exit)")
    ap.add_argument("--quick", action="store_true", help="CI size: 2 training steps, 1 thread")
    ap.add_argument("--recipe", default="mae-vit-tiny-p4-32", help="a recipe with a timm or torchvision backbone")
    ap.add_argument("--steps", type=int, help="pretraining steps (default 12, --quick 2)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        torch.set_num_threads(1)  # on small CPU workloads one thread beats several contending ones
    steps = args.steps or (2 if args.quick else 12)
    with tempfile.TemporaryDirectory(prefix="sslhub_tutorial_c_") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        return run(out, recipe=args.recipe, steps=steps, quick=args.quick)


def run(out: Path, *, recipe: str, steps: int, quick: bool) -> int:
    import timm

    from sslhub.export import export_checkpoint
    from sslhub.hub.publish import publish

    # 1. A short SSL pretraining; the run folder's model.safetensors carries the backbone and its spec.
    batch = 32 if quick else 64
    for own in ("run", "ssl_data", "hub"):  # a fresh run: train() appends to an existing metrics.jsonl
        shutil.rmtree(out / own, ignore_errors=True)
    # --quick pretrains on 8 photos per class: the run's per-epoch monitor embeds its whole training folder.
    data = subset_folder(DATA / "train", out / "ssl_data", 8) if quick else DATA / "train"
    print(f"[1/4] pretraining {recipe} for {steps} steps on {data} ...", flush=True)
    n = sum(1 for f in data.rglob("*") if f.is_file())
    epochs = -(-steps // (n // batch))  # ceil: enough epochs of the folder for `steps` steps
    run_dir = sslhub.train(recipe, data, out / "run", epochs=epochs, device="cpu", progress=not quick,
                           max_steps_per_epoch=min(steps, n // batch), overrides=[f"batch_size={batch}"],
                           force=True)  # fmt: skip  (a re-run of the tutorial replaces its run)
    ssl_model = sslhub.load_pretrained(run_dir / "model.safetensors")
    size = int(ssl_model.pretrained_cfg.get("input_size", (3, 32, 32))[-1])

    # 2. Export to timm's layout. The result says which timm constructor arguments the weights need
    #    (here patch_size=4, img_size=32: not the defaults of vit_tiny_patch16_224).
    print("[2/4] sslhub.export(..., to='timm') ...", flush=True)
    exported = export_checkpoint(run_dir, "timm", out / "timm_backbone.safetensors", force=True)
    print(f"      {exported.usage}")

    # 3. timm alone: create_model loads the file strictly (timm's load_checkpoint, strict=True by default).
    print("[3/4] timm.create_model(..., checkpoint_path=...) and timm.create_model('local-dir:...') ...", flush=True)
    timm_model = timm.create_model(
        exported.arch, pretrained=False, num_classes=0, checkpoint_path=str(exported.path), **exported.kwargs
    ).eval()

    # 4. The publishable folder, read by timm as a hub repo would be (config.json has architecture and
    #    model_args, pretrained_cfg has the preprocessing; model.safetensors is in timm's layout).
    hub = out / "hub"
    publish(run_dir, repo_id="local/tutorial-timm", dry_run=hub, license="cc0-1.0")
    hub_model = timm.create_model(f"local-dir:{hub}", pretrained=True).eval()
    data_cfg = timm.data.resolve_data_config({}, model=hub_model)

    print("[4/4] comparing features on real images ...", flush=True)
    x = real_images(ssl_model, 8, size)
    with torch.no_grad():
        ref = ssl_model(x)
        diff_ckpt = float((timm_model(x) - ref).abs().max())
        diff_hub = float((hub_model(x) - ref).abs().max())
    ok = diff_ckpt == 0.0 and diff_hub == 0.0 and timm_model.num_features == ssl_model.num_features

    results = {
        "tutorial": "timm_interop",
        "recipe": recipe,
        "steps": steps,
        "timm_arch": exported.arch,
        "timm_kwargs": exported.kwargs,
        "export": str(exported.path),
        "hub_folder": str(hub),
        "feature_dim": int(ref.shape[1]),
        "timm_data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()},
        "max_abs_diff": {"checkpoint_path": diff_ckpt, "local-dir": diff_hub},
        "ok": ok,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))

    kwargs = "".join(f", {k}={v!r}" for k, v in exported.kwargs.items())
    print("\n== tutorial (c): timm interop ==")
    print(f"ssl weights         {recipe}, {steps} steps: {run_dir / 'model.safetensors'}")
    print(f"timm export         {exported.path.name}: timm.create_model({exported.arch!r}, num_classes=0{kwargs})")
    print(f"timm data config    input {data_cfg['input_size']}, mean {data_cfg['mean']}, std {data_cfg['std']}")
    print(f"features            {ref.shape[1]}-d, 8 real photos at {size} px")
    print(f"max |diff|          timm checkpoint_path vs sslhub   {diff_ckpt:.1e}")
    print(f"max |diff|          timm local-dir: vs sslhub        {diff_hub:.1e}")
    print(f"result              {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
