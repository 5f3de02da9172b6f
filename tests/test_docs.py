"""The documentation site builds strictly (MkDocs + mkdocstrings): the CLI reference is generated from the parsers,
and a broken reference fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "--site-dir", str(site)], cwd=config.parent, env=env, capture_output=True, text=True)  # fmt: skip


def test_docs_build_strictly_with_the_generated_cli_reference(tmp_path):
    p = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert p.returncode == 0, p.stderr
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    from sslhub.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name in commands:  # every command's own --help, as argparse prints it
        assert f"sslhub {name}" in cli and "--help" in cli, name
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "load_pretrained" in api and "eval_transform" in api and "An eval-mode" in api  # from the docstrings


def test_a_broken_reference_fails_the_build(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", repo / "docs")
    shutil.copy(ROOT / "mkdocs.yml", repo / "mkdocs.yml")
    (repo / "training").mkdir()
    shutil.copy(ROOT / "training" / "README.md", repo / "training" / "README.md")
    (repo / "sslhub").symlink_to(ROOT / "sslhub")
    page = repo / "docs" / "hub.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    p = _build(repo / "mkdocs.yml", tmp_path / "site")
    assert p.returncode != 0 and "no-such-page.md" in p.stderr + p.stdout


def test_readme_is_the_short_version_and_links_into_every_page():
    """README keeps the quick start and links the rest: every docs page is one link away, every link resolves."""
    import re

    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[\w.-]+\.md)(?:#([\w-]+))?\)", readme)
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages - {"docs/index.md"} <= {page for page, _ in links}, "a docs page README does not link"
    for page, anchor in links:
        assert page in pages, page
        if anchor:  # the heading's slug as MkDocs' toc makes it
            slugs = {re.sub(r"[^\w-]", "", h.strip().lower().replace(" ", "-"))
                     for h in re.findall(r"^#+ (.+)$", (ROOT / page).read_text(), re.M)}  # fmt: skip
            assert anchor in slugs, f"README links {page}#{anchor}, which has no such heading"
    assert len(readme.splitlines()) <= 150, "README is the short version: the long text belongs in docs/"
