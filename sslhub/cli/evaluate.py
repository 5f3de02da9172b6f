"""``sslhub eval knn|linear|finetune`` and ``sslhub embed``."""

from __future__ import annotations

import argparse
import json
import os
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


def _random_init_seed(args: argparse.Namespace, run: Path | None) -> int:
    """The seed of the random-init baseline: ``--seed`` (linear, finetune), else, for the weights of a training
    run, the run's own seed, so that the twin is the run's untrained backbone and ``eval knn --random-init``
    gives the monitor's ``knn_top1_random_init``; else 0."""
    if args.protocol == "knn" and run is not None:
        import yaml

        try:
            return int(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")).get("seed", 0))
        except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
            return 0
    return int(getattr(args, "seed", 0) or 0)


def _eval(args: argparse.Namespace) -> int:
    from sslhub.evaluation import finetune_eval, knn_eval, linear_eval, write_results
    from sslhub.evaluation.results import format_result, record_result, run_dir_of

    _check_output(args.json if args.json != "-" else None, args.force, args.weights)
    model = _load(args)
    if args.random_init:
        model = _random_init_twin(model, _random_init_seed(args, run_dir_of(args.weights)))
    else:
        from sslhub.evaluation.finite import check_model_finite

        check_model_finite(model, args.weights, allow=args.allow_non_finite)
    names = {"dataset": args.dataset, "split": args.split, "weights": args.weights}
    kw = {**_common_kwargs(args), **names}
    if args.protocol == "knn" and (_under_torchrun() or args.faiss or not _all_folders(args.train, args.val)):
        from sslhub.evaluation.knn_scale import knn_eval_sharded

        result = knn_eval_sharded(model, args.train, args.val, k=args.k, t=args.t, use_faiss=args.faiss, **kw)
    elif args.protocol == "knn":
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
    if not _is_rank0():
        return 0  # under torchrun every rank has the result; rank 0 reports and writes it
    if args.json and args.json != "-":
        write_results(result, args.json)
    # one line for people; `--json` alone: the whole result as JSON on stdout, for programs
    print(json.dumps(result, indent=2) if args.json == "-" else format_result(result))
    run = run_dir_of(args.weights) if args.record else None
    if run is not None:
        where = record_result(result, run)
        print(f"recorded in {where} (`sslhub publish {run}` puts it on the model card)", file=sys.stderr)
    return 0


def _under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _all_folders(*paths: str) -> bool:
    return all(Path(p).is_dir() for p in paths)


def _is_dir_output(out: str) -> bool:
    """``--out DIR/`` (a trailing slash, an existing folder, or no suffix) asks for the sharded output."""
    return out.endswith(("/", os.sep)) or Path(out).is_dir() or not Path(out).suffix


def _embed(args: argparse.Namespace) -> int:
    from sslhub.evaluation import embed

    if _is_dir_output(args.out):
        from sslhub.evaluation.streaming import embed_to_shards

        model = _load(args)
        from sslhub.evaluation.finite import check_model_finite

        check_model_finite(model, args.weights, allow=args.allow_non_finite)  # before the work, not after it
        run = embed_to_shards(model, args.dir, args.out, shard_size=args.shard_size, dtype=args.dtype,
                              force=args.force, metadata={"weights": args.weights}, **_common_kwargs(args))  # fmt: skip
        if _is_rank0():
            kept = f", {run.shards_kept} kept from an earlier run" if run.shards_kept else ""
            skipped = f"; {run.skipped} unreadable image(s) skipped" if run.skipped else ""
            print(f"wrote {run.num_embeddings} embeddings of dimension {run.dim} to {args.out} ({run.shards} "
                  f"shard(s){kept}{skipped}); read them with sslhub.load_embeddings")  # fmt: skip
        return 0
    if _under_torchrun():
        raise ValueError(f"--out {args.out}: several processes cannot write one file; pass a folder (--out DIR/)")
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
    p.add_argument("--crop-pct", type=float,
                   help="center-crop fraction (default: the model's pretrained_cfg crop_pct; else 1.0 up to 64 px, "
                        "0.875 above)")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="images per step (default 256; 64 for finetune)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--num-workers", "--workers", dest="num_workers", type=int, metavar="N",
                   help="DataLoader workers (default: from the machine, sslhub/utils/machine.py)")
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
        q.add_argument("--json", metavar="OUT", nargs="?", const="-",
                       help="--json alone: print the result as JSON instead of one line; --json OUT: also write it "
                            "to this JSON file (sslhub publish --metrics reads it)")  # fmt: skip
        q.add_argument("--random-init", action="store_true",
                       help="evaluate the same architecture at random init instead (the baseline; recorded as such)")
        q.add_argument("--no-record", dest="record", action="store_false",
                       help="do not add the result to RUN_DIR/metrics.json when WEIGHTS is in a training run folder")
        if name == "knn":
            q.add_argument("--k", type=int, default=200, help="neighbours (default 200)")
            q.add_argument("--t", type=float, default=0.1, help="temperature (default 0.1)")
            q.add_argument("--faiss", action="store_true",
                           help="search the bank with FAISS (pip install faiss-cpu) instead of chunked torch top-k")
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

    p = sub.add_parser("embed", help="write embeddings of images: a shard folder, or one Lightly CSV/.safetensors/.npy",
                       description="Embed images with a model. `--out DIR/` streams fixed-size safetensors shards plus "
                       "a manifest (flat memory, resumable: rerun the same command after a crash; split over "
                       "processes under torchrun); `--out x.csv` writes Lightly's CSV in one go.")  # fmt: skip
    _model_and_data_args(p)
    p.add_argument("dir", metavar="DATA", help="image folder (class subfolders optional, searched recursively), file "
                   "list (.txt), CSV manifest (.csv with a filename/path/url column) or WebDataset tars (.tar, glob, "
                   "{000..009} pattern)")  # fmt: skip
    p.add_argument("--out", required=True, help="a folder (DIR/) for shards, or one file by suffix (.csv, "
                   ".safetensors, .npy)")  # fmt: skip
    p.add_argument("--shard-size", type=int, default=8192, help="images per shard (default 8192)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="shard vector type")
    p.set_defaults(func=_embed)

    p = sub.add_parser("export-embeddings", help="write an embedding shard folder as one Lightly CSV (or .npy, "
                       ".safetensors)", description="Write an embedding shard folder (`sslhub embed ... --out DIR/`) "
                       "as one file; the CSV is streamed, so any size fits in memory.")  # fmt: skip
    p.add_argument("shards", metavar="DIR", help="shard folder")
    p.add_argument("--out", required=True, help="output file (.csv, .safetensors, .npy)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_export_embeddings)


def _export_embeddings(args: argparse.Namespace) -> int:
    from sslhub.evaluation.shards import export_embeddings, load_embeddings

    if Path(args.out).exists() and not args.force:
        raise FileExistsError(f"{args.out} exists; pass --force to replace it")
    export_embeddings(args.shards, args.out)
    print(f"wrote {len(load_embeddings(args.shards))} embeddings to {args.out}")
    return 0
