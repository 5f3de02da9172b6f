"""A non-editable install ships the recipes and model cards and works from outside the source tree; its metadata,
floors and types are what a user of the wheel needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_recipes_and_cards(tmp_path):
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(wheel_dir)], check=True, capture_output=True)  # fmt: skip
    wheel = next(wheel_dir.glob("sslhub-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    code = (
        "import sslhub, sslhub.recipes as r; from sslhub.hub import list_pretrained; "
        "print(sslhub.__file__); print(len(sslhub.list_recipes())); print(len(list_pretrained())); "
        "print(r.recipe_dirs()[0]); from sslhub.data import demo_path; print(demo_path('train'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    assert out[0].startswith(str(site))  # the installed copy, not the source tree
    n_templates = len(list((ROOT / "training/recipes").glob("*.yaml")))
    assert int(out[1]) >= n_templates and int(out[2]) == len(list((ROOT / "model_cards").glob("*.yaml")))
    assert out[3].startswith(str(site))
    demo = Path(out[4])  # the demo dataset ships in the wheel (issue 25 item 3)
    assert demo.is_relative_to(site) and len(list(demo.glob("*/*.jpg"))) == 960
    r = subprocess.run([str(site / "bin" / "sslhub") if (site / "bin" / "sslhub").exists() else sys.executable,
                        *([] if (site / "bin" / "sslhub").exists() else ["-m", "sslhub"]), "recipes", "simclr-*"],
                       cwd=tmp_path, env={"PYTHONPATH": str(site)}, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and "simclr-resnet-18" in r.stdout


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _release(v: str) -> tuple[int, ...]:
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def test_declared_floors_are_pinned_in_the_constraints_file():
    """`make floors` installs .ci/floors.txt: every floor pyproject declares is pinned there at exactly that version."""
    import re

    floors = {}
    for req in _pyproject()["project"]["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", req)
        assert m, f"{req!r}: declare every dependency with a tested floor (name>=version)"
        floors[m.group(1).lower().replace("_", "-")] = m.group(2)
    pins = {}
    for line in (ROOT / ".ci/floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.strip()
    assert set(pins) == set(floors)
    assert {n: _release(v) for n, v in pins.items()} == {n: _release(v) for n, v in floors.items()}


def test_every_imported_package_is_declared():
    """A third-party module imported anywhere in sslhub belongs to a declared dependency or an extra."""
    import ast
    import importlib.metadata as md
    import re

    project = _pyproject()["project"]
    reqs = list(project["dependencies"]) + [r for extra in project.get("optional-dependencies", {}).values() for r in extra]
    declared = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower().replace("_", "-") for r in reqs}
    dists = md.packages_distributions()
    missing = {}
    for path in (ROOT / "sslhub").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("sslhub", "__future__"):
                    continue
                owners = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                if not owners & declared:
                    missing.setdefault(top, str(path.relative_to(ROOT)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_wheel_metadata_is_for_users(tmp_path):
    """py.typed, LICENSE, classifiers and URLs ship; test and development tools are not install options."""
    import email
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path)], check=True, capture_output=True)  # fmt: skip
    wheel = next(tmp_path.glob("sslhub-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.message_from_bytes(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    assert "sslhub/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "MIT"
    assert "Typing :: Typed" in meta.get_all("Classifier") and len(meta.get_all("Project-URL")) >= 3
    requires = meta.get_all("Requires-Dist")
    assert not [r for r in requires if "extra ==" in r and "test" in r], "the test tools are published as an extra"
    assert not {"pytest", "moto", "boto3", "lightly", "setuptools"} & {re_name(r) for r in requires}
    assert {"numpy", "pillow", "matplotlib"} <= {re_name(r) for r in requires}


def re_name(requirement: str) -> str:
    import re

    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def test_mypy_sees_sslhubs_types_from_an_installed_wheel(tmp_path):
    """A type checker in a user's project reads sslhub's annotations (py.typed), not Any."""
    import re

    pytest.importorskip("mypy")
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(wheel_dir)], check=True, capture_output=True)  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", purelib,
                    str(next(wheel_dir.glob("*.whl")))], check=True, capture_output=True)  # fmt: skip
    script = tmp_path / "user.py"
    script.write_text(
        "import sslhub\n"
        "reveal_type(sslhub.load_pretrained)\n"
        "reveal_type(sslhub.eval_transform)\n"
        "sslhub.load_pretrained('x.safetensors', features=3)\n"  # a wrong type: only typed code catches it
    )
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--python-executable", str(py),
                        "--ignore-missing-imports", str(script)], cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert re.search(r'Revealed type is "def \(source: (builtins\.)?str \| os\.PathLike\[Any\], \*, arch: ', p.stdout), p.stdout
    assert re.search(r'Revealed type is "def \(model: .*, input_size: (builtins\.)?int \| None =', p.stdout), p.stdout
    assert 'Argument "features" to "load_pretrained" has incompatible type "int"; expected "str"' in p.stdout, p.stdout
    assert "missing library stubs or py.typed marker" not in p.stdout
