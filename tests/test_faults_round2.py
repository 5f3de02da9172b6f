"""Fault suite, round 2 (issue 22): run folders, signals, downloads and numbers under faults a careful user meets.

Same rules as ``test_faults.py``: real subprocesses, real signals, loopback servers; what is checked is what a user
sees (exit code, a message naming the file or option, no traceback, nothing lost or leaked).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_faults import DATA, ENV, TINY, _rows, cli, sha, temps

SET_TINY = sum((["--set", s] for s in TINY), [])


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """24 images (two batches of 8 a step, so runs stay short), in their class folders."""
    d = tmp_path_factory.mktemp("small")
    for cls in sorted(p for p in DATA.iterdir() if p.is_dir())[:3]:
        (d / cls.name).mkdir()
        for p in sorted(cls.glob("*.jpg"))[:8]:
            shutil.copy(p, d / cls.name / p.name)
    return d


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_data) -> Path:
    """A finished 1-epoch run (one step), to copy into each test."""
    run = tmp_path_factory.mktemp("finished") / "run"
    r = cli("train", "simclr-resnet-9", "--data", str(small_data), "--out", str(run), "--epochs", "1", "--max-steps", "1",
            "--device", "cpu", *SET_TINY)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return run


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "simclr-resnet-9", "--data", str(data), "--out", str(out), "--device", "cpu", *extra]


# ------------------------------------------------------------------------------------------------ run folders


def test_resume_never_starts_a_finished_run_over(tmp_path, finished_run):
    run = _copy_run(finished_run, tmp_path / "run")
    (run / "checkpoints" / "last.ckpt").unlink()
    before = {p.name: sha(p) for p in run.iterdir() if p.is_file()}
    r = cli(*_train_args(tmp_path, run, "--resume"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert str(run) in r.stderr and "finished run" in r.stderr and "--force" in r.stderr
    assert {p.name: sha(p) for p in run.iterdir() if p.is_file()} == before, "nothing may change"
    empty = tmp_path / "empty"
    r = cli(*_train_args(tmp_path, empty, "--resume"))
    assert r.returncode == 2 and "holds no run to resume" in r.stderr and not empty.exists()


def test_force_checks_its_arguments_before_it_deletes_and_keeps_other_files(tmp_path, finished_run, small_data):
    run = _copy_run(finished_run, tmp_path / "run")
    (run / "checkpoints" / "mine.pt").write_bytes(b"the user's own file")
    (run / "notes.txt").write_text("mine")
    before = {str(p.relative_to(run)): sha(p) for p in run.rglob("*") if p.is_file()}
    bad = [
        (["--data", str(tmp_path / "no-such-folder")], "no-such-folder"),
        (["--set", "optimizer.lr=abc"], "optimizer.lr"),
    ]
    if not torch.cuda.is_available():
        bad.append((["--device", "cuda"], "--device"))
    for extra, named in bad:
        args = _train_args(small_data, run, "--force", "--epochs", "1", "--max-steps", "1", *SET_TINY)
        if extra[0] == "--data":
            args[args.index("--data") + 1] = extra[1]
            extra = []
        r = cli(*args, *extra)
        assert r.returncode == 2 and named in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr[-1500:])
        assert {str(p.relative_to(run)): sha(p) for p in run.rglob("*") if p.is_file()} == before, extra
    r = cli(*_train_args(small_data, run, "--force", "--epochs", "1", "--max-steps", "1", *SET_TINY))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (run / "checkpoints" / "mine.pt").read_bytes() == b"the user's own file"
    assert (run / "notes.txt").read_text() == "mine"
    assert not (run / ".sslhub-run.lock").exists()


def test_two_trains_into_one_folder_the_second_is_refused_and_a_dead_lock_is_taken_over(tmp_path, small_data, caplog):
    from sslhub.training import train
    from sslhub.training.run_dir import RunDirError

    run = tmp_path / "run"
    slow = subprocess.Popen([sys.executable, "-m", "sslhub", *_train_args(small_data, run, "--epochs", "100000", *SET_TINY)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / ".sslhub-run.lock").exists() and slow.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        owner = json.loads((run / ".sslhub-run.lock").read_text())
        assert owner["pid"] == slow.pid
        r = cli(*_train_args(small_data, run, "--epochs", "1", "--max-steps", "1", "--force", *SET_TINY))
        assert r.returncode == 2 and "in use" in r.stderr and str(slow.pid) in r.stderr, r.stderr[-1500:]
        for kw in ({}, {"resume": True}):
            with pytest.raises(RunDirError, match=rf"is in use: another sslhub train \(pid {slow.pid} "):
                train("simclr-resnet-9", small_data, run, epochs=1, overrides=TINY, device="cpu", progress=False, **kw)
        assert slow.poll() is None, "the first run goes on"
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait()
    assert (run / ".sslhub-run.lock").exists()  # kill -9 leaves it; the next run takes it over
    with caplog.at_level("WARNING", logger="sslhub"):
        train("simclr-resnet-9", small_data, run, epochs=1, overrides=TINY, device="cpu", progress=False, force=True,
              max_steps_per_epoch=1)  # fmt: skip
    assert f"taking over the lock of pid {slow.pid}" in caplog.text
    assert [row["epoch"] for row in _rows(run)] == [1] and not (run / ".sslhub-run.lock").exists()


def test_resume_onto_a_file_that_is_not_a_training_state_is_a_clear_error(tmp_path, finished_run, small_data):
    from sslhub.training import train
    from sslhub.training.run_dir import RunDirError

    run = _copy_run(finished_run, tmp_path / "run")
    ckpt = run / "checkpoints" / "last.ckpt"
    good = torch.load(ckpt, weights_only=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}}, ckpt)
    r = cli(*_train_args(small_data, run, "--resume", "--epochs", "2"))
    assert r.returncode == 2 and str(ckpt) in r.stderr and "not a training state" in r.stderr, r.stderr[-1500:]
    assert "Traceback" not in r.stderr
    wrong_shape = {**good, "model": {k: v[..., :1] if v.ndim else v for k, v in good["model"].items()}}
    for bad, match in [({"model": {}}, "not a training state"), ([1, 2], "not a training state"),
                       ({**good, "epoch": "1"}, "not a training state"), (wrong_shape, "does not fit the run's")]:
        torch.save(bad, ckpt)
        with pytest.raises(RunDirError, match=match):
            train("simclr-resnet-9", small_data, run, epochs=2, resume=True, device="cpu", progress=False)


# ------------------------------------------------------------------------------------------------ preemption

_SIGNAL_AT_STEP = """
import os, signal, sys
import sslhub.methods.base as B
orig = B.SSLMethod.after_step
def after_step(self, step, total):
    orig(self, step, total)
    if step == {step}:
        os.kill(os.getpid(), signal.{sig})  # a real signal, delivered to the process as SLURM/kubelet/Ctrl-C do
