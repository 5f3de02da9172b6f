"""A non-editable install ships the recipes and model cards and works from outside the source tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
