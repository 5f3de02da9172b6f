"""``sslhub publish``: upload a backbone to the Hugging Face Hub (or write the files with ``--dry-run DIR``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``publish`` subcommand."""
    p = sub.add_parser(
        "publish",
        help="publish a backbone to the Hugging Face Hub (model.safetensors, config.json, README.md; one commit)",
        description=(
            "Publish the backbone of a checkpoint or training run folder to the Hugging Face Hub as one commit "
            "with model.safetensors, config.json (timm-readable) and a README model card. The token comes from "
            "huggingface_hub (HF_TOKEN or `hf auth login`); HF_ENDPOINT selects another Hub."
        ),
    )
    p.add_argument("source", metavar="RUN_DIR_OR_FILE", help="checkpoint file (any format sslhub reads) or run folder")
    p.add_argument("--repo-id", required=True, help="target repo, org/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--dry-run", metavar="DIR", help="write the three files to DIR and upload nothing")
    readme = p.add_mutually_exclusive_group()
    readme.add_argument(
        "--overwrite-readme", action="store_true", help="replace a README.md that was edited or not written by sslhub"
    )
    readme.add_argument("--keep-readme", action="store_true", help="leave an existing README.md as it is")
    p.add_argument("--revision", help="branch to commit to (default main)")
    p.add_argument("--message", help="commit message")
    p.add_argument("--arch", help="architecture, when the checkpoint cannot tell")
    p.add_argument("--width", type=float, help="Lightly ResNetGenerator width, when the checkpoint cannot tell")
    p.add_argument("--prefix", help="backbone key prefix to publish instead of the evaluation copy")
    p.add_argument("--method", help="SSL method name for the card (default: from the checkpoint)")
    p.add_argument("--metrics", metavar="JSON",
                   help="measured metrics: a list, {'metrics': [...]}, or one `sslhub eval --json` result (default for a "
                        "run folder: RUN_DIR/metrics.json, where `sslhub eval` records, plus the training monitor's "
                        "last kNN and random-init baseline from RUN_DIR/metrics.jsonl)")  # fmt: skip
    p.add_argument("--license", help="license id for the card, e.g. mit, apache-2.0, cc-by-nc-4.0")
    p.add_argument("--dataset", action="append", default=[], help="training dataset id for the card (repeatable)")
    p.add_argument("--tag", action="append", default=[], help="extra card tag (repeatable)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sslhub.hub.publish import publish

    result = publish(
        args.source,
        args.repo_id,
        private=args.private,
        dry_run=args.dry_run,
        overwrite_readme=args.overwrite_readme,
        keep_readme=args.keep_readme,
        revision=args.revision,
        commit_message=args.message,
        arch=args.arch,
        width=args.width,
        prefix=args.prefix,
        method=args.method,
        metrics=args.metrics,
        license=args.license,
        datasets=args.dataset,
        tags=args.tag,
    )
    cfg = result.config.get("sslhub", {})
    what = f"{cfg.get('arch')} ({cfg.get('num_features')}-d features)"
    if result.out_dir is not None:
        print(f"wrote {', '.join(result.files)} to {result.out_dir} for {result.repo_id}: {what}; nothing uploaded")
    elif not result.changed:
        print(f"{result.repo_id} already holds exactly these files ({what}); nothing to commit")
    else:
        print(f"published {what} to {result.repo_id}: {result.commit_url}")
    if result.readme == "kept":
        print("README.md: the existing one was kept")
    return 0
