"""MkDocs hook: the CLI reference is generated from sslhub's own argparse parsers, so it cannot go stale.

A page line ``<!-- sslhub-cli-reference -->`` becomes one section per command with its ``--help`` text.
"""

from __future__ import annotations

import argparse
from typing import Any

MARKER = "<!-- sslhub-cli-reference -->"


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(prefix, parser)]
    for action in parser._actions:  # argparse has no public API to walk subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub not in [p for _, p in out]:
                    out += _commands(sub, f"{prefix} {name}")
    return out


def _reference() -> str:
    import os

    from sslhub.cli import build_parser

    os.environ.setdefault("COLUMNS", "110")  # argparse wraps help to the terminal width: keep it stable
    parts = []
    for name, parser in _commands(build_parser(), "sslhub"):
        parser.prog = name
        parts.append(f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, _reference())
    return markdown
