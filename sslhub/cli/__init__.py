"""The ``sslhub`` command line. Each command group lives in its own module with a ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
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
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error (or SSLHUB_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(f"sslhub.cli.{name}").register(sub)
    _add_debug_everywhere(parser)
    finish(parser)
    return parser


def _add_debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept ``--debug`` after the command too (``sslhub convert ... --debug``), in every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in set(action.choices.values()):
                if "--debug" not in p._option_string_actions:
                    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                _add_debug_everywhere(p)


def _stdout_closed() -> bool:
    """True when stdout is a pipe whose reader went away (``sslhub recipes | head``)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        closed = any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows), or stdout is not a real file
        closed = False
    if closed:  # the interpreter flushes stdout again at exit; point it at /dev/null so that this stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return closed


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sslhub`` console script and ``python -m sslhub``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_before = os.environ.get("TQDM_DISABLE")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it: every progress bar, library ones included
    try:
        return _run(args)
    finally:  # main() called in-process (scripts, tests) leaves the environment as it found it
        if quiet_before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet_before


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # one line per HTTP request from huggingface_hub's client is noise at INFO
        for name in ("httpx", "httpx2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    from sslhub.cli.errors import EXPECTED, debug_enabled, report

    debug = debug_enabled(getattr(args, "debug", False))
    if hasattr(signal, "SIGXFSZ"):  # over `ulimit -f`, writes fail with EFBIG (reported) instead of killing us
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # main() called from a thread other than the main one
            pass
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not as noise at interpreter exit
        return code
    except BrokenPipeError as e:
        if _stdout_closed():
            return 141  # 128 + SIGPIPE, what a shell reports for a reader that stopped early
        return report(e, args.command, debug)
    except KeyboardInterrupt:  # `sslhub train` says what it saved itself; elsewhere outputs are written atomically
        print(f"sslhub {args.command}: interrupted; no output file was left half-written (outputs are written "
              "atomically), so run the command again", file=sys.stderr)  # fmt: skip
        return 130
    except EXPECTED as e:
        return report(e, args.command, debug)
    # anything else is a bug: Python prints its traceback


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
