"""``sslhub train``, ``sslhub recipes`` and ``sslhub preview``."""

from __future__ import annotations

import argparse
import json
import sys

# timm-style shortcuts: option -> recipe key (each is a --set KEY=VALUE, applied before the explicit --set items)
SHORTCUTS = {
    "batch_size": "batch_size",
    "lr": "optimizer.lr",
    "input_size": "input_size",
    "seed": "seed",
    "width": "backbone.width",
    "amp": "amp",
}


def _overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for dest, key in SHORTCUTS.items():
        value = getattr(args, dest, None)
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    return out + list(args.set or [])


def _train(args: argparse.Namespace) -> int:
    from sslhub.recipes import get_recipe

    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: train for at least 1 epoch")
    from sslhub.folders import check_image_folder

    check_image_folder(args.data, "--data")  # "did you mean", split folders: in a second, before torch is imported
    if args.val:
        check_image_folder(args.val, "--val")
    overrides = _overrides(args)
    get_recipe(args.recipe, overrides)  # a typo in a name, key or value fails here, before training starts
    from sslhub.training.loggers import resolve_loggers

    resolve_loggers(args.logger)  # likewise an unknown or uninstalled --logger

    from sslhub.training import train
    from sslhub.training.preempt import Preempted
    from sslhub.training.progress import interrupted_message, run_summary

    again = f"sslhub train {args.recipe} --data {args.data}" + (f" --val {args.val}" if args.val else "")
    try:
        run = train(args.recipe, args.data, args.out, val=args.val, epochs=args.epochs, overrides=overrides,
                    resume=args.resume, device=args.device, num_workers=args.workers,
                    deterministic=args.deterministic, max_steps_per_epoch=args.max_steps, augment_on=args.augment_on,
                    force=args.force, progress=not getattr(args, "quiet", False), loggers=args.logger)  # fmt: skip
    except Preempted as e:  # SIGTERM/SIGINT: the state is saved; 128 + signal, as a shell reports a killed job
        print(f"sslhub train: {e}; continue with: {again} --out {args.out} --resume", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # before the training loop took over the signal
        print(f"sslhub train: {interrupted_message(args.out, f'{again} --out {args.out} --resume')}", file=sys.stderr)
        return 130
    print(f"run written to {run}")
    for line in run_summary(run):
        print(line)
    return 0


def _recipe_row(r: dict) -> dict[str, str]:
    bb = r.get("backbone") or {}
    width = bb.get("width")
    return {
        "NAME": r["name"],
        "METHOD": r["method"],
        "BACKBONE": str(bb.get("arch")) + (f" w{width:g}" if isinstance(width, (int, float)) and width != 1 else ""),
        "INPUT": str(r.get("input_size", "")),
        "EPOCHS": str(r.get("epochs", "")),
        "BATCH": str(r.get("batch_size", "")),
        "MEASURED": str(r.get("measured") or "-"),
    }


def _recipes(args: argparse.Namespace) -> int:
    import yaml

    from sslhub.recipes import get_recipe, list_recipes

    if args.name:
        print(yaml.safe_dump(get_recipe(args.name), sort_keys=False), end="")
        return 0
    names = list_recipes(args.pattern)
    if not names:
        # the same rule as `sslhub list`: no match is exit status 1 (errors are 2)
        from sslhub.recipes import all_recipes
        from sslhub.suggest import did_you_mean

        print(f"no recipe matches {args.pattern!r}.{did_you_mean(args.pattern, all_recipes())}", file=sys.stderr)
        if args.json:
            print("[]")
        return 1
    if args.json or args.table:
        from sslhub.recipes import all_recipes

        recipes = all_recipes()
        if args.json:
            print(json.dumps([recipes[n] for n in names], indent=2))
            return 0
        from sslhub.cli.table import format_table

        print(format_table([_recipe_row(recipes[n]) for n in names]))
        return 0
    for name in names:
        print(name)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe on a folder of images",
                       description="Train a recipe (see `sslhub recipes`) on a folder of images and write a run "
                                   "folder: config.yaml, metrics.jsonl, curves.png, checkpoints/last.ckpt, "
                                   "model.safetensors.")  # fmt: skip
    p.add_argument("recipe", help="recipe name (see `sslhub recipes`)")
    p.add_argument("--data", required=True, metavar="DIR", help="image folder (class subfolders optional)")
    p.add_argument("--val", metavar="DIR", help="labelled image folder for the per-epoch kNN monitor")
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's; at least 1)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. optimizer.lr=0.1 (repeatable; keys and values are checked)")
    g = p.add_argument_group("shortcuts (timm-style) for common recipe keys")
    g.add_argument("-b", "--batch-size", type=int, metavar="N", help="= --set batch_size=N (per process)")
    g.add_argument("--lr", type=float, help="= --set optimizer.lr=LR (base lr at optimizer.reference_batch_size)")
    g.add_argument("--input-size", type=int, metavar="PX", help="= --set input_size=PX")
    g.add_argument("--seed", type=int, help="= --set seed=SEED")
    g.add_argument("--width", type=float, help="= --set backbone.width=W (Lightly ResNetGenerator recipes)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision: = --set amp=true/false (default: on for CUDA, off on the CPU; "
                        "--amp on the CPU uses bfloat16)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its saved config.yaml and checkpoints/last.ckpt (no --set "
                        "needed; only more --epochs, monitor_every and knn.* may change). SIGTERM/Ctrl-C during "
                        "training save a state mid-epoch that --resume continues")
    p.add_argument("--force", action="store_true", help="replace the run that --out holds (once the arguments are checked, the files sslhub "
                        "wrote there are deleted; other files stay)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--num-workers", "--workers", dest="workers", type=int, default=None, metavar="N",
                   help="DataLoader worker processes (default from the machine: 1 per 8 cores on a CPU, cores - 1 "
                        "up to 8 with a GPU)")  # fmt: skip
    p.add_argument("--augment-on", choices=("auto", "workers", "device"), default="auto",
                   help="where batched augmentation runs (auto: in the workers on CPU, on the GPU otherwise)")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (reproducible resume)")
    p.add_argument("--max-steps", type=int, metavar="N", help="cap steps per epoch (smoke tests)")
    p.add_argument("--logger", action="append", metavar="NAME",
                   help="experiment logger: tensorboard, mlflow, wandb or none (repeatable; default: tensorboard when "
                        "installed). Each is an extra: pip install 'sslhub[NAME]'")  # fmt: skip
    p.set_defaults(func=_train)

    p = sub.add_parser("recipes", help="list recipes (names, a table or JSON), or show one resolved recipe")
    p.add_argument("pattern", nargs="?", help="wildcard filter, e.g. 'simclr-*' (no match: exit status 1)")
    p.add_argument("--show", dest="name", metavar="NAME", help="print one resolved recipe as YAML")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--table", action="store_true", help="method, backbone, input size, epochs, batch, measured")
    fmt.add_argument("--json", action="store_true", help="print the resolved recipes as JSON")
    p.set_defaults(func=_recipes)
    register_preview(sub)


def _preview(args: argparse.Namespace) -> int:
    from sslhub.plots import preview

    out = preview(args.recipe, args.data, args.out, n=args.n, overrides=args.set or ())
    print(f"wrote {out}")
    return 0


def register_preview(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="draw originals beside the augmented views a recipe produces")
    p.add_argument("recipe", help="recipe name (see `sslhub recipes`)")
    p.add_argument("--data", required=True, metavar="DIR", help="image folder")
    p.add_argument("--out", required=True, help="PNG file")
    p.add_argument("-n", type=int, default=8, help="number of images (rows)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)")
    p.set_defaults(func=_preview)
