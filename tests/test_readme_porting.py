"""The "Porting from LightlySSL" tables (docs/porting-lightlyssl.md, linked from README) are true: every sslhub
name in them imports, every Lightly name exists in the installed lightly, "all" rows really cover every public
Lightly name not listed elsewhere, and nothing listed as not copied exists in sslhub after all."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

pytest.importorskip("lightly")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "porting-lightlyssl.md"
TICKS = re.compile(r"`([^`]+)`")


def _section() -> str:
    text = PAGE.read_text()
    start = text.index("# Porting from LightlySSL")
    end = text.index("\n## ", start + 1)  # the tables end where the page's next section starts
    return text[start:end]


def _rows(table: str) -> list[list[str]]:
    rows = [line.strip().strip("|").split("|") for line in table.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row] for row in rows]


def _tables() -> tuple[list[list[str]], list[list[str]]]:
    ported, not_copied = _section().split("Not copied:")
    return _rows(ported), _rows(not_copied)


def _public(module_name: str) -> set[str]:
    """Public classes and functions that the Lightly module defines or re-exports from lightly."""
    module = importlib.import_module(module_name)
    return {n for n, o in vars(module).items() if not n.startswith("_") and (inspect.isclass(o) or inspect.isfunction(o))
            and getattr(o, "__module__", "").startswith("lightly")}  # fmt: skip


def _pairs(names_cell: str) -> list[tuple[str, str]]:
    """(Lightly name, sslhub name) of a names cell: ``A`` or ``A`` -> ``B``, separated by commas."""
    pairs = []
    for entry in names_cell.removeprefix("all").split(","):
        names = TICKS.findall(entry.split("(")[0] if "->" in entry else entry)
        if "->" in entry:
            pairs.append((names[0], names[1]))
        elif names:
            pairs.append((names[0], names[0]))
    return pairs


def test_tables_parse() -> None:
    ported, not_copied = _tables()
    assert len(ported) >= 10 and all(len(r) == 3 for r in ported)
    assert len(not_copied) >= 5 and all(len(r) == 3 for r in not_copied)


def test_listed_names_exist_on_both_sides() -> None:
    ported, _ = _tables()
    for lightly_cell, sslhub_cell, names_cell in ported:
        lightly_module = importlib.import_module(TICKS.findall(lightly_cell)[0])
        sslhub_module = importlib.import_module(TICKS.findall(sslhub_cell)[0])
        pairs = _pairs(names_cell)
        assert pairs, names_cell
        for lightly_name, sslhub_name in pairs:
            assert hasattr(lightly_module, lightly_name), (lightly_module.__name__, lightly_name)
            assert hasattr(sslhub_module, sslhub_name), (sslhub_module.__name__, sslhub_name)


def test_all_rows_cover_every_public_lightly_name() -> None:
    ported, not_copied = _tables()
    excluded: dict[str, set[str]] = {}
    for lightly_cell, names_cell, _ in not_copied:
        excluded.setdefault(TICKS.findall(lightly_cell)[0], set()).update(TICKS.findall(names_cell))
    for lightly_cell, _, names_cell in ported:
        excluded.setdefault(TICKS.findall(lightly_cell)[0], set()).update(n for n, _ in _pairs(names_cell))
    for lightly_cell, sslhub_cell, names_cell in ported:
        if not names_cell.startswith("all"):
            continue
        lightly_name, sslhub_module = TICKS.findall(lightly_cell)[0], importlib.import_module(TICKS.findall(sslhub_cell)[0])
        explicit = {n for n, _ in _pairs(names_cell)}
        expected = (_public(lightly_name) - excluded[lightly_name]) | explicit
        missing = sorted(n for n in expected if not hasattr(sslhub_module, n))
        assert not missing, f"{lightly_name} -> {sslhub_module.__name__}: the page says all, missing {missing}"


def test_not_copied_names_exist_in_lightly_and_not_in_sslhub() -> None:
    ported, not_copied = _tables()
    counterparts: dict[str, list[str]] = {}
    for lightly_cell, sslhub_cell, _ in ported:
        counterparts.setdefault(TICKS.findall(lightly_cell)[0], []).append(TICKS.findall(sslhub_cell)[0])
    for lightly_cell, names_cell, why in not_copied:
        lightly_name = TICKS.findall(lightly_cell)[0]
        module = importlib.import_module(lightly_name)
        assert why, names_cell
        for name in TICKS.findall(names_cell):
            assert hasattr(module, name), (lightly_name, name)
            for sslhub_name in counterparts.get(lightly_name, []):
                assert not hasattr(importlib.import_module(sslhub_name), name), (
                    f"the page lists {name} as not copied, but {sslhub_name} has it: move it to the ported table")
