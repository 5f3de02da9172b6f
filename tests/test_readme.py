"""README.md runs as written (issue 21): every ```python and ```bash block not marked
``<!-- readme-test: skip (why) -->`` runs, top to bottom, in a fresh folder that holds what `make demo` leaves
(``runs/demo``), with the `sslhub` lines run in-process through the CLI's ``main``.

To keep it fast, only sizes change: the demo's run is one step of the demo recipe, and every ``sslhub train``
line of README gets ``--epochs 1 --max-steps 1 -b 8 --workers 0`` appended (later flags win).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

import sslhub
from sslhub.cli import main
from sslhub.data import demo_path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- readme-test: skip[^>]*-->\s*\n)?```(python|bash)\n(.*?)```", re.S)
SMALL = ["--epochs", "1", "--max-steps", "1", "-b", "8", "--workers", "0"]


def _blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(lang, code) for skip, lang, code in BLOCK.findall(text) if not skip]


def _shell_value(expr: str) -> str:
    """``$(python -c "CODE")``: CODE's printed output (the only substitution README uses)."""
    m = re.fullmatch(r'\$\(python -c "(.*)"\)', expr.strip())
    assert m, f"README uses a shell construct the test does not know: {expr}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(m.group(1), {})
    return out.getvalue().strip()


def _run_bash(code: str, env: dict[str, str]) -> None:
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
        assert argv[0] == "sslhub", f"README runs {argv[0]!r}; the test only knows sslhub lines: {line}"
        argv = argv[1:] + (SMALL if argv[1] == "train" else [])
        with contextlib.redirect_stdout(io.StringIO()):
            code_ = main(argv)
        assert code_ == 0, f"README line failed with exit status {code_}: {line}"


@pytest.fixture()
def after_demo(tmp_path, monkeypatch):
    """A folder laid out as `make demo` leaves the repository root: runs/demo with the demo recipe's files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSLHUB_OFFLINE", "1")
    sslhub.train("simclr-resnet-18-demo", demo_path("train"), "runs/demo", val=demo_path("val"), epochs=1,
                 device="cpu", progress=False, max_steps_per_epoch=1,
                 overrides=["backbone.width=0.125", "batch_size=8", "monitor_every=0"])  # fmt: skip
    return tmp_path


def test_readme_blocks_run_as_written(after_demo):
    blocks = _blocks()
    assert sum(lang == "bash" for lang, _ in blocks) >= 2 and sum(lang == "python" for lang, _ in blocks) >= 1
    env: dict[str, str] = {}
    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
        else:
            _run_bash(code, env)
    # what README says the walkthrough writes, under runs/ (git-ignored), nothing in the folder itself
    for name in ("runs/mine/model.safetensors", "runs/embeddings.csv", "runs/hub_folder/README.md",
                 "runs/r18_timm.safetensors", "runs/grid.png", "runs/converted.safetensors"):  # fmt: skip
        assert (after_demo / name).is_file(), name
    assert sorted(p.name for p in after_demo.iterdir()) == ["runs"]
