"""The repository layout page (docs/layout.md, linked from README) is true both ways: every folder and file it
names exists, and every sslhub subpackage, method-family file and backbone file is named there (a reader finds a
feature from the names alone)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICKS = re.compile(r"`([^`]+)`")


def _layout_names() -> set[str]:
    text = (ROOT / "docs" / "layout.md").read_text()
    return {n for n in TICKS.findall(text) if n.endswith(("/", ".py"))}


def test_every_named_path_exists() -> None:
    for name in sorted(_layout_names()):
        pattern = name.rstrip("/")
        hits = [*ROOT.glob(pattern), *(ROOT / "scripts").glob(pattern), *(ROOT / "sslhub").glob(f"**/{pattern}")]
        assert any(h.is_dir() == name.endswith("/") for h in hits), f"docs/layout.md names {name!r}: no such path"


def test_every_subpackage_and_family_file_is_named() -> None:
    names = _layout_names()
    sslhub = ROOT / "sslhub"
    expected = {f"{p.name}/" for p in sslhub.iterdir() if (p / "__init__.py").is_file()}
    for folder in ("methods", "backbones"):
        expected |= {p.name for p in (sslhub / folder).glob("*.py") if p.name != "__init__.py"}
    assert not expected - names, f"docs/layout.md does not name {sorted(expected - names)}"
