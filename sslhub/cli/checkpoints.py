"""``sslhub convert`` and ``sslhub info``."""

from __future__ import annotations

import argparse
import json


def _convert(args: argparse.Namespace) -> int:
    from sslhub.checkpoints.convert import convert

    out = convert(args.src, args.dst, force=args.force, arch=args.arch, prefix=args.prefix)
    print(f"wrote {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from sslhub.checkpoints.info import info

    result = info(args.path, arch=args.arch)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    width = max(len(k) for k in result)
    for k, v in result.items():
        if k == "metadata" and not v:
            continue
        print(f"{k:<{width}}  {v}")
    return 0 if result.get("arch") else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint losslessly (.ckpt <-> .safetensors <-> .pth)")
    p.add_argument("src", help="source checkpoint (path, registry name, URL, hf-hub:)")
    p.add_argument("dst", help="output file; format from its suffix (.safetensors, .ckpt, .pth)")
    p.add_argument("--force", action="store_true", help="replace an existing DST")
    p.add_argument("--arch", help="architecture to record when the tensors cannot tell")
    p.add_argument("--prefix", help="backbone prefix to record instead of the detected one")
    p.set_defaults(func=_convert)

    p = sub.add_parser("info", help="show what a checkpoint holds")
    p.add_argument("path")
    p.add_argument("--arch", help="architecture, when the tensors cannot tell")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)
