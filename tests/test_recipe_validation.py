"""Every recipe validation rule, fed a bad value through each path a user takes: a recipe YAML file, a run's saved
``config.yaml`` on ``--resume``, and a recipe dict given to ``sslhub.train``. (``--set`` is tested in test_cli.py.)

Each case must fail at once with exit code 2 (or a ``RecipeError``), a message naming the file and the key, and
nothing trained or changed. Every run is tiny and capped at one step, so a check that lets a value through shows
up as a run that succeeded, not as a long training."""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import sslhub
from sslhub import recipes
from sslhub.cli import main
from sslhub.recipes import RecipeError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini/train"
LIMIT = ["--epochs", "1", "--max-steps", "1", "--device", "cpu", "--num-workers", "0"]

# A recipe file as a user writes one (training/recipes/<method>.yaml): tiny, one epoch, no monitor.
TEMPLATE: dict[str, Any] = {
    "method": "simclr",
    "backbones": ["resnet-9"],
    "backbone": {"width": 0.0625},
    "model": {"out_dim": 8, "temperature": 0.5},
    "transform": {"name": "SimCLRTransform", "args": {}},
    "input_size": 32,
    "epochs": 1,
    "batch_size": 8,
    "optimizer": {"name": "sgd", "lr": 0.06, "lr_scaling": "linear", "reference_batch_size": 256, "momentum": 0.9,
                  "weight_decay": 0.0005, "betas": [0.9, 0.999]},
    "schedule": {"warmup_epochs": 0, "min_lr_ratio": 0.0},
    "knn": {"k": 5, "t": 0.1},
    "sync_batchnorm": False,
    "seed": 1,
    "monitor_every": 0,
    "worker": None,
}  # fmt: skip

# (rule, changes (dotted path -> bad value), text the message must hold). Every rule of sslhub/recipes/schema.py:
# each type, null where a value is required, choices, each range rule, non-finite numbers, sections that are not
# mappings, keys of the open sections (method and transform signatures) and their derived rules, unknown names.
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("type number", {"optimizer.lr": "fast"}, "optimizer.lr='fast': expected a number"),
    ("type integer", {"seed": 1.5}, "seed=1.5: expected an integer"),
    ("type bool", {"sync_batchnorm": 3}, "sync_batchnorm=3: expected true or false"),
    ("type string", {"optimizer.lr_scaling": 2}, "optimizer.lr_scaling=2: expected a string"),
    ("type list", {"optimizer.betas": 0.9}, "optimizer.betas=0.9: expected a list"),
    ("bool is not a number", {"optimizer.lr": True}, "optimizer.lr=True: expected a number"),
    ("required", {"optimizer.momentum": None}, "optimizer.momentum=None: a value is required"),
    ("choices", {"optimizer.name": "sdg"}, "optimizer.name='sdg': use one of sgd, adamw, lars, lamb"),
    ("positive", {"batch_size": 0}, "batch_size=0: must be > 0"),
    ("non_negative", {"optimizer.weight_decay": -0.1}, "optimizer.weight_decay=-0.1: must be >= 0"),
    ("probability", {"optimizer.momentum": 1.5}, "optimizer.momentum=1.5: must be in [0, 1]"),
    ("at_least_1", {"epochs": 0}, "epochs=0: must be >= 1"),
    ("finite (inf)", {"optimizer.lr": math.inf}, "optimizer.lr=inf: must be > 0"),
    ("finite (nan)", {"schedule.warmup_epochs": math.nan}, "schedule.warmup_epochs=nan: must be >= 0"),
    ("section mapping", {"knn": 3}, "knn=3: expected a mapping"),
    ("section not null", {"optimizer": None}, "optimizer=None: a value is required"),
    ("model key", {"model.temprature": 0.1}, "model.temprature is not one of the arguments of SimCLR"),
    ("model type from signature", {"model.temperature": "warm"}, "model.temperature='warm': expected a number"),
    ("model probability", {"method": "moco", "model": {"out_dim": 8, "memory_bank_size": 16, "momentum_start": 1.5}},
     "model.momentum_start=1.5: must be in [0, 1]"),
    ("transform arg", {"transform.args.gausian_blur": 0.0},
     "transform.args.gausian_blur is not one of the arguments of SimCLRTransform"),
    ("transform probability", {"transform.args.gaussian_blur": 1.5}, "transform.args.gaussian_blur=1.5: must be in [0, 1]"),
    ("backbone", {"backbone.width": -1}, "backbone.width=-1: must be > 0"),
    ("method name", {"method": "simclrr"}, "method='simclrr' is not a training method"),
    ("transform name", {"transform.name": "SimCLRTransfrom"}, "transform.name='SimCLRTransfrom' is not a transform"),
]  # fmt: skip
IDS = [c[0] for c in CASES]


