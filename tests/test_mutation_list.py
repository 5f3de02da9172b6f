"""scripts/mutation_check.py stays usable: every mutation still names source text that occurs exactly once, and
tests that exist (the run itself takes ~15 minutes, so the suite does not run it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "mutation_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("mutation_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation_check", mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_every_mutation_applies_once_and_names_existing_tests():
    mod = _module()
    assert len(mod.MUTATIONS) >= 10 and len({m.name for m in mod.MUTATIONS}) == len(mod.MUTATIONS)
    for m in mod.MUTATIONS:
        text = (ROOT / m.file).read_text()
        assert text.count(m.old) == 1, (m.name, m.file)
        assert m.new != m.old and text.replace(m.old, m.new) != text
        files = [t for t in m.tests if t.startswith("tests/")]
        assert files and all((ROOT / f).is_file() for f in files), m.name


def test_list_and_unknown_names_from_the_command_line():
    p = subprocess.run([sys.executable, str(SCRIPT), "--list", "--only", "bank"], capture_output=True, text=True,
                       timeout=60, check=False)  # fmt: skip
    assert p.returncode == 0 and p.stdout.startswith("memory bank wrap:") and "test_losses.py" in p.stdout
    p = subprocess.run([sys.executable, str(SCRIPT), "--only", "no-such-feature"], capture_output=True, text=True,
                       timeout=60, check=False)  # fmt: skip
    assert p.returncode == 2 and "no mutation matches" in p.stderr
