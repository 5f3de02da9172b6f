"""``sslhub convert`` and ``sslhub info``."""

from __future__ import annotations

import argparse
import json


def _convert(args: argparse.Namespace) -> int:
    from sslhub.loading import convert

    out = convert(args.src, args.dst, force=args.force, arch=args.arch, prefix=args.prefix)
    print(f"wrote {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from sslhub.loading import info

    result = info(args.path, arch=args.arch)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0 if result.get("arch") else 1
    verbose = getattr(args, "verbose", False)
    rows: dict[str, object] = {}
    for k, v in result.items():
        if v in (None, {}, []) and k != "arch":
            continue  # nothing to say
        if k in ("metadata", "matched_on"):
            continue
        if k == "reader" and result.get("matched_on"):
            v = f"{v} ({result['matched_on']})"  # one line: which reader matched, and on what
        rows[k] = v
    width = max(len(k) for k in rows) + 2
    for k, v in rows.items():
        print(f"{k:<{width}}{v}")
    meta = result.get("metadata") or {}
    if meta:
        mwidth = max(len(k) for k in meta) + 2
        print("metadata")
        for k in sorted(meta):
            v = meta[k]
            if k == "key_order" and not verbose:
                # the saved tensor order (for bit-identical round trips): a count is what a reader needs
                try:
                    v = f"{len(json.loads(v))} keys (-v shows them)"
                except ValueError:
                    v = f"{len(str(v))} characters (-v shows them)"
            elif not verbose and isinstance(v, str) and len(v) > 160:
                v = v[:157] + "..."
            print(f"  {k:<{mwidth}}{v}")
    return 0 if result.get("arch") else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint losslessly (.ckpt <-> .safetensors <-> .pth)")
    p.add_argument("src", help="source checkpoint (path, registry name, URL, hf-hub:)")
    p.add_argument("dst", help="output file; format from its suffix (.safetensors, .ckpt, .pth)")
    p.add_argument("--force", action="store_true", help="replace an existing DST")
    p.add_argument("--arch", help="architecture to record when the tensors cannot tell")
    p.add_argument("--prefix", help="backbone prefix to record instead of the detected one")
    p.set_defaults(func=_convert)

    p = sub.add_parser("info", help="show what a checkpoint holds: layout, architecture, width, heads, metadata")
    p.add_argument("path", help="checkpoint: a path, registry name, URL or hf-hub: id")
    p.add_argument("--arch", help="architecture, when the tensors cannot tell (exit status 1 when not recognised)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_info)
