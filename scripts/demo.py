"""The main job on the embedded demo data: train -> evaluate (kNN vs random init) -> export -> reload.

1. train the `simclr-resnet-18-demo` recipe (Lightly's Worker model: ResNetGenerator resnet-18, width 0.25,
   20 epochs) on the embedded CC0 clothing set (`sslhub.data.demo_path()`: 3,381 train / 400 val, 10 classes);
   an interrupted demo resumes from its last finished epoch, a finished one is reused (--fresh trains again);
2. evaluate: kNN top-1 on the val split with `sslhub eval knn`'s code path, trained vs the run's own untrained
   backbone (the monitor measured it before the first step), with the evaluation's standard error;
3. export: the Lightly Worker checkpoint.ckpt the run wrote, a lossless .ckpt -> .safetensors -> .ckpt round trip,
   Lightly-layout embeddings (CSV) and a publishable folder (model.safetensors, config.json, README.md);
4. reload every file with sslhub.load_pretrained and check that the features are identical; print a summary.

Usage: python scripts/demo.py [--out runs/demo] [--epochs N] [--fresh]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = "simclr-resnet-18-demo"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs") / "demo", help="run folder (default runs/demo)")
    ap.add_argument("--epochs", type=int, help="override the recipe's epochs (at least 1)")
    ap.add_argument("--fresh", action="store_true", help="delete the demo's earlier run and train again")
    args = ap.parse_args()  # checked before the heavy imports below
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs {args.epochs}: train for at least 1 epoch")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("sslhub.checkpoints", "sslhub.hub", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return _demo(args)
    except KeyboardInterrupt:
        from sslhub.training.progress import interrupted_message

        print(f"\ndemo: {interrupted_message(args.out, 'make demo (or python scripts/demo.py)')}", file=sys.stderr)
        return 130


def _demo(args: argparse.Namespace) -> int:
    import torch

    import sslhub
    from sslhub.data import demo_path
    from sslhub.evaluation import embed, knn_eval
    from sslhub.hub.publish import publish
    from sslhub.training.progress import format_duration, run_summary

    data = demo_path()
    run = args.out
    recipe = sslhub.get_recipe(RECIPE)
    epochs = args.epochs or int(recipe["epochs"])
    t0 = time.time()
    done_epochs = _epochs_of(run) if not args.fresh else None
    if done_epochs == epochs and (run / "model.safetensors").exists():
        print(f"[1/4] reusing the finished run in {run} (--fresh trains again)", flush=True)
    else:
        # an interrupted run (or a finished one asked for more epochs) continues from its last finished epoch
        resume = done_epochs is not None and done_epochs <= epochs and (run / "checkpoints" / "last.ckpt").exists()
        how = f"resuming (after epoch {done_epochs})" if resume else "training"
        print(f"[1/4] {how} {RECIPE} on {data}/train ({epochs} epochs) into {run} ...", flush=True)
        sslhub.train(RECIPE, data / "train", run, val=data / "val", epochs=epochs, device="cpu", num_workers=None,
                     resume=resume, force=not resume and run.exists())  # fmt: skip
    t_train = time.time() - t0

    print("[2/4] evaluating (kNN on the val split, as `sslhub eval knn` does) ...", flush=True)
    k, size = recipe["knn"]["k"], recipe["input_size"]
    trained = sslhub.load_pretrained(run / "model.safetensors")
    result = knn_eval(trained, data / "train", data / "val", k=k, t=recipe["knn"]["t"], input_size=size, device="cpu")
    rows = _rows(run)
    monitor = next(r["knn_top1"] for r in reversed(rows) if "knn_top1" in r)
    random_init = next(r["knn_top1_random_init"] for r in rows if "knn_top1_random_init" in r)
    n_val = result["protocol"]["num_val"]
    se = 100 * math.sqrt(result["value"] / 100 * (1 - result["value"] / 100) / n_val)

    print("[3/4] exporting ...", flush=True)
    exports = run / "exports"
    st = sslhub.convert(run / "checkpoint.ckpt", exports / "checkpoint.safetensors", force=True)
    back = sslhub.convert(st, exports / "checkpoint_roundtrip.ckpt", force=True)
    a = torch.load(run / "checkpoint.ckpt", weights_only=True)["state_dict"]
    b = torch.load(back, weights_only=True)["state_dict"]
    lossless = a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    emb_file = exports / "embeddings.csv"
    embed(trained, data / "val", emb_file, input_size=size, device="cpu")
    publish(run, repo_id="local/simclr-resnet-18-demo", dry_run=exports / "hub", metrics=[result], overwrite_readme=True)

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
          f"{rows[-1]['epoch']} epochs, batch {recipe['batch_size']}, {size} px")  # fmt: skip
    for line in run_summary(run):
        if not line.startswith("kNN"):  # the kNN line below says more
            print(line)
    print(f"kNN top-1 (k={k})   trained {result['value']:.2f}% (+/- {se:.1f} standard error) vs random init "
          f"{random_init:.2f}%: {result['value'] - random_init:+.2f} points "
          f"(val: {n_val} images, 10 classes, chance 10%)")  # fmt: skip
    print(f"one kNN number    the training monitor said {monitor:.2f}%, `sslhub eval knn` says {result['value']:.2f}%"
          f" ({'identical' if monitor == result['value'] else 'DIFFERENT'})")  # fmt: skip
    print(f"exports           {run / 'checkpoint.ckpt'} (Lightly Worker), {st.name}, {emb_file.name}, {exports / 'hub'}")
    print(f"round trip        .ckpt -> .safetensors -> .ckpt bit-identical: {lossless}")
    for name, d in diffs.items():
        print(f"reload            {name:<24} max |diff| = {d:.1e}")
    print(f"total             {format_duration(time.time() - t0)} (training {format_duration(t_train)})")
    ok = lossless and all(d == 0 for d in diffs.values()) and monitor == result["value"]
    return 0 if ok else 1


def _rows(run: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _epochs_of(run: Path) -> int | None:
    try:
        return int(_rows(run)[-1]["epoch"])
    except (OSError, ValueError, IndexError, KeyError):
        return None


if __name__ == "__main__":
    sys.exit(main())
