"""Tutorial (a): finetune a clothing classifier from SSL weights vs from random init.

1. SSL pretraining with ``sslhub.train`` on the training photos, labels unused (default: the ``simclr-resnet-18-mini``
   recipe on the embedded CC0 ``training/data/clothing10_mini``: 400 train / 200 val photos, 10 classes);
2. ``sslhub.load_pretrained`` on the run's ``model.safetensors``, and the same architecture at random init;
3. kNN top-1 of both frozen backbones (what the features know before any label is used);
4. ``sslhub.evaluation.finetune_eval`` of both with the same protocol, seed and data: a fresh linear head, the
   whole network trained, top-1 on the val photos;
5. both accuracies side by side, and ``results.json`` with the evaluation result dicts (the format model cards
   and ``publish(metrics=...)`` take).

``--data DIR`` takes any folder with ``train/`` and ``val/`` class subfolders, e.g. the bigger clothing set
``../shared/data/clothing10_160px`` where it exists (use ``--input-size 64`` or more for it).
``--quick`` is the CI size (2 SSL epochs, 1 finetuning epoch, 1 thread): it shows the path, not an SSL gain.

Usage: python scripts/tutorials/finetune_clothing.py [--out DIR] [--quick] [--data DIR] [--ssl-epochs N]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import sslhub  # noqa: E402

DATA = ROOT / "training/data/clothing10_mini"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output folder (default: a temporary folder, deleted at exit)")
    ap.add_argument("--quick", action="store_true", help="CI size: 2 SSL epochs, 1 finetuning epoch, 1 thread")
    ap.add_argument("--data", type=Path, default=DATA, help="folder with train/ and val/ (default: embedded)")
    ap.add_argument("--recipe", default="simclr-resnet-18-mini", help="SSL recipe (sslhub.list_recipes())")
    ap.add_argument("--ssl-epochs", type=int, help="SSL epochs (default: the recipe's, --quick 2)")
    ap.add_argument("--finetune-epochs", type=int, help="finetuning epochs (default 10, --quick 1)")
    ap.add_argument("--input-size", type=int, help="image size for SSL and finetuning (default: the recipe's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        torch.set_num_threads(1)  # on small CPU workloads one thread beats several contending ones
    for split in ("train", "val"):
        if not (args.data / split).is_dir():
            print(f"{args.data}: needs {split}/ with one subfolder per class")
            return 2
    with tempfile.TemporaryDirectory(prefix="sslhub_tutorial_a_") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        return run(
            out,
            data=args.data,
            recipe_name=args.recipe,
            ssl_epochs=args.ssl_epochs or (2 if args.quick else None),
            finetune_epochs=args.finetune_epochs or (1 if args.quick else 10),
            input_size=args.input_size,
            device=args.device,
            progress=not args.quick,
        )


def run(out: Path, *, data: Path, recipe_name: str, ssl_epochs: int | None, finetune_epochs: int,
        input_size: int | None, device: str, progress: bool) -> int:  # fmt: skip
    from sslhub.evaluation import finetune_eval, knn_eval

    recipe = sslhub.get_recipe(recipe_name)
    overrides = []
    if input_size is not None:  # train on what the classifier will see; the loader decodes a bit larger
        overrides = [f"input_size={input_size}", f"load_size={round(input_size * 1.25)}"]
    size = input_size or int(recipe["input_size"])
    train_dir, val_dir = data / "train", data / "val"

    # 1. SSL pretraining (labels are not used for training; val only feeds the per-epoch kNN monitor).
    epochs = ssl_epochs or int(recipe["epochs"])
    print(f"[1/4] SSL pretraining: {recipe_name}, {epochs} epochs on {train_dir} ...", flush=True)
    shutil.rmtree(out / "ssl_run", ignore_errors=True)  # a fresh run: train() appends to an existing metrics.jsonl
    run_dir = sslhub.train(recipe_name, train_dir, out / "ssl_run", val=val_dir, epochs=epochs, overrides=overrides,
                           device=device, progress=progress, force=True)  # fmt: skip  (a re-run replaces the run)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    # 2. The two starting points: the SSL backbone and the same architecture at random init.
    ssl_model = sslhub.load_pretrained(run_dir / "model.safetensors")
    bb = recipe["backbone"]
    torch.manual_seed(0)
    random_model = sslhub.create_backbone(bb["arch"], **{k: v for k, v in bb.items() if k != "arch"}).eval()
    same_arch = (
        ssl_model.pretrained_cfg["arch"] == random_model.pretrained_cfg["arch"]
        and ssl_model.num_features == random_model.num_features
    )

    # 3. Frozen features: kNN (Lightly's weighted kNN; k from the recipe, capped by the train set size).
    print("[2/4] kNN on frozen features ...", flush=True)
    k = int(recipe.get("knn", {}).get("k", 20))
    knn = {name: knn_eval(m, train_dir, val_dir, k=k, input_size=size, num_workers=0, device=device,
                          weights=name)  # fmt: skip
           for name, m in (("ssl", ssl_model), ("random_init", random_model))}  # fmt: skip

    # 4. Finetuning: same protocol, same seed; only the starting weights differ. finetune_eval copies the model.
    results = {}
    for i, (name, model) in enumerate((("ssl", ssl_model), ("random_init", random_model))):
        print(f"[{3 + i}/4] finetuning from {name.replace('_', ' ')}: {finetune_epochs} epochs ...", flush=True)
        results[name] = finetune_eval(model, train_dir, val_dir, epochs=finetune_epochs, input_size=size,
                                      num_workers=0, device=device, seed=0, weights=name)  # fmt: skip

    ssl_acc, rnd_acc = results["ssl"]["value"], results["random_init"]["value"]
    protocol = {n: {k: v for k, v in r["protocol"].items() if k != "top5"} for n, r in results.items()}
    n_val = results["ssl"]["protocol"]["num_val"]
    num_classes = results["ssl"]["protocol"]["num_classes"]
    ok = (
        same_arch
        and protocol["ssl"] == protocol["random_init"]  # a fair comparison: nothing but the weights differs
        and all(0.0 <= r["value"] <= 100.0 and math.isfinite(r["value"]) for r in [*results.values(), *knn.values()])
    )
    summary = {
        "tutorial": "finetune_clothing",
        "data": str(data),
        "recipe": recipe_name,
        "ssl_epochs": epochs,
        "ssl_run": str(run_dir),
        "ssl_loss": [r["loss"] for r in rows],
        "input_size": size,
        "num_val": n_val,
        "num_classes": num_classes,
        "knn": knn,
        "finetune": results,
        "ok": ok,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))

    print("\n== tutorial (a): finetuning on clothing, SSL weights vs random init ==")
    print(f"data                {data}: {results['ssl']['protocol']['num_train']} train / {n_val} val photos, "
          f"{num_classes} classes, {size} px")  # fmt: skip
    print(f"ssl pretraining     {recipe_name} ({bb['arch']}), {epochs} epochs, "
          f"loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")  # fmt: skip
    print(f"kNN top-1 (k={k})    ssl {knn['ssl']['value']:.1f}%   random init {knn['random_init']['value']:.1f}%")
    print(f"finetune top-1      ssl {ssl_acc:.1f}%   random init {rnd_acc:.1f}%   "
          f"({finetune_epochs} epochs, same seed and protocol; chance {100 / num_classes:.0f}%)")  # fmt: skip
    print(f"difference          {ssl_acc - rnd_acc:+.1f} points for the SSL weights")
    print(f"results             {out / 'results.json'}")
    print(f"result              {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
