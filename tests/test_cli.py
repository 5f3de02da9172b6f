"""The command line as a newcomer meets it: validated --set, errors that say what to do, help with examples,
one naming scheme, eval -> publish as one flow, readable pictures. Every check runs ``python -m sslhub`` (or its
``main``) and looks at what a user sees: exit status, message text, files on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sslhub.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini"
RECIPE = "simclr-resnet-18-mini"
# every test that may train gets a step limit and a tiny network
LIMIT = ("--epochs", "1", "--max-steps", "1", "--width", "0.0625", "--device", "cpu", "--num-workers", "0")


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "SSLHUB_OFFLINE": "1"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)  # fmt: skip


def _no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr, p.stderr


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """2 classes x 8 training and 4 validation images of the embedded data set."""
    root = tmp_path_factory.mktemp("tiny")
    for split, n in (("train", 8), ("val", 4)):
        for cls in ("hat", "shoes"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((DATA / split / cls).iterdir())[:n]:
                shutil.copy(f, root / split / cls / f.name)
    return root


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One epoch of the README's recipe with the timm-style shortcuts (the recipe warms up for 1 epoch)."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    p = cli("train", RECIPE, "--data", str(tiny_data / "train"), "--val", str(tiny_data / "val"), "--out", str(out),
            "--epochs", "1", "-b", "4", "--width", "0.125", "--max-steps", "1", "--seed", "3", "--no-amp",
            "--set", "monitor_every=1", "--set", "knn.k=5", "--num-workers", "0")  # fmt: skip
    assert p.returncode == 0, p.stderr
    return out, p


# ------------------------------------------------------------------------------------------ 1. validated recipes


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "bacth_size=32"], ["'bacth_size' is not a recipe key", "Did you mean batch_size"]),
        (["--set", "optimizer.lr=abc"], ["optimizer.lr=abc", "expected a number"]),
        (["--set", "input_size=-3"], ["input_size=-3", "must be > 0"]),
        (["--input-size", "-3"], ["input_size=-3", "must be > 0"]),
        (["--epochs", "0"], ["--epochs 0", "at least 1 epoch"]),
        (["--set", "optimizer.name=sdg"], ["optimizer.name=sdg", "sgd, adamw", "Did you mean sgd"]),
    ],
)
def test_set_typos_and_bad_values_fail_at_once_naming_the_key(tmp_path, args, expected):
    out = tmp_path / "run"
    # a step limit first (a case's own --epochs comes later and wins): a check that lets a bad value through
    # makes this one short run, not a full training
    p = cli("train", RECIPE, "--data", str(DATA / "train"), "--out", str(out), *LIMIT, *args)
    assert p.returncode == 2, p.stderr
    for text in expected:
        assert text in p.stderr
    _no_traceback(p)
    assert not out.exists()  # nothing was started


def test_set_checks_model_transform_and_backbone_keys_against_the_code(tmp_path, capsys):
    base = ["train", RECIPE, "--data", str(DATA / "train"), "--out", str(tmp_path / "run"), *LIMIT]
    cases = {
        "backbone.widht=0.125": "Did you mean backbone.width",
        "transform.args.gausian_blur=0": "Did you mean transform.args.gaussian_blur",  # SimCLRTransform's signature
        "transform.args.gaussian_blur=1.5": "must be in [0, 1]",
        "model.temprature=0.1": "Did you mean model.temperature",  # the SimCLR method class's signature
        "model.temperature=warm": "expected a number",
    }
    for item, text in cases.items():
        assert main([*base, "--set", item]) == 2, item
        assert text in capsys.readouterr().err, item
    assert not (tmp_path / "run").exists()


def test_every_shipped_recipe_is_described_by_the_schema():
    """The contract for new recipe keys: a new section or key goes into sslhub/recipes/schema.py (one entry), a new
    method's or transform's arguments need no edit (they are read from the class signatures)."""
    from sslhub.recipes import all_recipes
    from sslhub.recipes.schema import validate_recipe

    for name, recipe in all_recipes().items():
        validate_recipe(recipe, strict=True)
    with_compile = {**all_recipes()[RECIPE], "compile": {"mode": "max-autotune"}}
    with pytest.raises(ValueError, match="top-level key 'compile' is not described in sslhub/recipes/schema.py"):
        validate_recipe(with_compile, strict=True)


def test_nullable_sections_take_null_on_the_command_line_and_nowhere_else():
    """`--set worker=null` trains the plain model (scripts/bench_vs_lightly.py passes it); other sections need a
    mapping, and the fast-path section and LARS options are described."""
    from sslhub.recipes import get_recipe
    from sslhub.recipes.schema import RecipeError

    assert get_recipe("simclr-resnet-18", ["worker=null"])["worker"] is None
    assert get_recipe("simclr-resnet-18", ["optimizer.name=lars", "optimizer.clip_lr=true", "fast.bf16=true"])["fast"]
    for bad, msg in (("optimizer=null", "a value is required"), ("worker=3", "expected a mapping"),
                     ("fast.bff16=true", "Did you mean fast.bf16"), ("optimizer.name=lion", "lars, lamb")):  # fmt: skip
        with pytest.raises(RecipeError, match=msg):
            get_recipe("simclr-resnet-18", [bad])


def test_schema_extends_with_one_entry_and_new_methods_need_none(monkeypatch):
    from sslhub.methods import METHODS, SimCLR
    from sslhub.recipes import all_recipes, apply_overrides
    from sslhub.recipes.schema import SECTIONS, Key, RecipeError, register_section, validate_recipe

    monkeypatch.setitem(SECTIONS, "compile", {})  # restored after the test
    register_section("compile", {"mode": Key((str,), choices=("default", "max-autotune"))})
    recipe = {**all_recipes()[RECIPE], "compile": {"mode": "default"}}
    validate_recipe(recipe, strict=True)
    assert apply_overrides(recipe, ["compile.mode=max-autotune"])["compile"]["mode"] == "max-autotune"
    with pytest.raises(RecipeError, match="use one of default, max-autotune"):
        apply_overrides(recipe, ["compile.mode=fast"])

    class NewMethod(SimCLR):  # a method added later: its model: keys are its signature
        def __init__(self, backbone, num_features, out_dim=128, sharpness=0.5):
            super().__init__(backbone, num_features, out_dim=out_dim)

    monkeypatch.setitem(METHODS, "newmethod", NewMethod)
    new = {**all_recipes()[RECIPE], "method": "newmethod", "model": {"out_dim": 64, "sharpness": 0.1}}
    validate_recipe(new)
    assert apply_overrides(new, ["model.sharpness=0.3"])["model"]["sharpness"] == 0.3
    with pytest.raises(RecipeError, match="Did you mean model.sharpness"):
        apply_overrides(new, ["model.sharpnes=0.3"])
    with pytest.raises(RecipeError, match="model.temperature is not one of the arguments of NewMethod"):
        validate_recipe({**new, "model": {"temperature": 0.1}})


def test_train_shortcuts_warmup_warning_and_resolved_config(run):
    out, p = run
    cfg = yaml.safe_load((out / "config.yaml").read_text())["recipe"]
    assert cfg["batch_size"] == 4 and cfg["backbone"]["width"] == 0.125 and cfg["seed"] == 3 and cfg["amp"] is False
    assert cfg["knn"]["k"] == 5
    assert "resolved recipe in" in p.stderr and "width 0.125" in p.stderr  # one line at start, not the YAML
    assert "schedule.warmup_epochs=1 is more than half of epochs=1" in p.stderr
    for name in ("model.safetensors", "metrics.jsonl", "curves.png", "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "knn_top1" in rows[-1] and "knn_top1_random_init" in rows[0]  # the monitor measured the baseline
    from PIL import Image

    assert Image.open(out / "curves.png").size == (1600, 1000)
    assert "monitor: train features" in p.stderr, p.stderr  # the monitor shows progress


# ------------------------------------------------------------------------------------------ 3. errors that help


def test_mistyped_recipe_names_suggest_the_closest_first(tmp_path):
    p = cli("recipes", "--show", "simclr-resnet18-mini")
    assert p.returncode == 2 and "Did you mean 'simclr-resnet-18-mini'," in p.stderr
    p = cli("train", "mocov2-resnet-18", "--data", str(DATA / "train"), "--out", str(tmp_path / "r"), *LIMIT)
    assert p.returncode == 2 and "Did you mean 'moco-resnet-18'," in p.stderr  # method alias, then separators
    _no_traceback(p)


def test_mistyped_local_path_is_no_such_file_with_suggestions(tmp_path, monkeypatch, capsys):
    (tmp_path / "checkpoint.ckpt").write_bytes(b"not really")
    p = cli("info", "checkpont.ckpt", cwd=tmp_path)
    assert p.returncode == 2
    assert "checkpont.ckpt: no such file. Did you mean 'checkpoint.ckpt'?" in p.stderr
    assert "registered" not in p.stderr
    _no_traceback(p)
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "model.safetensors").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert main(["info", "runn1/model.safetensors"]) == 2  # a typo in the folder
    assert "Did you mean 'run1/model.safetensors'?" in capsys.readouterr().err
    assert main(["eval", "knn", "simclr-resnet5", "--data", "d", "--val", "v"]) == 2  # a mistyped registry name
    assert "'simclr-resnet50.lightly-in1k'" in capsys.readouterr().err


def test_registry_names_follow_the_recipe_scheme_and_old_names_still_resolve():
    p = cli("card", "mocov2-resnet50.lightly-in1k")
    assert p.returncode == 0 and p.stdout.startswith("moco-resnet50.lightly-in1k\n")
    assert "old name of moco-resnet50.lightly-in1k" in p.stderr
    p = cli("list", "--arch", "resnet-18")  # resnet-18 = Lightly ResNetGenerator, as in recipes
    assert p.returncode == 0 and "simclr-resnet-18-d16.lightly-zoo" in p.stdout and "resnet50" not in p.stdout
    from sslhub.hub import DEPRECATED_NAMES, get_card, registry

    for old, new in DEPRECATED_NAMES.items():
        assert get_card(old).name == new
    for name, card in registry().items():
        assert card.path.stem == name
        if card.architecture.startswith("resnet-"):  # ResNetGenerator cards carry the recipe backbone name
            assert name.startswith(f"{card.method}-{card.architecture}-") or name.startswith(f"{card.method}-{card.architecture}.")


# ------------------------------------------------------------------------------------------ 4. help and listings


def test_every_command_has_a_description_argument_help_and_examples():
    import argparse

    def walk(parser, path):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from walk(sub, f"{path} {name}".strip())
                return
        yield path, parser

    commands = dict(walk(build_parser(), ""))
    assert {"train", "recipes", "info", "convert", "export", "publish", "eval knn", "eval linear", "list"} <= set(commands)
    for path, parser in commands.items():
        assert parser.description, path
        assert "examples:" in (parser.epilog or ""), path
        for a in parser._actions:
            assert a.help, f"{path}: {a.option_strings or a.dest} has no help"
    p = cli("train", "--help")
    assert p.returncode == 0 and "examples:" in p.stdout and "(default: auto)" in p.stdout
    assert "--num-workers N" in p.stdout and "--workers" not in p.stdout  # one name; the old one is hidden
    p = cli("eval", "knn", "--help")
    assert "--data DIR" in p.stdout and "--train " not in p.stdout and "(default 200)" in p.stdout
    assert "(default: True)" not in p.stdout


def test_old_option_spellings_still_parse():
    args = build_parser().parse_args(["train", RECIPE, "--data", "d", "--out", "o", "--workers", "3"])
    assert args.workers == 3
    args = build_parser().parse_args(["eval", "knn", "w.safetensors", "--train", "t", "--val", "v", "--workers", "2"])
    assert args.train == "t" and args.num_workers == 2


def test_recipes_table_json_natural_order_and_no_match_status():
    p = cli("recipes", "simclr-resnet-*", "--table")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["NAME", "METHOD", "BACKBONE", "INPUT", "EPOCHS", "BATCH", "MEASURED"]
    names = [line.split()[0] for line in lines[1:]]
    assert names.index("simclr-resnet-9") < names.index("simclr-resnet-18") < names.index("simclr-resnet-50")
    mini = next(line for line in lines if line.startswith(RECIPE + " "))
    assert "resnet-18 w0.25" in mini and "not above random init" in mini  # issue 21: 25.5% did not reproduce
    demo = next(line for line in lines if line.startswith("simclr-resnet-18-demo "))
    assert "resnet-18 w0.25" in demo and "seeds 1-3" in demo  # the demo's measured line: over seeds
    p = cli("recipes", "dino-*", "--json")
    assert p.returncode == 0 and all(r["method"].startswith("dino") for r in json.loads(p.stdout))
    for cmd in (["recipes", "nothing-like-this"], ["list", "nothing-like-this"]):  # no match: 1 (errors: 2)
        p = cli(*cmd)
        assert p.returncode == 1 and "no " in p.stderr and p.stdout.strip() in ("", "[]"), cmd


# ------------------------------------------------------------------------------------------ info, export, convert


# These run ``main`` in the test process: each ``python -m sslhub`` that imports torch costs seconds, and the
# subprocess path (exit status, stderr, no traceback) is covered above with the same entry point.


def test_info_summarises_the_header_and_export_offers_what_works(run, tmp_path, capsys):
    out, _ = run
    assert main(["info", str(out / "model.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "arch             resnet-18" in text and "recipe           " + RECIPE in text
    assert len(text.splitlines()) < 40 and max(len(line) for line in text.splitlines()) < 200
    assert main(["export", str(out / "model.safetensors"), "--to", "timm", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert f"sslhub convert {out / 'model.safetensors'} backbone.safetensors" in err
    assert "sslhub publish" in err and "simclr-resnet18" in err


def test_info_on_a_converted_timm_convnext_uses_the_recorded_architecture(tmp_path, capsys):
    import timm
    import torch

    torch.save(timm.create_model("convnext_atto", num_classes=0).state_dict(), tmp_path / "cnx.pth")
    assert main(["convert", str(tmp_path / "cnx.pth"), str(tmp_path / "cnx.safetensors"), "--arch", "convnext_atto"]) == 0
    out, err = capsys.readouterr()
    assert out.count("wrote") == 1 and "wrote" not in err  # said once
    assert main(["info", str(tmp_path / "cnx.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "could not recognise" not in text and "convnext_atto" in text and "feature_dim      320" in text
    # the saved tensor order is summarised, not dumped (126 names); -v shows it
    assert "key_order        126 keys (-v shows them)" in text and '["' not in text
    assert main(["info", str(tmp_path / "cnx.safetensors"), "-v"]) == 0
    assert '["stem.0.weight", ' in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ 5. eval -> publish


def test_eval_results_land_in_the_run_and_publish_shows_them(run, tiny_data, tmp_path, capsys):
    out, _ = run
    weights = str(out / "model.safetensors")
    common = ["--data", str(tiny_data / "train"), "--val", str(tiny_data / "val"), "--input-size", "32", "--k", "5"]
    p = cli("-q", "eval", "knn", weights, *common, "--json", str(tmp_path / "knn.json"))
    assert p.returncode == 0, p.stderr
    assert "%|" not in p.stderr  # -q: no progress bars
    assert f"recorded in {out / 'metrics.json'}" in p.stderr
    assert main(["eval", "knn", weights, *common, "--random-init"]) == 0
    recorded = json.loads((out / "metrics.json").read_text())["metrics"]
    assert [m.get("baseline") for m in recorded] == [None, "random_init"]

    from sslhub.hub.publish import load_metrics

    assert load_metrics(tmp_path / "knn.json")[0]["protocol"] == "knn"  # a single `eval --json` result is accepted

    assert main(["publish", str(out), "--repo-id", "me/demo", "--dry-run", str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "No evaluation results" not in card and "| Random init |" in card
    rows = [line for line in card.splitlines() if line.startswith("| kNN")]
    assert len(rows) == 2  # sslhub eval knn + the training monitor's last kNN
    assert any("k=5" in r and "input_size=32" in r for r in rows)
    assert any("training monitor" in r for r in rows)
    value = next(m["value"] for m in recorded if m.get("baseline"))
    assert any(f"{value:.2f}" in r for r in rows)  # the random-init baseline beside the result
