"""``sslhub list``, ``sslhub card`` and ``sslhub fetch``: the registry of pretrained weights on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from sslhub.cli.table import format_table


def _top1(card: Any, task: str) -> str:
    m = card.metric(task)
    return f"{m.top1:.1f}" if m else "-"


def _row(card: Any) -> dict[str, str]:
    t = card.training
    reporters = sorted({m.reported_by for m in card.metrics})
    return {
        "NAME": card.name,
        "METHOD": card.method,
        "ARCH": card.architecture + (f" w{card.width:g}" if card.width not in (None, 1.0) else ""),
        "DATA": t.data if len(t.data) <= 24 else t.data[:21] + "...",
        "EPOCHS": str(t.epochs) if t.epochs else "?",
        "LINEAR": _top1(card, "linear"),
        "KNN": _top1(card, "knn"),
        "FINETUNE": _top1(card, "finetune"),
        "REPORTED BY": ", ".join(reporters) or "-",
        # verified: against the card's sha256; first use: only against the digest recorded at the first download
        "SHA256": "verified" if card.weights.verified else "first use",
    }


def format_card(card: Any) -> str:
    """A human-readable view of one card."""
    t = card.training
    unk = "unknown"
    lines = [
        card.name,
        f"  {card.summary}",
        "",
        f"  method        {card.method}",
        f"  architecture  {card.architecture}" + (f" (width {card.width:g})" if card.width is not None else ""),
    ]
    if card.num_ftrs:
        lines.append(f"  num_ftrs      {card.num_ftrs}")
    if card.num_features:
        lines.append(f"  features      {card.num_features}-d")
    lines += [
        f"  training      {t.data}; epochs {t.epochs or unk}; batch size {t.batch_size or unk}"
        + (f"; {t.image_size} px" if t.image_size else ""),
    ]
    if t.recipe:
        lines.append(f"  recipe        {t.recipe}")
    lines.append("  metrics" + ("       none reported" if not card.metrics else ""))
    for m in card.metrics:
        lines.append(f"    {m.task:<9} top-1 {m.top1:5.1f}%  {m.dataset}  (reported by {m.reported_by})")
        lines.append(f"              {m.protocol}")
    lines.append("  files")
    for f in card.files:
        lines.append(f"    [{f.role}] {f.filename}")
        lines.append(f"      url     {f.url}")
        for u in f.mirrors:
            lines.append(f"      mirror  {u}")
        lines.append(f"      size    {f.size if f.size is not None else unk}")
        tofu = ("unknown (downloads are unverified); the first download is trusted and its sha256 recorded, later "
                "uses are checked against it")
        lines.append(f"      sha256  {f.sha256 or tofu}")
    lines.append(f"  layout        {card.source.layout}" + (f", backbone prefix {card.source.prefix!r}"
                                                             if card.source.prefix else ""))
    if card.source.code:
        lines.append(f"  code          {card.source.code}")
    if card.load_kwargs():
        lines.append("  load with     " + ", ".join(f"{k}={v!r}" for k, v in card.load_kwargs().items()))
    lines += [f"  license       {card.license}", f"  paper         {card.paper or '-'}"]
    if card.notes:
        lines.append(f"  notes         {card.notes}")
    if card.path:
        lines.append(f"  card file     {card.path}")
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    from sslhub.hub import get_card, list_pretrained

    names = list_pretrained(args.pattern, method=args.method, arch=args.arch)
    cards = [get_card(n) for n in names]
    if args.json:
        print(json.dumps([_card_dict(c) for c in cards], indent=2))
    if not cards:
        # no match is exit status 1, as in `sslhub recipes PATTERN` (errors are 2)
        from sslhub.hub import registry
        from sslhub.suggest import did_you_mean

        hint = did_you_mean(args.pattern, registry()) if args.pattern else ""
        print(f"no pretrained weights match.{hint}", file=sys.stderr)
        return 1
    if args.json:
        return 0
    print(format_table([_row(c) for c in cards]))
    return 0


def _card_dict(card: Any) -> dict[str, Any]:
    d = asdict(card)
    d["path"] = str(card.path) if card.path else None
    return d


def _card(args: argparse.Namespace) -> int:
    from sslhub.hub import resolve_card

    card = resolve_card(args.name)
    if args.json:
        print(json.dumps(_card_dict(card), indent=2))
    elif args.yaml:
        print(card.path.read_text() if card.path else "", end="")
    else:
        print(format_card(card))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from sslhub.hub import resolve_source

    path = resolve_source(args.source, progress=not getattr(args, "quiet", False), force=args.force, sha256=args.sha256,
                          verify=args.verify)
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the registered pretrained weights (no match: exit status 1)",
                       description="List the registered pretrained weights. Names follow one scheme, "
                                   "<method>-<backbone>[-<variant>].<publisher>-<data>, with the recipes' method and "
                                   "backbone names (resnet-18 = Lightly ResNetGenerator, resnet18 = torchvision).")  # fmt: skip
    p.add_argument("pattern", nargs="?", help="wildcard or substring of the name (e.g. '*in1k')")
    p.add_argument("--method", help="only this method (simclr, dino, ...)")
    p.add_argument("--arch", help="only this architecture (resnet50, resnet-18, 'vit_*')")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(func=_list)

    p = sub.add_parser("card", help="show the model card of a registered weight")
    p.add_argument("name", help="registry name (see `sslhub list`); old names still resolve")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--yaml", action="store_true", help="print the card file as it is")
    g.add_argument("--json", action="store_true", help="print the parsed card as JSON")
    p.set_defaults(func=_card)

    p = sub.add_parser("fetch", help="download a weight into the cache (checked) and print its path",
                       description="SOURCE: a registry name, an http(s) URL (presigned S3/GCS read-URLs work), "
                                   "hf-hub:org/name[@rev]. Cache: $SSLHUB_HOME (default ~/.cache/sslhub); "
                                   "SSLHUB_OFFLINE=1 uses the cache only.")
    p.add_argument("source", help="registry name, http(s) URL or hf-hub:org/name[@rev]")
    p.add_argument("--sha256", help="pin the expected sha256 (a URL's file, or a registry name whose card has none)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--verify", action="store_true",
                   help="re-hash the cached file against its expected (or first-download) sha256")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    p.set_defaults(func=_fetch)
