"""The main job on the embedded default data: train -> evaluate -> export -> reload, ~4 minutes on 2 CPU cores.

1. train the `simclr-resnet-18-mini` recipe (Lightly's Worker model: ResNetGenerator resnet-18, width 0.25) on
   training/data/clothing10_mini/train (400 CC0 photos, 10 classes);
2. evaluate: kNN top-1 on the val split, trained vs the same architecture at random init;
3. export: the Lightly Worker checkpoint.ckpt the run wrote, a lossless .ckpt -> .safetensors -> .ckpt round trip,
   Lightly-layout embeddings (CSV) and a publishable folder (model.safetensors, config.json, README.md);
4. reload every file with sslhub.load_pretrained and check that the features are identical; print a summary.

Usage: python scripts/demo.py [--out runs/demo] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sslhub  # noqa: E402

DATA = ROOT / "training/data/clothing10_mini"
RECIPE = "simclr-resnet-18-mini"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--epochs", type=int, help="override the recipe's epochs")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from sslhub.evaluation import embed, knn_eval
    from sslhub.hub.publish import publish

    t0 = time.time()
    run = args.out
    if run.exists():
        import shutil

        shutil.rmtree(run)  # a fresh run every time: the demo must show the whole path
    print(f"[1/4] training {RECIPE} on {DATA.relative_to(ROOT)}/train ...", flush=True)
    sslhub.train(RECIPE, DATA / "train", run, val=DATA / "val", epochs=args.epochs, device="cpu")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    t_train = time.time() - t0

    print("[2/4] evaluating (kNN on the val split) ...", flush=True)
    recipe = sslhub.get_recipe(RECIPE)
    k, size = recipe["knn"]["k"], recipe["input_size"]
    trained = sslhub.load_pretrained(run / "model.safetensors")
    torch.manual_seed(0)
    random_init = sslhub.create_backbone(recipe["backbone"]["arch"], width=recipe["backbone"]["width"]).eval()
    knn_trained = knn_eval(trained, DATA / "train", DATA / "val", k=k, input_size=size, num_workers=0)
    knn_random = knn_eval(random_init, DATA / "train", DATA / "val", k=k, input_size=size, num_workers=0)

    print("[3/4] exporting ...", flush=True)
    exports = run / "exports"
    st = sslhub.convert(run / "checkpoint.ckpt", exports / "checkpoint.safetensors", force=True)
    back = sslhub.convert(st, exports / "checkpoint_roundtrip.ckpt", force=True)
    a = torch.load(run / "checkpoint.ckpt", weights_only=True)["state_dict"]
    b = torch.load(back, weights_only=True)["state_dict"]
    lossless = a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    emb_file = exports / "embeddings.csv"
    embed(trained, DATA / "val", emb_file, input_size=size, num_workers=0)
    publish(run, repo_id="local/simclr-resnet18-mini", dry_run=exports / "hub", metrics=[knn_trained])
    published = exports / "hub"

    print("[4/4] reloading every file ...", flush=True)
    x = torch.rand(4, 3, size, size)
    with torch.no_grad():
        ref = trained(x)
        diffs = {
            name: (sslhub.load_pretrained(path)(x) - ref).abs().max().item()
            for name, path in {
                "Worker checkpoint.ckpt": run / "checkpoint.ckpt",
                ".ckpt -> .safetensors": st,
                ".safetensors -> .ckpt": back,
                "published folder": exports / "hub",
            }.items()
        }
    print("\n== sslhub demo summary ==")
    print(f"recipe            {RECIPE}: {recipe['backbone']['arch']} width {recipe['backbone']['width']}, "
          f"{len(rows)} epochs, batch {recipe['batch_size']}, {size} px")  # fmt: skip
    print(f"training          {t_train:.0f} s, {rows[-1]['images_per_s']:.0f} img/s (last epoch), "
          f"loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")  # fmt: skip
    print(f"kNN top-1 (k={k})   trained {knn_trained['value']:.1f}%  vs random init {knn_random['value']:.1f}%  "
          f"(val: {DATA.name}/val, 200 images, 10 classes)")  # fmt: skip
    print(f"exports           {run / 'checkpoint.ckpt'} (Lightly Worker), {st.name}, {emb_file.name}, {published}")
    print(f"round trip        .ckpt -> .safetensors -> .ckpt bit-identical: {lossless}")
    for name, d in diffs.items():
        print(f"reload            {name:<24} max |diff| = {d:.1e}")
    print(f"total             {time.time() - t0:.0f} s")
    ok = lossless and all(d == 0 for d in diffs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
