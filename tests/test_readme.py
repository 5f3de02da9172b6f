"""README.md and the docs' Getting started page run as written (issue 21): every ```python and ```bash block not
marked ``<!-- readme-test: skip (why) -->`` runs, top to bottom, in a fresh folder that holds what `make demo`
leaves (``runs/demo``), with the `sslhub` lines run in-process through the CLI's ``main``.

To keep it fast, only sizes change: the demo's run is one step of the demo recipe, and every ``sslhub train``
line gets ``--epochs 1 --max-steps 1 -b 8 --workers 0`` appended (later flags win).

:func:`make_demo_run` and :func:`run_pages` need nothing from the repository but the pages' text, so
tests/test_packaging.py runs them again against a wheel installed outside the repository.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the pages whose examples run as written, in this order (Getting started has the walkthrough README links to)
PAGES = ("README.md", "docs/getting-started.md")
BLOCK = re.compile(r"(<!-- readme-test: skip[^>]*-->\s*\n)?```(python|bash)\n(.*?)```", re.S)
SMALL = ["--epochs", "1", "--max-steps", "1", "-b", "8", "--workers", "0"]
# what the pages say their commands write, under runs/ (git-ignored)
WRITTEN = ("runs/mine/model.safetensors", "runs/embeddings.csv", "runs/hub_folder/README.md",
           "runs/r18_timm.safetensors", "runs/grid.png", "runs/converted.safetensors", "runs/demo.onnx",
           "runs/emb/manifest.json", "runs/emb.csv", "runs/demo_embeddings.csv")  # fmt: skip


def _blocks(page: str) -> list[tuple[str, str]]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [(lang, code) for skip, lang, code in BLOCK.findall(text) if not skip]


def _shell_value(expr: str) -> str:
    """``$(python -c "CODE")``: CODE's printed output (the only substitution the pages use)."""
    m = re.fullmatch(r'\$\(python -c "(.*)"\)', expr.strip())
    assert m, f"a page uses a shell construct the test does not know: {expr}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(m.group(1), {})
    return out.getvalue().strip()


def _run_bash(code: str, env: dict[str, str], page: str) -> None:
    from sslhub.cli import main

    for line in code.splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Z]+)=(.*)", line)
        if m:
            env[m.group(1)] = _shell_value(m.group(2))
            continue
        for name, value in env.items():
            line = line.replace(f"${name}", value)
        argv = shlex.split(line, comments=True)
        assert argv[0] == "sslhub", f"{page} runs {argv[0]!r}; the test only knows sslhub lines: {line}"
        argv = argv[1:] + (SMALL if argv[1] == "train" else [])
        with contextlib.redirect_stdout(io.StringIO()):
            code_ = main(argv)
        assert code_ == 0, f"{page} line failed with exit status {code_}: {line}"


def make_demo_run(folder: Path) -> None:
    """``folder/runs/demo`` as `make demo` leaves it (one step of the demo recipe, narrow, on the demo data)."""
    import sslhub
    from sslhub.data import demo_path

    sslhub.train("simclr-resnet-18-demo", demo_path("train"), folder / "runs" / "demo", val=demo_path("val"),
                 epochs=1, device="cpu", progress=False, max_steps_per_epoch=1,
                 overrides=["backbone.width=0.125", "batch_size=8", "monitor_every=0"])  # fmt: skip


def run_pages(folder: Path) -> None:
    """Run every page's unmarked blocks in ``folder`` (the current directory) and check what they wrote."""
    blocks = [(page, lang, code) for page in PAGES for lang, code in _blocks(page)]
    for page in PAGES:
        assert any(p == page and lang == "bash" for p, lang, _ in blocks), f"{page} has no runnable bash block"
    assert any(lang == "python" for _, lang, _ in blocks)
    env: dict[str, str] = {}
    for page, lang, code in blocks:
        if lang == "python":
            exec(compile(code, page, "exec"), {"__name__": "__readme__"})
        else:
            _run_bash(code, env, page)
    for name in WRITTEN:
        assert (folder / name).is_file(), name
    assert sorted(p.name for p in folder.iterdir()) == ["runs"]  # nothing outside runs/


@pytest.fixture()
def after_demo(tmp_path, monkeypatch):
    """A folder laid out as `make demo` leaves the repository root: runs/demo with the demo recipe's files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSLHUB_OFFLINE", "1")
    make_demo_run(tmp_path)
    return tmp_path


def test_readme_blocks_run_as_written(after_demo):
    run_pages(after_demo)