def _with(recipe: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    r = copy.deepcopy(recipe)
    for path, value in changes.items():
        node = r
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 images in 2 class folders: one batch."""
    d = tmp_path_factory.mktemp("data")
    for cls in sorted(p for p in DATA.iterdir() if p.is_dir())[:2]:
        (d / cls.name).mkdir()
        for f in sorted(cls.glob("*.jpg"))[:4]:
            shutil.copy(f, d / cls.name / f.name)
    return d


@pytest.fixture()
def recipe_dir(tmp_path, monkeypatch) -> Path:
    """A recipe folder that holds only the files a test writes."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    monkeypatch.setattr(recipes, "recipe_dirs", lambda: [folder])
    recipes._templates.cache_clear()
    yield folder
    recipes._templates.cache_clear()


def test_the_template_itself_is_valid(recipe_dir, data, tmp_path, capsys):
    """The baseline of the cases below: unchanged, the file trains (one step) and exits 0."""
    (recipe_dir / "simclr.yaml").write_text(yaml.safe_dump(TEMPLATE, sort_keys=False))
    recipes.validate_recipe(recipes.get_recipe("simclr-resnet-9"), strict=True)
    assert main(["train", "simclr-resnet-9", "--data", str(data), "--out", str(tmp_path / "run"), *LIMIT]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file(), capsys.readouterr().err


@pytest.mark.parametrize("rule, changes, text", CASES, ids=IDS)
def test_bad_values_in_a_recipe_file_fail_at_once(recipe_dir, data, tmp_path, capsys, rule, changes, text):
    bad = _with(TEMPLATE, changes)
    path = recipe_dir / f"{bad['method']}.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    name = f"{bad['method']}-resnet-9"
    out = tmp_path / "run"
    code = main(["train", name, "--data", str(data), "--out", str(out), *LIMIT])
    err = capsys.readouterr().err
    assert code == 2, (rule, err)
    assert text in err and str(path) in err and f"recipe {name!r}" in err, err
    assert "Traceback" not in err and not out.exists()  # nothing was started


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory) -> Path:
    """A real one-step run whose config.yaml the resume cases edit."""
    recipe = {**_with(TEMPLATE, {}), "backbone": {"arch": "resnet-9", "width": 0.0625}, "name": "simclr-resnet-9"}
    del recipe["backbones"]
    run = sslhub.train(recipe, data, tmp_path_factory.mktemp("runs") / "run", max_steps_per_epoch=1, progress=False,
                       device="cpu")  # fmt: skip
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return run


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("rule, changes, text", CASES, ids=IDS)
def test_bad_values_in_a_saved_config_fail_the_resume(finished_run, data, tmp_path, capsys, rule, changes, text):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["recipe"] = _with(cfg["recipe"], changes)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    before = _snapshot(run)
    code = main(["train", "simclr-resnet-9", "--data", str(data), "--out", str(run), "--resume", "--device", "cpu",
                 "--num-workers", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, (rule, err)
    assert text in err and str(run / "config.yaml") in err and "--resume" in err, err
    assert "Traceback" not in err
    assert _snapshot(run) == before  # the run is left as it was


@pytest.mark.parametrize("rule, changes, text", CASES, ids=IDS)
def test_bad_values_in_a_recipe_dict_are_refused(finished_run, data, tmp_path, rule, changes, text):
    recipe = yaml.safe_load((finished_run / "config.yaml").read_text())["recipe"]
    with pytest.raises(RecipeError) as e:
        sslhub.train(_with(recipe, changes), data, tmp_path / "run", max_steps_per_epoch=1, progress=False, device="cpu")
    assert text in str(e.value)
    assert not (tmp_path / "run" / "model.safetensors").exists()
