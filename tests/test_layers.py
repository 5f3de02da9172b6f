"""The import layering of the loading code, checked on the source (ast): no import runs back up.

``sslhub.checkpoints`` (read, recognise, remap, build; local files only) sits below the hub (registry, downloads)
and below :mod:`sslhub.loading`, which puts the resolve stage in front of it. The checkpoint layer must import
neither, nor the packages above them (training, cli, evaluation, export, methods); and it must not reach into
another package's private (``_name``) helpers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "sslhub" / "checkpoints"
HIGHER = ("sslhub.hub", "sslhub.loading", "sslhub.training", "sslhub.cli", "sslhub.evaluation", "sslhub.export",
          "sslhub.methods")  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str, list[str], bool]]:
    """(line, module, imported names, inside a module-level ``__getattr__``) for every import in the file, at any
    depth (function-level imports count: they run back up all the same), and every ``importlib.import_module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lazy_lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            lazy_lines |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, [], node.lineno in lazy_lines) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative import: resolve against this package
                base = package.split(".")
                mod = ".".join(base[: len(base) - node.level + 1] + ([mod] if mod else []))
            out.append((node.lineno, mod, [a.name for a in node.names], node.lineno in lazy_lines))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):  # fmt: skip
            out.append((node.lineno, node.args[0].value, [], node.lineno in lazy_lines))
    return out


FILES = sorted(CHECKPOINTS.rglob("*.py"))


def test_the_scan_sees_the_checkpoint_layer():
    # a scan that finds no files (or no imports) would pass vacuously
    assert len(FILES) > 20 and any(m == "sslhub.checkpoints.io" for f in FILES for _, m, _, _ in _imports(f))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CHECKPOINTS)))
def test_checkpoints_import_no_higher_layer(path: Path):
    bad = [f"line {line}: {mod}" for line, mod, _, lazy in _imports(path)
           if mod.startswith(HIGHER) and not (lazy and mod == "sslhub.loading")]  # fmt: skip
    assert not bad, (
        f"{path.relative_to(ROOT)} imports a layer above sslhub.checkpoints ({'; '.join(bad)}). Move the code that "
        "needs it up (sslhub/loading.py resolves sources), or pass what it needs down as an argument"
    )


def test_only_old_paths_look_up_the_layer_above():
    """The one exception: ``__getattr__`` of the modules whose old documented names moved up (load_pretrained,
    convert, info), looked up on first use, so that importing the checkpoint layer never imports loading."""
    lazy = {str(f.relative_to(CHECKPOINTS)) for f in FILES for _, mod, _, is_lazy in _imports(f)
            if is_lazy and mod.startswith(HIGHER)}  # fmt: skip
    assert lazy == {"load.py", "convert.py", "info.py"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CHECKPOINTS)))
def test_checkpoints_use_no_other_package_private_helper(path: Path):
    own = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    bad = []
    for line, mod, names, _ in _imports(path):
        if not mod.startswith("sslhub.") or mod.rsplit(".", 1)[0] == own or mod == own:
            continue  # a sibling module of the same package may share its private helpers
        bad += [f"line {line}: {mod}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, f"{path.relative_to(ROOT)} imports another package's private helper: {'; '.join(bad)}"


def test_importing_the_checkpoint_layer_imports_no_layer_above():
    """The same at run time, in a fresh interpreter: the whole checkpoint layer and its readers load without the
    hub or sslhub.loading."""
    import subprocess
    import sys

    code = ("import sys, sslhub.checkpoints.load, sslhub.checkpoints.convert, sslhub.checkpoints.info, "
            f"sslhub.checkpoints.recognise; print(sorted(m for m in sys.modules if m.startswith({HIGHER!r})))")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
