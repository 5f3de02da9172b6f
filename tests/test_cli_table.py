"""`sslhub list` / `sslhub recipes --table` fit the terminal (issue 21: tables were 175 columns whatever the width)."""

from __future__ import annotations

import os
import subprocess
import sys

from sslhub.cli.table import format_table

ROWS = [{"NAME": "dinov2-vitb14.fb-lvd142m", "DATA": "LVD-142M (curated web images)", "KNN": "82.1"},
        {"NAME": "simclr-resnet-18-demo", "DATA": "clothing10_demo", "KNN": "-"}]  # fmt: skip


def test_table_fits_the_width_by_clipping_the_widest_column() -> None:
    full = format_table(ROWS, width=1000).splitlines()
    assert max(map(len, full)) > 40
    fitted = format_table(ROWS, width=40).splitlines()
    assert all(len(line) <= 40 for line in fitted), fitted
    assert fitted[0].split() == ["NAME", "DATA", "KNN"]
    assert any(line.rstrip().endswith("82.1") for line in fitted)  # short columns keep their cells whole
    assert "..." in fitted[1]


def test_a_width_below_the_headers_keeps_the_headers() -> None:
    lines = format_table(ROWS, width=5).splitlines()
    assert lines[0].split() == ["NAME", "DATA", "KNN"]


def _sslhub(*args: str, columns: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    out = subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_cli_list_fits_columns_and_a_pipe_gets_whole_cells() -> None:
    narrow = _sslhub("list", columns="100")
    assert narrow and all(len(line) <= 100 for line in narrow), max(narrow, key=len)
    piped = _sslhub("list", columns=None)
    assert max(map(len, piped)) > 100  # not clipped: scripts and grep read whole cells
