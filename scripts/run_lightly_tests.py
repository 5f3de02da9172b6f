"""Run Lightly's own tests of its losses, heads, model utilities, transforms and schedulers against sslhub.

Only the imports are redirected: every ``lightly.loss`` in the copied test files becomes ``sslhub.losses``,
``lightly.models.modules`` -> ``sslhub.heads``, ``lightly.models.utils`` -> ``sslhub.models.utils``,
``lightly.transforms`` -> ``sslhub.transforms`` and ``lightly.utils.scheduler`` -> ``sslhub.utils.scheduler`` (the
rows of README's porting table, submodules included: ``lightly.loss.msn_loss`` -> ``sslhub.losses.msn_loss``).
Everything else the tests import (``lightly.utils.dist``, ``lightly.data``, ...) stays Lightly's. A test that fails
is a name or a behaviour sslhub lacks, or one README's "Not copied" table lists.

Usage (a Lightly source checkout or a bare git mirror of lightly-ai/lightly; nothing is downloaded; Lightly's tests
also need ``pip install pytest-mock scipy``):

    python scripts/run_lightly_tests.py /path/to/lightly [--ref v1.6.0] [-- -x -k swav]

Prints pytest's summary and one line ``lightly tests against sslhub: P passed, F failed, E errors, S skipped of N``.
The exit code is pytest's.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lightly module -> sslhub module (longest first, so submodules map before their packages)
REDIRECTS = [
    ("lightly.models.modules", "sslhub.heads"),
    ("lightly.models.utils", "sslhub.models.utils"),
    ("lightly.utils.scheduler", "sslhub.utils.scheduler"),
    ("lightly.transforms", "sslhub.transforms"),
    ("lightly.loss", "sslhub.losses"),
]
# What "losses, heads, transforms" covers in Lightly's tests folder; the helpers the tests import come along.
TEST_PATHS = ["tests/loss", "tests/models/modules", "tests/models/test_ProjectionHeads.py",
              "tests/models/test_ModelUtils.py", "tests/transforms", "tests/utils/test_scheduler.py"]  # fmt: skip
SUPPORT = ["tests/__init__.py", "tests/conftest.py", "tests/ddp_helpers.py", "tests/helpers.py", "tests/models/__init__.py",
           "tests/utils/__init__.py", "tests/loss/__init__.py"]  # fmt: skip
# What Lightly's tests import beyond sslhub's test group (pip name -> module)
TEST_DEPS = {"pytest-mock": "pytest_mock", "scipy": "scipy"}
_PATTERN = re.compile(r"\b(" + "|".join(re.escape(a) for a, _ in REDIRECTS) + r")\b")
_SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def redirect(source: str) -> str:
    """The test file with Lightly's module names of :data:`REDIRECTS` replaced by sslhub's."""
    table = dict(REDIRECTS)
    return _PATTERN.sub(lambda m: table[m.group(1)], source)


def _export(lightly: Path, ref: str, dest: Path) -> None:
    """Copy TEST_PATHS and SUPPORT from a checkout (work tree) or, with ``ref``, from its git history."""
    wanted = TEST_PATHS + SUPPORT
    if (lightly / "tests").is_dir() and not ref:
        for rel in wanted:
            src = lightly / rel
            if src.is_dir():
                shutil.copytree(src, dest / rel)
            elif src.is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
        return
    git_dir = lightly / ".git" if (lightly / ".git").exists() else lightly
    listed = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only", ref or "HEAD", "tests"],
                            check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    present = [p for p in wanted if any(f == p or f.startswith(p + "/") for f in listed)]
    tar = subprocess.run(["git", "--git-dir", str(git_dir), "archive", ref or "HEAD", *present], check=True,
                         capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")


def _lightly_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lightly")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lightly", type=Path, help="Lightly source checkout or git mirror")
    parser.add_argument("--ref", default="", help="git ref to take the tests from (default: the work tree, or HEAD)")
    parser.add_argument("--keep", type=Path, help="write the redirected tests here instead of a temporary folder")
    parser.add_argument("--baseline", action="store_true",
                        help="run the same tests against the installed lightly, imports untouched: what fails there "
                             "is the checkout's tests disagreeing with that lightly version, not sslhub")  # fmt: skip
    parser.epilog = "arguments after -- go to pytest"
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    missing = [pkg for pkg, mod in TEST_DEPS.items() if importlib.util.find_spec(mod) is None]
    if missing:  # without them whole test files fail to import, and their tests of ported names never run
        print(f"warning: Lightly's tests import {', '.join(missing)}, not installed here: the files that import them "
              f"fail to collect (pip install {' '.join(missing)})", file=sys.stderr)  # fmt: skip
    work = args.keep or Path(tempfile.mkdtemp(prefix="sslhub-lightly-tests-"))
    try:
        if args.keep and work.exists() and any(work.iterdir()):
            raise SystemExit(f"{work} is not empty; give an empty or new folder to --keep")
        _export(args.lightly, args.ref, work)
        if not args.baseline:
            for path in work.rglob("*.py"):
                path.write_text(redirect(path.read_text(encoding="utf-8")), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work), str(ROOT), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
               "--rootdir", str(work),
               *[str(work / p) for p in TEST_PATHS if (work / p).exists()], *pytest_args]  # fmt: skip
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n) for n, kind in _SUMMARY.findall(last)}
        total = sum(counts.values())
        what = "lightly " + _lightly_version() if args.baseline else "sslhub"
        print(f"lightly tests against {what}: {counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
              f"{counts.get('error', 0)} errors, {counts.get('skipped', 0)} skipped of {total}")  # fmt: skip
        return proc.returncode
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
