"""Plain-text tables for the command line (`sslhub list`, `sslhub recipes`) that fit the terminal."""

from __future__ import annotations

import shutil

__all__ = ["format_table"]

_MIN_COL = 6  # a column narrower than this stops saying anything; shrink others first
_GAP = "  "


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 1)] + "..."


def format_table(rows: list[dict[str, str]], width: int | None = None) -> str:
    """Left-aligned table with a header line, no wider than ``width`` columns where that is possible.

    ``width`` defaults to the terminal's (``COLUMNS`` or the tty); output to a pipe or file is not clipped, so
    ``grep`` and scripts see every cell whole. Too wide a table is fitted by clipping its widest column first
    (cells end in ``...``), one character at a time, never below the column's header or 6 characters.
    """
    if not rows:
        return ""
    if width is None:
        width = shutil.get_terminal_size(fallback=(1_000_000, 24)).columns
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    floor = {c: max(len(c), _MIN_COL) for c in cols}
    excess = sum(widths.values()) + len(_GAP) * (len(cols) - 1) - width
    while excess > 0:
        shrinkable = [c for c in cols if widths[c] > floor[c]]
        if not shrinkable:
            break  # narrower than the headers themselves: let the terminal wrap
        widest = max(shrinkable, key=lambda c: widths[c])
        widths[widest] -= 1
        excess -= 1

    def line(cells: dict[str, str]) -> str:
        return _GAP.join(_clip(cells[c], widths[c]).ljust(widths[c]) for c in cols).rstrip()

    return "\n".join([line({c: c for c in cols})] + [line(r) for r in rows])
