"""A non-editable install ships the recipes and model cards and works from outside the source tree; its metadata,
floors and types are what a user of the wheel needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built once for the module (as `pip wheel --no-deps .` builds it)."""
    wheel_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(wheel_dir)], check=True, capture_output=True)  # fmt: skip
    return next(wheel_dir.glob("sslhub-*.whl"))


@pytest.fixture(scope="module")
def user_venv(tmp_path_factory, wheel) -> tuple[Path, Path]:
    """(python, site-packages) of a fresh venv outside the repository holding only the installed wheel (--no-deps)."""
    venv = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(purelib), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    return py, purelib


def test_wheel_ships_recipes_and_cards(tmp_path, wheel):
    site = tmp_path / "site"
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
    n_train = len(list((ROOT / "training/data/clothing10_demo/train").glob("*/*.jpg")))  # 3,381
    assert demo.is_relative_to(site) and len(list(demo.glob("*/*.jpg"))) == n_train
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


def test_wheel_metadata_is_for_users(wheel):
    """py.typed, LICENSE, classifiers and URLs ship; test and development tools are not install options."""
    import email
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.message_from_bytes(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    assert "sslhub/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "MIT"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    # every project URL shipped is one pyproject declares (today none: no public home exists yet, see pyproject.toml)
    urls = _pyproject()["project"].get("urls", {})
    assert sorted(meta.get_all("Project-URL") or []) == sorted(f"{k}, {v}" for k, v in urls.items())
    requires = meta.get_all("Requires-Dist")
    assert not [r for r in requires if "extra ==" in r and "test" in r], "the test tools are published as an extra"
    assert not {"pytest", "moto", "boto3", "lightly", "setuptools"} & {re_name(r) for r in requires}
    assert {"numpy", "pillow", "matplotlib"} <= {re_name(r) for r in requires}


def _outside_env() -> dict[str, str]:
    """This environment without PYTHONPATH (the test run's points at the checkout) and offline."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "SSLHUB_OFFLINE": "1"}


def re_name(requirement: str) -> str:
    import re

    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def test_mypy_sees_sslhubs_types_from_an_installed_wheel(tmp_path, user_venv):
    """A type checker in a user's project reads sslhub's annotations (py.typed), not Any."""
    import re

    pytest.importorskip("mypy")
    py, _ = user_venv
    script = tmp_path / "user.py"
    script.write_text(
        "import sslhub\n"
        "reveal_type(sslhub.load_pretrained)\n"
        "reveal_type(sslhub.eval_transform)\n"
        "sslhub.load_pretrained('x.safetensors', features=3)\n"  # a wrong type: only typed code catches it
    )
    p = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--python-executable", str(py),
                        "--ignore-missing-imports", str(script)], cwd=tmp_path, env=_outside_env(),
                       capture_output=True, text=True)  # fmt: skip
    assert re.search(r'Revealed type is "def \(source: (builtins\.)?str \| os\.PathLike\[Any\], \*, arch: ', p.stdout), p.stdout
    assert re.search(r'Revealed type is "def \(model: .*, input_size: (builtins\.)?int \| None =', p.stdout), p.stdout
    assert 'Argument "features" to "load_pretrained" has incompatible type "int"; expected "str"' in p.stdout, p.stdout
    assert "missing library stubs or py.typed marker" not in p.stdout


# Runs in the user's venv: the examples of README and Getting started (tests/test_readme.py's runner, loaded by path)
# and the data line of the --help examples, with the checkout nowhere on sys.path.
_FROM_WHEEL = r"""
import importlib.util, json, sys
from pathlib import Path

root, deps = Path(sys.argv[1]), json.loads(sys.argv[2])
sys.path += deps  # torch & co. after the venv's own site-packages, whose sslhub is the wheel's
import sslhub

assert Path(sslhub.__file__).is_relative_to(sys.prefix), sslhub.__file__
# the dependencies' site-packages may lie in the checkout's own .venv (make test's): any other entry there is a leak
assert not [p for p in sys.path if Path(p or ".").resolve().is_relative_to(root) and p not in deps], sys.path
spec = importlib.util.spec_from_file_location("readme_runner", root / "tests" / "test_readme.py")
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)
here = Path.cwd()
runner.make_demo_run(here)
runner.run_pages(here)

from sslhub.cli._help import D_LINE, EXAMPLES

data = Path(runner._shell_value(D_LINE.split("=", 1)[1].split("  #")[0]))
assert data.is_relative_to(sys.prefix), data  # the demo data of the install
used = {u for text in EXAMPLES.values() if D_LINE in text for u in __import__("re").findall(r"\$D/(\w+)", text)}
assert used and all(any((data / u).glob("*/*.jpg")) for u in used), (data, used)
loaded = [m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
assert not [f for f in loaded if Path(f).resolve().is_relative_to(root / "sslhub")]
print("from the wheel:", sslhub.__file__, "| demo data:", data, "| --help uses $D/" + ", $D/".join(sorted(used)))
"""


@pytest.mark.slow
def test_readme_and_help_examples_run_from_a_wheel_installed_outside_the_repository(tmp_path, user_venv):
    """A pip user's view: README's (and Getting started's) examples and the --help examples' data path work from
    the wheel, in a folder outside the repository, with the checkout not on sys.path. Dependencies come from this
    interpreter's site-packages, appended to the user's venv (a --no-deps install: no download at test time);
    appending a folder does not process its .pth files, so the checkout's editable install stays out."""
    import json
    import site

    py, _ = user_venv
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run([str(py), "-c", _FROM_WHEEL, str(ROOT), json.dumps(site.getsitepackages())], cwd=work,
                       env=_outside_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    assert "from the wheel:" in p.stdout
