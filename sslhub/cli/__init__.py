"""The ``sslhub`` command line. Each command group lives in its own module with a ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from sslhub._version import __version__

# Modules under sslhub.cli that define ``register(subparsers)``; each adds its own subcommands.
_COMMAND_MODULES = (
    "checkpoints",
    "train",
    "hub",
    "export",
    "publish",
    "evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    from sslhub.cli._help import HelpFormatter, finish

    parser = argparse.ArgumentParser(prog="sslhub", description="Model zoo and checkpoint hub for SSL vision models.",
                                     formatter_class=HelpFormatter,
                                     epilog="`sslhub COMMAND --help` shows each command's options and examples.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"sslhub {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings, errors and results; no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(f"sslhub.cli.{name}").register(sub)
    finish(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sslhub`` console script and ``python -m sslhub``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it: every progress bar, library ones included
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # one line per HTTP request from huggingface_hub's client is noise at INFO
        for name in ("httpx", "httpx2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        # Library errors already name the file and what to do; show them without a traceback.
        if args.verbose:
            raise
        print(f"sslhub {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
