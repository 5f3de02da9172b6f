"""``sslhub eval knn|linear|finetune`` and ``sslhub embed``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _load(args: argparse.Namespace) -> Any:
    import sslhub

    return sslhub.load_pretrained(args.weights, arch=args.arch, width=args.width, features=args.features)


def _check_output(path: str | None, force: bool, weights: str) -> None:
    if path is None:
        return
    out = Path(path)
    if out.exists() and Path(weights).exists() and out.resolve() == Path(weights).resolve():
        raise ValueError(f"{out} is the input checkpoint; choose another output file")
    from sslhub._files import check_output_path

    check_output_path(out, force)  # a folder is an error before the work; a pipe or a device is written into


def _common_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "input_size": args.input_size,
        "batch_size": args.batch_size or 256,
        "device": args.device,
        "crop_pct": args.crop_pct,
        "num_workers": args.num_workers,
    }


def _random_init_twin(model: Any, seed: int) -> Any:
    """The same architecture as ``model`` at random init (seeded): the baseline training has to beat."""
    import torch

    from sslhub.backbones import create_backbone

    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    kwargs = {k: cfg[k] for k in ("width", "img_size") if cfg.get(k)}
    kwargs.update(cfg.get("timm_kwargs") or {})
    torch.manual_seed(seed)
    twin = create_backbone(cfg["arch"], **kwargs).eval()
    return twin


def _eval(args: argparse.Namespace) -> int:
    from sslhub.evaluation import finetune_eval, knn_eval, linear_eval, write_results
    from sslhub.evaluation.results import record_result, run_dir_of

    _check_output(args.json, args.force, args.weights)
    model = _load(args)
    if args.random_init:
        model = _random_init_twin(model, getattr(args, "seed", 0))
    else:
        from sslhub.evaluation.finite import check_model_finite

        check_model_finite(model, args.weights, allow=args.allow_non_finite)
    names = {"dataset": args.dataset, "split": args.split, "weights": args.weights}
    kw = {**_common_kwargs(args), **names}
    if args.protocol == "knn":
        result = knn_eval(model, args.train, args.val, k=args.k, t=args.t, **kw)
    elif args.protocol == "linear":
        result = linear_eval(
            model,
            args.train,
            args.val,
            epochs=args.epochs if args.epochs is not None else 100,
            lr=args.lr if args.lr is not None else 0.1,
            weight_decay=args.weight_decay,
            seed=args.seed,
            **kw,
        )
    else:
        result = finetune_eval(
            model,
            args.train,
            args.val,
            epochs=args.epochs if args.epochs is not None else 10,
            lr=args.lr if args.lr is not None else 1e-3,
            weight_decay=args.weight_decay if args.weight_decay is not None else 1e-4,
            seed=args.seed,
            layer_decay=args.layer_decay,
            **{**kw, "batch_size": args.batch_size or 64},
        )
    if args.random_init:
        result["baseline"] = "random_init"
        result["weights"] = f"random init of {args.weights}"
    if args.json:
        write_results(result, args.json)
    print(json.dumps(result, indent=2))
    run = run_dir_of(args.weights) if args.record else None
    if run is not None:
        where = record_result(result, run)
        print(f"recorded in {where} (`sslhub publish {run}` puts it on the model card)", file=sys.stderr)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from sslhub.evaluation import embed

    _check_output(args.out, args.force, args.weights)
    model = _load(args)
    from sslhub.evaluation.finite import check_model_finite

    check_model_finite(model, args.weights, allow=args.allow_non_finite)  # before the work, not after it
    feats = embed(model, args.dir, args.out, metadata={"weights": args.weights}, **_common_kwargs(args),
                  allow_non_finite=args.allow_non_finite)  # fmt: skip
    print(f"wrote {len(feats)} embeddings of dimension {feats.features.shape[1]} to {args.out}")
    return 0


def _model_and_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", metavar="WEIGHTS", help="checkpoint: anything sslhub.load_pretrained reads")
    p.add_argument(
        "--arch", help="architecture, when the checkpoint cannot tell (resnet-18, resnet18, vit_b_16, timm name)"
    )
    p.add_argument("--width", type=float, help="Lightly ResNetGenerator width, when the checkpoint cannot tell")
    p.add_argument(
        "--features",
        choices=("backbone", "embedding"),
        default="backbone",
        help="backbone features, or the Worker's num_ftrs embedding (default backbone)",
    )
    p.add_argument("--input-size", type=int, help="crop size (default: the model's; required for Lightly ResNets)")
    p.add_argument("--crop-pct", type=float, help="center-crop fraction (default 1.0 up to 64 px, else 0.875)")
    p.add_argument("--batch-size", type=int, help="images per step (default 256; 64 for finetune)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--num-workers", "--workers", dest="num_workers", type=int, metavar="N",
                   help="DataLoader workers (default: CPU cores - 1, at most 8)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--allow-non-finite", action="store_true",
                   help="evaluate/write even when the weights or results are NaN/Inf (refused by default)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a backbone: kNN, linear probe or finetuning top-1",
                       description="Evaluate a backbone on labelled image folders: kNN, linear probe or finetuning "
                                   "top-1. `sslhub eval PROTOCOL --help` shows each protocol's options.")  # fmt: skip
    proto = p.add_subparsers(dest="protocol", metavar="PROTOCOL")
    proto.required = True
    helps = {
        "knn": "weighted kNN on frozen features (Lightly's benchmark: cosine, k=200, t=0.1)",
        "linear": "linear probe on cached frozen features (SGD, cosine schedule)",
        "finetune": "finetune the backbone with a fresh linear head for a few epochs",
    }
    for name, text in helps.items():
        q = proto.add_parser(name, help=text, description=text)
        _model_and_data_args(q)
        q.add_argument("--data", "--train", dest="train", required=True, metavar="DIR",
                       help="labelled training folder (<dir>/<class>/<image>), as `sslhub train --data`")
        q.add_argument("--val", required=True, metavar="DIR", help="evaluation folder with the same class subfolders")
        q.add_argument("--dataset", help="dataset name for the result (default: the val folder's parent name)")
        q.add_argument("--split", help="split name for the result (default: the val folder's name)")
        q.add_argument("--json", metavar="OUT", help="also write the result to this JSON file (sslhub publish "
                       "--metrics reads it)")
        q.add_argument("--random-init", action="store_true",
                       help="evaluate the same architecture at random init instead (the baseline; recorded as such)")
        q.add_argument("--no-record", dest="record", action="store_false",
                       help="do not add the result to RUN_DIR/metrics.json when WEIGHTS is in a training run folder")
        if name == "knn":
            q.add_argument("--k", type=int, default=200, help="neighbours (default 200)")
            q.add_argument("--t", type=float, default=0.1, help="temperature (default 0.1)")
        else:
            default_epochs, default_lr = (100, 0.1) if name == "linear" else (10, 1e-3)
            q.add_argument("--epochs", type=int, help=f"training epochs (default {default_epochs})")
            q.add_argument("--lr", type=float, help=f"learning rate (default {default_lr})")
            q.add_argument(
                "--weight-decay",
                type=float,
                default=0.0 if name == "linear" else None,
                help=f"weight decay (default {0.0 if name == 'linear' else 1e-4})",
            )
            q.add_argument("--seed", type=int, default=0, help="seed for initialization and shuffling")
            if name == "finetune":
                q.add_argument("--layer-decay", type=float,
                               help="layer-wise LR decay for timm ViTs, as MAE/SimMIM finetune (e.g. 0.65 for ViT-B)")  # fmt: skip
        q.set_defaults(func=_eval)

    p = sub.add_parser("embed", help="write embeddings of an image folder (Lightly CSV, .safetensors or .npy)")
    _model_and_data_args(p)
    p.add_argument("dir", metavar="DIR", help="image folder (class subfolders optional)")
    p.add_argument("--out", required=True, help="output file; format from its suffix (.csv, .safetensors, .npy)")
    p.set_defaults(func=_embed)