B.SSLMethod.after_step = after_step
from sslhub.cli import main
sys.exit(main({args!r}))
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_data) -> tuple[list[str], Path]:
    """2 epochs of 3 steps, deterministic, never stopped: what a stopped and resumed run must equal."""
    out = tmp_path_factory.mktemp("full") / "full"
    args = _train_args(small_data, out, "--epochs", "2", "--max-steps", "3", "--deterministic", *SET_TINY)
    full = cli(*args)
    assert full.returncode == 0, full.stderr[-2000:]
    return args, out


@pytest.mark.parametrize("sig,step", [("SIGTERM", 4), ("SIGINT", 1)])
def test_a_stop_signal_mid_epoch_saves_a_state_that_resume_continues_bit_exactly(tmp_path, small_data, uninterrupted,
                                                                                 sig, step):  # fmt: skip
    from safetensors.torch import load_file

    args, full_run = list(uninterrupted[0]), uninterrupted[1]
    part = tmp_path / "part"
    args[args.index("--out") + 1] = str(part)
    p = subprocess.run([sys.executable, "-c", _SIGNAL_AT_STEP.format(step=step, sig=sig, args=args)], env=ENV,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    signum = getattr(signal, sig)
    assert p.returncode == 128 + signum, p.stderr[-2000:]
    epoch, batch = divmod(step + 1, 3)
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sslhub train: stopped by {sig} at epoch {epoch + 1}, batch {batch} of 3"), last
    assert str(part / "checkpoints" / "last.ckpt") in last and "--resume" in last and "Traceback" not in p.stderr
    state = torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == step + 1 and state["mid_epoch"]["batch"] == batch
    assert not (part / "model.safetensors").exists() and not (part / ".sslhub-run.lock").exists()
    resumed = cli(*_train_args(small_data, part, "--resume", "--deterministic"))  # none of the original flags
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _rows(part) == _rows(full_run)
    a, b = load_file(full_run / "model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    assert temps(part) == []


def test_sigterm_from_outside_stops_with_a_saved_state(tmp_path, small_data):
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "sslhub", *_train_args(small_data, run, "--epochs", "100000", *SET_TINY)],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] >= 1 and not (run / ".sslhub-run.lock").exists()
