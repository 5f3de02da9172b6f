"""``sslhub train`` and ``sslhub recipes``."""

from __future__ import annotations

import argparse


def _train(args: argparse.Namespace) -> int:
    from sslhub.training import train

    run = train(args.recipe, args.data, args.out, val=args.val, epochs=args.epochs, overrides=args.set or (),
                resume=args.resume, device=args.device, num_workers=args.workers, deterministic=args.deterministic,
                max_steps_per_epoch=args.max_steps, augment_on=args.augment_on, force=args.force)  # fmt: skip
    print(f"run written to {run}")
    return 0


def _recipes(args: argparse.Namespace) -> int:
    import yaml

    from sslhub.recipes import get_recipe, list_recipes

    if args.name:
        print(yaml.safe_dump(get_recipe(args.name), sort_keys=False), end="")
        return 0
    for name in list_recipes(args.pattern):
        print(name)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe on a folder of images")
    p.add_argument("recipe", help="recipe name (see `sslhub recipes`)")
    p.add_argument("--data", required=True, help="image folder (class subfolders optional)")
    p.add_argument("--val", help="labelled image folder for per-epoch kNN accuracy")
    p.add_argument("--epochs", type=int)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe field (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its saved config.yaml and checkpoints/last.ckpt (no --set "
                        "needed; only more --epochs, monitor_every and knn.* may change)")
    p.add_argument("--force", action="store_true", help="replace the run that --out holds (its run files are deleted)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--augment-on", choices=("auto", "workers", "device"), default="auto",
                   help="where batched augmentation runs (default auto: in the workers on CPU, on the GPU otherwise)")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (reproducible resume)")
    p.add_argument("--max-steps", type=int, help="cap steps per epoch (smoke tests)")
    p.set_defaults(func=_train)

    p = sub.add_parser("recipes", help="list recipes, or show one")
    p.add_argument("pattern", nargs="?", help="wildcard filter, e.g. 'simclr-*'")
    p.add_argument("--show", dest="name", help="print one resolved recipe as YAML")
    p.set_defaults(func=_recipes)
    register_preview(sub)


def _preview(args: argparse.Namespace) -> int:
    from sslhub.plots import preview

    out = preview(args.recipe, args.data, args.out, n=args.n, overrides=args.set or ())
    print(f"wrote {out}")
    return 0


def register_preview(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="draw originals beside the augmented views a recipe produces")
    p.add_argument("recipe")
    p.add_argument("--data", required=True, help="image folder")
    p.add_argument("--out", required=True, help="PNG file")
    p.add_argument("-n", type=int, default=8, help="number of images")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=_preview)
