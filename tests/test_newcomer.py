"""The newcomer's path (issue 21): inputs checked before torch is imported, Ctrl-C that says what was kept, the
summary at the end of `train`, warnings for batch sizes that do not fit, and the machine rule for workers/threads."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sslhub.data import demo_path
from sslhub.training.progress import batch_fit_warning
from sslhub.utils import machine

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "training/data/clothing10_mini"


def _cli_without_torch(*args: str, cwd: Path | None = None) -> tuple[int, str, bool]:
    """Run the CLI in a fresh interpreter; also say whether torch got imported on the way."""
    code = ("import sys; from sslhub.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env,
                       timeout=120)  # fmt: skip
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stderr, "NO-TORCH" in p.stdout


def test_a_folder_of_splits_is_refused_before_torch_is_imported(tmp_path):
    root = demo_path()
    rc, err, no_torch = _cli_without_torch("train", "simclr-resnet-18-demo", "--data", str(root), "--out",
                                           str(tmp_path / "run"))  # fmt: skip
    assert rc == 2 and no_torch
    assert f"--data {root} holds the split folders train, val" in err
    assert f"Pass --data {root / 'train'} --val {root / 'val'}" in err
    assert not (tmp_path / "run").exists()
    rc, err, _ = _cli_without_torch("train", "simclr-resnet-18-demo", "--data", str(root / "train"), "--val",
                                    str(root), "--out", str(tmp_path / "run"))  # fmt: skip
    assert rc == 2 and f"--val {root} holds the split folders" in err and f"--val {root / 'val'}" in err


def test_a_mistyped_folder_gets_did_you_mean_before_torch_is_imported(tmp_path):
    (tmp_path / "clothing").mkdir()
    (tmp_path / "clothing" / "train").mkdir()
    rc, err, no_torch = _cli_without_torch("train", "simclr-resnet-18-demo", "--data", "clothng/train", "--out",
                                           "run", cwd=tmp_path)  # fmt: skip
    assert rc == 2 and no_torch
    assert "--data clothng/train: no such folder" in err and "Did you mean 'clothing/train'" in err


def test_batch_size_that_does_not_fit_the_data_is_warned_about():
    text = batch_fit_warning(400, 256, 200)  # byol-resnet-18 on clothing10_mini, as issue 21 found it
    assert text is not None
    assert "1 optimizer step(s) per epoch (200 in 200 epochs), 144 images left out of every epoch" in text
    assert "try -b 32" in text
    assert batch_fit_warning(3381, 64, 20) is None  # the demo: 52 steps, 53 images (1.6%) dropped per epoch
    assert batch_fit_warning(50_000, 512, 100) is None


def test_machine_rule_for_workers_threads_and_pinned_memory(monkeypatch, caplog):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "available_cores", lambda: 2)
    monkeypatch.setattr(machine, "machine_load", lambda: 0.3)
    s = machine.loader_settings("cpu", epochs=30)
    assert (s.num_workers, s.pin_memory, s.persistent_workers) == (1, False, True)
    assert machine.torch_threads(s.num_workers) == 2  # the worker augments (a few % of a step): the step gets both
    assert machine.torch_threads(0) == 2
    assert machine.loader_settings("cpu", items=400, batch_size=256).num_workers == 0  # one pass over 2 batches
    assert machine.loader_settings("cuda:0", num_workers=3).kwargs() == {
        "num_workers": 3, "pin_memory": True, "persistent_workers": False}
    monkeypatch.setattr(machine, "available_cores", lambda: 16)
    assert machine.loader_settings("cuda").num_workers == 8 and machine.torch_threads(8, "cuda") == 4
    assert machine.loader_settings("cpu").num_workers == 2 and machine.torch_threads(2) == 16
    # a busy machine: 1 thread, and a warning that says why
    monkeypatch.setattr(machine, "available_cores", lambda: 2)
    monkeypatch.setattr(machine, "machine_load", lambda: 7.5)
    monkeypatch.setattr(machine, "_warned_busy", False)
    with caplog.at_level(logging.WARNING, logger="sslhub.utils.machine"):
        assert machine.torch_threads(0) == 1
    assert "busy (load average 7.5 on 2 cores): using 1 torch thread instead of 2" in caplog.text
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert machine.torch_threads(0) == 2  # the user's choice wins


@pytest.fixture()
def small(tmp_path):
    d = tmp_path / "data"
    for split, n in (("train", 8), ("val", 4)):
        for cls in ("hat", "shoes"):
            (d / split / cls).mkdir(parents=True)
            for f in sorted((MINI / split / cls).iterdir())[:n]:
                shutil.copy(f, d / split / cls / f.name)
    return d


def test_ctrl_c_in_train_says_what_was_kept_and_how_to_resume_then_resume_finishes(small, tmp_path, monkeypatch,
                                                                                  capsys):  # fmt: skip
    from sslhub.cli import main
    from sslhub.methods import SSLMethod

    orig = SSLMethod.after_step

    def ctrl_c_in_epoch_2(self, step, total):
        orig(self, step, total)
        if step == 2:  # epoch 1 has 2 steps: epoch 1 is saved, epoch 2 is under way
            raise KeyboardInterrupt

    out = tmp_path / "run"
    args = ["train", "simclr-resnet-18-demo", "--data", str(small / "train"), "--val", str(small / "val"),
            "--out", str(out), "--epochs", "2", "-b", "8", "--width", "0.125", "--workers", "0", "--device", "cpu",
            "--set", "monitor_every=1", "--set", "knn.k=4"]  # fmt: skip
    monkeypatch.setattr(SSLMethod, "after_step", ctrl_c_in_epoch_2)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert main(["-q", *args]) == 130
    assert "TQDM_DISABLE" not in os.environ  # -q silenced tqdm for this call only: later subprocesses show bars
    err = capsys.readouterr().err
    assert f"interrupted: {out / 'checkpoints' / 'last.ckpt'} holds the 1 finished epoch(s)" in err
    assert f"--out {out} --resume" in err and "Traceback" not in err
    monkeypatch.setattr(SSLMethod, "after_step", orig)
    resume = err.split("Continue with: ")[1].strip().split()
    assert main(["-q", *resume[1:], "--workers", "0", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    # the summary: time, loss, kNN vs random init, the files written
    assert "trained      2 epochs in " in printed
    assert f"kNN top-1    {rows[-1]['knn_top1']:.2f}% after epoch 2 vs {rows[0]['knn_top1_random_init']:.2f}% at " \
           "random init" in printed
    assert f"files        {out}/: model.safetensors, checkpoint.ckpt, checkpoints/last.ckpt" in printed
