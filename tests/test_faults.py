"""Fault injection across every command: kill -9 at seeded points, servers that misbehave on 127.0.0.1, a disk that
fills (``ulimit -f``), and files that are not what their name says.

What each test checks is what a user sees: the exit code (2 for an expected failure), a message naming the file or
option, no traceback, and nothing lost (the destination absent or complete, the source unchanged, no stale
temporary files after the next run, a resumed run equal to an uninterrupted one). Every loop is bounded in count
and time; servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bad_files import bad_file_corpus

import sslhub
from sslhub._files import TMP_TAG, clean_stale_temps, staging_dir, temp_path
from sslhub.cli import main
from sslhub.hub import DownloadError, HashMismatchError, cache_path, fetch_url

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini/train"
TINY = ["backbone.width=0.0625", "batch_size=8", "input_size=32", "schedule.warmup_epochs=0", "monitor_every=0"]
# one torch thread: sslhub picks the thread count from the machine's load, and a bit-exact resume needs the same
# count before and after the interruption
ENV = {**{k: v for k, v in os.environ.items() if k != "SSLHUB_DEBUG"}, "OMP_NUM_THREADS": "1"}
ENV.update(PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           OMP_NUM_THREADS="1")  # fmt: skip
TIME_KEYS = ("images_per_s", "time_s", "elapsed_s")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=timeout, **kw)  # fmt: skip


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TMP_TAG in p.name)


def run_main(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A Lightly Worker-style checkpoint of a tiny ResNetGenerator (torch.save zip) and its sslhub safetensors."""
    from sslhub.backbones import create_backbone

    d = tmp_path_factory.mktemp("tiny")
    bb = create_backbone("resnet-9", width=0.0625)
    torch.save({"state_dict": {f"model.backbone.{k}": v for k, v in bb.state_dict().items()}}, d / "tiny.ckpt")
    return d / "tiny.ckpt", sslhub.convert(d / "tiny.ckpt", d / "tiny.safetensors")


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory) -> Path:
    """A torchvision ResNet-18 state dict (45 MB: its writes take long enough to be killed in the middle)."""
    import torchvision

    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    for p in sorted(DATA.rglob("*.jpg"))[:4]:
        shutil.copy(p, d / p.name)
    return d


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """24 images (two batches of 8 a step, so runs stay short), in their class folders."""
    d = tmp_path_factory.mktemp("small")
    for cls in sorted(p for p in DATA.iterdir() if p.is_dir())[:3]:
        (d / cls.name).mkdir()
        for p in sorted(cls.glob("*.jpg"))[:8]:
            shutil.copy(p, d / cls.name / p.name)
    return d


# `server` and `home` fixtures: tests/conftest.py

# ------------------------------------------------------------------------------------------------ error policy


def test_expected_error_is_one_paragraph_exit_2_and_debug_adds_the_traceback(tmp_path):
    missing = str(tmp_path / "missing.ckpt")
    r = cli("fetch", missing)
    assert r.returncode == 2 and missing in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.startswith("sslhub fetch: error: ") and len(r.stderr.strip().splitlines()) == 1
    for debug in (cli("--debug", "fetch", missing), cli("fetch", missing, "--debug"),
                  cli("fetch", missing, env={"SSLHUB_DEBUG": "1"})):  # fmt: skip
        assert debug.returncode == 2 and "Traceback" in debug.stderr and missing in debug.stderr


def test_broken_pipe_on_stdout_exits_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written (`sslhub recipes | head -0`)
    try:
        p = subprocess.run([sys.executable, "-m", "sslhub", "recipes"], stdout=write, stderr=subprocess.PIPE,
                           text=True, env=ENV, timeout=60)  # fmt: skip
    finally:
        os.close(write)
    assert p.returncode == 141 and p.stderr == "", p.stderr


def test_unexpected_exceptions_keep_their_traceback(monkeypatch):
    import sslhub.cli.hub as hub_cli

    def bug(args):
        raise KeyError("a bug")

    monkeypatch.setattr(hub_cli, "_fetch", bug)
    with pytest.raises(KeyError):
        main(["fetch", "anything"])


def test_path_errors_name_the_path(tmp_path, tiny, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, err = run_main(capsys, "convert", str(tiny[0]), str(blocker / "out.safetensors"))
    assert code == 2 and str(blocker) in err and "Traceback" not in err
    assert re.search(r"file, not a folder|already exists", err)


# ------------------------------------------------------------------------------------------------ bad files


def test_bad_files_are_told_apart_by_their_first_bytes(tmp_path, tiny):
    for name, (path, pattern) in bad_file_corpus(tmp_path, *tiny).items():
        with pytest.raises(sslhub.CheckpointError) as e:
            sslhub.load_pretrained(path)
        assert str(path) in str(e.value), name
        assert re.search(pattern, str(e.value)), (name, str(e.value))


def test_bad_files_through_every_command_exit_2_and_lose_nothing(tmp_path, tiny, images, capsys):
    corpus = bad_file_corpus(tmp_path / "bad", *tiny)
    out = tmp_path / "out"
    out.mkdir()
    before = {name: sha(p) for name, (p, _) in corpus.items()}
    for name, (path, pattern) in corpus.items():
        for args in (["info", str(path)], ["convert", str(path), str(out / "c.safetensors")],
                     ["export", str(path), "--to", "timm", str(out / "e.safetensors")],
                     ["embed", str(path), str(images), "--out", str(out / "x.csv"), "--input-size", "32",
                      "--device", "cpu", "--num-workers", "0"]):  # fmt: skip
            code, err = run_main(capsys, *args)
            assert code == 2, (name, args[0], err)
            assert str(path) in err and re.search(pattern, err), (name, args[0], err)
            assert "Traceback" not in err
    assert sorted(os.listdir(out)) == [], "no output may be written from a bad input"
    assert {name: sha(p) for name, (p, _) in corpus.items()} == before, "inputs are never changed"


def test_bad_files_as_subprocesses(tmp_path, tiny, images):
    corpus = bad_file_corpus(tmp_path / "bad", *tiny)
    lfs, html = corpus["lfs.ckpt"][0], corpus["html.safetensors"][0]
    r = cli("info", str(lfs))
    assert r.returncode == 2 and str(lfs) in r.stderr and "git lfs pull" in r.stderr and "Traceback" not in r.stderr
    r = cli("embed", str(html), str(images), "--out", str(tmp_path / "x.csv"), "--input-size", "32", "--device", "cpu")
    assert r.returncode == 2 and str(html) in r.stderr and "HTML page" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------------------------------------ crash safety


def _first_file_with_bytes(folder: Path) -> Path | None:
    """A file under ``folder`` (subfolders included: safetensors' writer works in a private folder) holding bytes."""
    try:
        for path in folder.rglob("*"):
            try:
                if path.is_file() and path.stat().st_size > 0:
                    return path
            except FileNotFoundError:  # renamed or removed since the listing
                continue
    except FileNotFoundError:  # a folder removed while it was walked
        pass
    return None


def kill_mid_write(args: list[str], folder: Path, fraction: float, timeout: float = 120) -> tuple[int, Path | None]:
    """Run the CLI on a slow disk (``slow_disk.py``: a write stops for a while after ``fraction`` of its bytes) and
    kill -9 it as soon as a file under ``folder`` holds bytes, i.e. in the middle of the write, where a user's kill of
    a long write lands. Returns the exit code and the path, relative to ``folder``, of the file that held the bytes
    (None: none did)."""
    p = subprocess.Popen([sys.executable, str(Path(__file__).parent / "slow_disk.py"), str(fraction), "60", *args],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + timeout
    written = None
    try:
        while p.poll() is None and time.monotonic() < deadline and written is None:
            found = _first_file_with_bytes(folder)
            if found is not None:
                p.send_signal(signal.SIGKILL)
                written = found.relative_to(folder)
            time.sleep(0.002)
        return p.wait(timeout=60), written
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("command,seed", [("convert", 0), ("export", 1), ("embed", 2)])
def test_kill_9_while_writing_leaves_the_output_absent_or_whole(tmp_path, resnet18, tiny, images, capsys, command,
                                                              seed):
    rng = random.Random(seed)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    src = tmp_path / ("src.pth" if command != "embed" else "src.safetensors")
    shutil.copy(resnet18 if command != "embed" else tiny[1], src)
    src_sha = sha(src)
    dst = out_dir / ("c.safetensors" if command != "export" else "e.pth")
    args = {
        "convert": ["convert", str(src), str(dst)],
        "export": ["export", str(src), "--to", "torchvision", str(dst)],
        "embed": ["embed", str(src), str(images), "--out", str(dst), "--device", "cpu", "--num-workers", "0",
                  "--input-size", "32"],
    }[command]
    code, written = kill_mid_write(args, out_dir, fraction=rng.uniform(0.05, 0.95))
    assert sha(src) == src_sha, "the source must be unchanged"
    assert code == -signal.SIGKILL, "the command ended before its write began"
    # the kill landed mid-write: the bytes went to a temporary file next to the destination (for safetensors' own
    # writer, inside a temporary private folder there: sslhub/checkpoints/io.py), never into it
    assert written is not None and TMP_TAG in written.parts[0], written
    # only temporary entries are left, the one that holds the bytes among them
    top = sorted(p.name for p in out_dir.iterdir())
    assert not dst.exists() and written.parts[0] in top and all(TMP_TAG in n for n in top), top
    assert 0 < (out_dir / written).stat().st_size
    # the next run of the command (any command writing there) removes what the killed one left
    assert main(args + ["--force"]) == 0, capsys.readouterr().err
    assert temps(out_dir) == [] and dst.exists()
    if dst.suffix == ".safetensors":
        from safetensors.torch import load_file

        load_file(dst)
    else:
        torch.load(dst, weights_only=True)


def test_a_writer_killed_mid_file_leaves_only_a_temp_that_the_next_run_removes(tmp_path, tiny, capsys):
    """A deterministic kill: the safetensors writer writes half the bytes, then the process gets SIGKILL."""
    out_dir = tmp_path / "out"
    script = f"""
import os, signal, sys
import safetensors.torch as st
orig = st.save_file
def half(tensors, filename, metadata=None):
    orig(tensors, filename, metadata=metadata)
    size = os.path.getsize(filename)
    os.truncate(filename, size // 2)
    os.kill(os.getpid(), signal.SIGKILL)
st.save_file = half
from sslhub.cli import main
sys.exit(main(["convert", {str(tiny[0])!r}, {str(out_dir / "a.safetensors")!r}]))
"""
    p = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, timeout=120)
    assert p.returncode == -signal.SIGKILL
    left = temps(out_dir)
    # the temporary file, and the private folder that safetensors' own temporary file went into
    assert 1 <= len(left) <= 2 and not (out_dir / "a.safetensors").exists(), os.listdir(out_dir)
    assert main(["convert", str(tiny[0]), str(out_dir / "b.safetensors")]) == 0  # another output, same folder
    assert temps(out_dir) == [] and sorted(os.listdir(out_dir)) == ["b.safetensors"]


def test_stale_temps_are_those_of_dead_processes_or_old(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = temp_path(tmp_path / "live.bin")
    theirs = Path(str(temp_path(tmp_path / "dead.bin")).replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
    old = Path(str(temp_path(tmp_path / "old.bin")).replace(f"-{os.getpid()}-", "-1-"))  # pid 1 runs, but old
    unrelated = tmp_path / ".dead.bin.tmp"
    for p in (mine, theirs, old, unrelated):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 7 * 3600,) * 2)
    assert sorted(clean_stale_temps(tmp_path)) == sorted([theirs, old])
    assert mine.exists() and unrelated.exists()


def test_publish_staging_left_by_kill_9_is_removed_by_the_next_one(tmp_path):
    """publish stages the converted weights and card in a private folder under the temp dir; a killed publish
    (kill -9 runs no cleanup) leaves it, and the next staging removes it, but not a live process's or others'."""
    script = f"""
import os, signal
from sslhub._files import staging_dir
with staging_dir("publish", parent={str(tmp_path)!r}) as d:
    (d / "model.safetensors").write_bytes(b"x" * 1000)
    os.kill(os.getpid(), signal.SIGKILL)
"""
    p = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, timeout=120)
    assert p.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()
    assert left.name.startswith("sslhub-stage-publish-") and (left / "model.safetensors").exists()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        parts = left.name.split("-")  # sslhub-stage-publish-<host>-<pid>-<random>
        theirs = tmp_path / "-".join([*parts[:-2], str(live.pid), parts[-1]])
        theirs.mkdir()
        unrelated = tmp_path / "sslhub-stage-notes"
        unrelated.mkdir()
        with staging_dir("publish", parent=tmp_path) as d:
            assert d.is_dir() and stat.S_IMODE(d.stat().st_mode) == 0o700
            assert not left.exists() and theirs.exists() and unrelated.exists()
        assert not d.exists()
    finally:
        live.kill()
        live.wait()


def test_outputs_get_the_mode_the_umask_gives(tmp_path, tiny):
    old = os.umask(0o027)
    try:
        a = sslhub.convert(tiny[0], tmp_path / "a.safetensors")
        assert stat.S_IMODE(a.stat().st_mode) == 0o640
        os.umask(0o022)
        b = sslhub.convert(tiny[0], tmp_path / "b.ckpt")
        assert stat.S_IMODE(b.stat().st_mode) == 0o644
        os.chmod(b, 0o600)  # a replaced file keeps its mode, as when written in place
        sslhub.convert(tiny[0], b, force=True)
        assert stat.S_IMODE(b.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def _limit_file_size(nbytes: int):
    def fn() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return fn


def test_disk_full_says_so_and_writes_nothing(tmp_path, tiny, capsys):
    size = tiny[1].stat().st_size
    # .ckpt (torch.save's zip writer) under a real `ulimit -f`, in a subprocess
    dst = tmp_path / "out.ckpt"
    dst.write_bytes(b"previous content")
    p = subprocess.run([sys.executable, "-m", "sslhub", "convert", str(tiny[0]), str(dst), "--force"], env=ENV,
                       capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size(size // 3))  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert f"no space left on device writing {dst}" in p.stderr and "nothing was written" in p.stderr
    assert dst.read_bytes() == b"previous content" and temps(tmp_path) == []
    # .safetensors in this process (main() ignores SIGXFSZ, so the write fails with EFBIG)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size // 3, hard))
    try:
        code, err = run_main(capsys, "convert", str(tiny[0]), str(tmp_path / "out.safetensors"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert code == 2 and f"no space left on device writing {tmp_path / 'out.safetensors'}" in err
    assert "ulimit -f" in err and not (tmp_path / "out.safetensors").exists() and temps(tmp_path) == []


# ------------------------------------------------------------------------------------------------ training


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def test_train_refuses_a_folder_with_a_run_and_resume_reads_its_config(tmp_path, small_data, capsys):
    from sslhub.training import train
    from sslhub.training.run_dir import RunDirError

    run = tmp_path / "run"
    kw = dict(max_steps_per_epoch=1, progress=False, device="cpu")
    train("simclr-resnet-9", small_data, run, epochs=1, overrides=TINY, **kw)
    before = (run / "model.safetensors").read_bytes()
    code, err = run_main(capsys, "train", "simclr-resnet-9", "--data", str(small_data), "--out", str(run), "--device", "cpu",
                         "--epochs", "1", "--max-steps", "1")  # fmt: skip
    assert code == 2 and str(run) in err and "--resume" in err and "--force" in err and "Traceback" not in err
    assert (run / "model.safetensors").read_bytes() == before and len(_rows(run)) == 1
    with pytest.raises(RunDirError, match=r"optimizer\.lr=0\.5 conflicts with the run's config\.yaml"):
        train("simclr-resnet-9", small_data, run, resume=True, overrides=["optimizer.lr=0.5"], **kw)
    with pytest.raises(RunDirError, match="is a run of 'simclr-resnet-9', not 'byol-resnet-9'"):
        train("byol-resnet-9", small_data, run, resume=True, **kw)
    # no --set needed: the saved recipe (width 0.0625, 32 px, ...) is used; more epochs are compatible
    train("simclr-resnet-9", small_data, run, epochs=2, resume=True, progress=False, device="cpu")
    assert [r["epoch"] for r in _rows(run)] == [1, 2]
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 2
    train("simclr-resnet-9", small_data, run, epochs=1, overrides=TINY, force=True, **kw)
    assert [r["epoch"] for r in _rows(run)] == [1], "--force replaces the run: its metrics start over"


def test_kill_9_during_training_then_resume_equals_an_uninterrupted_run(tmp_path, small_data):
    from safetensors.torch import load_file

    args = ["train", "simclr-resnet-9", "--data", str(small_data), "--epochs", "3", "--max-steps", "2", "--device", "cpu",
            "--deterministic", *sum((["--set", s] for s in TINY), [])]  # fmt: skip
    full = cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-2000:]

    rng = random.Random(12)
    part = tmp_path / "part"
    k = 1
    p = subprocess.Popen([sys.executable, "-m", "sslhub", *args, "--out", str(part)], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 180
    try:
        while p.poll() is None and time.monotonic() < deadline:
            m = part / "metrics.jsonl"
            if m.exists() and len(m.read_text().splitlines()) >= k:
                time.sleep(rng.uniform(0, 0.2))  # somewhere in epochs 2-3 (or between a checkpoint and its row)
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (part / "model.safetensors").exists()
    # resume with none of the original --set flags: they come from the run's config.yaml
    resumed = cli("train", "simclr-resnet-9", "--data", str(small_data), "--out", str(part), "--device", "cpu",
                  "--deterministic", "--resume")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert temps(part) == []
    assert _rows(part) == _rows(tmp_path / "full")
    a, b = load_file(tmp_path / "full/model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def _truncated_jpegs(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i, p in enumerate(sorted(DATA.rglob("*.jpg"))[:n]):
        data = p.read_bytes()
        (folder / f"{i}.jpg").write_bytes(data[: len(data) // 3])  # header intact (passes verify), pixels missing
    return folder


@pytest.mark.parametrize("monitor", [0, 1])
def test_no_optimizer_step_is_a_failure_not_a_model(tmp_path, capsys, monitor):
    bad = _truncated_jpegs(tmp_path / "bad", 12)
    over = [s for s in TINY if not s.startswith("monitor_every")] + [f"monitor_every={monitor}"]
    code, err = run_main(capsys, "train", "simclr-resnet-9", "--data", str(bad), "--out", str(tmp_path / "run"),
                         "--device", "cpu", "--epochs", "1", "--max-steps", "2", *sum((["--set", s] for s in over), []))  # fmt: skip
    assert code == 2 and "made no optimizer step" in err and str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_weights_that_turn_non_finite_late_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, small_data):
    from sslhub.methods import SSLMethod
    from sslhub.training import TrainingError, train

    orig = SSLMethod.after_step

    def poison_last_step(self, step, total):
        orig(self, step, total)
        if step == total - 1:  # after the last optimizer step: no later loss would show it
            with torch.no_grad():
                next(self.parameters()).fill_(float("nan"))

    run = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SSLMethod, "after_step", poison_last_step)
        with pytest.raises(TrainingError, match=r"after epoch 2 .* not finite .*last good state is .*last\.ckpt"):
            train("simclr-resnet-9", small_data, run, epochs=2, overrides=TINY, max_steps_per_epoch=1, progress=False,
                  device="cpu")  # fmt: skip
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1
    assert not (run / "model.safetensors").exists() and len(_rows(run)) == 1


def test_non_finite_embeddings_stop_the_run(tmp_path, small_data, monkeypatch):
    import sslhub.evaluation.features as F
    import sslhub.training.trainer as T

    orig = F.extract_features

    def nan_embed(*a, **k):  # the monitor's features (no --val here: the collapse check only)
        f = orig(*a, **k)
        return F.Features(f.features * float("nan"), f.labels, f.filenames)

    monkeypatch.setattr(F, "extract_features", nan_embed)
    over = [s for s in TINY if not s.startswith("monitor_every")]
    with pytest.raises(T.TrainingError, match="embeddings are not finite"):
        T.train("simclr-resnet-9", small_data, tmp_path / "run", epochs=1, overrides=over, max_steps_per_epoch=1,
                progress=False, device="cpu")  # fmt: skip
    assert not (tmp_path / "run" / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------------ downloads


def test_truncated_or_lying_transfers_are_never_cached(server, home, tiny, caplog):
    data = tiny[1].read_bytes()
    server.put("w.safetensors", data)
    server.cut = len(data) // 2
    for mode, match in [("nolength", "truncated"), ("long", "connection lost|closed after"), ("short", "truncated")]:
        url = server.url(mode, "w.safetensors")
        with pytest.raises(DownloadError, match=match):
            fetch_url(url, progress=False, retries=1, backoff=0.0)
        assert not cache_path(url).exists(), mode
    url = server.url("html", "w.safetensors")
    with pytest.raises(DownloadError, match="HTML page"):
        fetch_url(url, progress=False, retries=0)
    assert not cache_path(url).exists() and not cache_path(url).with_name("w.safetensors.part").exists()
    # a format that cannot show its end is cached, but never silently: the warning says so
    server.put("blob.bin", os.urandom(5000))
    with caplog.at_level("WARNING", logger="sslhub"):
        fetch_url(server.url("nolength", "blob.bin"), progress=False)
    assert "cannot show its end" in caplog.text


def test_first_download_is_recorded_and_a_changed_cache_is_never_served(server, home, tiny):
    data = tiny[1].read_bytes()
    server.put("tofu.safetensors", data)
    url = server.url("ok", "tofu.safetensors")
    path = fetch_url(url, progress=False)
    meta = json.loads(path.with_name(path.name + ".sslhub.json").read_text())
    assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["verified"] is False
    assert meta["pinned"] == "first download" and meta["size"] == len(data)
    n = server.count("ok", "tofu.safetensors")

    with open(path, "r+b") as f:  # a byte flipped in place: the mtime changes, so the next use re-hashes
        f.seek(len(data) - 10)
        f.write(bytes([data[-10] ^ 0xFF]))
    assert fetch_url(url, progress=False).read_bytes() == data
    assert server.count("ok", "tofu.safetensors") == n + 1, "the changed file must be downloaded again"

    st = path.stat()  # flipped again, mtime put back: only --verify can see it (documented)
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(bytes([data[100] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fetch_url(url, progress=False).read_bytes() != data
    assert fetch_url(url, progress=False, verify=True).read_bytes() == data
    assert server.count("ok", "tofu.safetensors") == n + 2

    server.put("tofu.safetensors", data[:-1] + b"\x00")  # the server now sends other bytes
    with pytest.raises(HashMismatchError, match="first download"):
        fetch_url(url, progress=False, force=True)
    assert path.read_bytes() == data, "the cached file stays the first download's"
    new_sha = hashlib.sha256(data[:-1] + b"\x00").hexdigest()
    assert fetch_url(url, progress=False, force=True, sha256=new_sha).read_bytes() == data[:-1] + b"\x00"


def test_fetch_verify_on_the_command_line(server, home, tiny):
    data = tiny[1].read_bytes()
    server.put("cli.safetensors", data)
    url = server.url("ok", "cli.safetensors")
    r = cli("fetch", url, "-q", env={"SSLHUB_HOME": str(home)})
    assert r.returncode == 0 and "UNVERIFIED" in r.stderr, r.stderr
    path = Path(r.stdout.strip())
    st = path.stat()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = cli("fetch", url, "-q", "--verify", env={"SSLHUB_HOME": str(home), "SSLHUB_OFFLINE": "1"})
    assert r.returncode == 2 and "SSLHUB_OFFLINE" in r.stderr and "Traceback" not in r.stderr
    assert not path.exists(), "a cached file that fails --verify is never served (and is deleted)"
    r = cli("fetch", url, "-q", "--verify", env={"SSLHUB_HOME": str(home)})
    assert r.returncode == 0 and path.read_bytes() == data


def test_unreachable_hosts_fail_at_once_and_5xx_is_retried(server, home, tiny):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="connection refused"):
        fetch_url(f"http://127.0.0.1:{port}/w.ckpt", progress=False, retries=5, backoff=1.0)
    with pytest.raises(DownloadError, match="does not resolve"):
        fetch_url("http://sslhub-test.invalid/w.ckpt", progress=False, retries=5, backoff=1.0)
    assert time.monotonic() - t0 < 10, "no retries (1+2+4+8+16 s of backoff) for what cannot recover"

    server.put("flaky.bin", b"x" * 3000)
    server.fail = 2
    path = fetch_url(server.url("flaky", "flaky.bin"), progress=False, retries=3, backoff=0.01)
    assert path.read_bytes() == b"x" * 3000 and server.count("flaky", "flaky.bin") == 3


def test_sslhub_home_under_a_file_is_a_clear_error(tmp_path, monkeypatch, capsys, server):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("SSLHUB_HOME", str(tmp_path / "afile" / "cache"))
    server.put("h.bin", b"y" * 100)
    code, err = run_main(capsys, "fetch", server.url("ok", "h.bin"), "-q")
    assert code == 2 and "SSLHUB_HOME" in err and str(tmp_path / "afile") in err and "Traceback" not in err


def test_kill_9_during_download_then_the_next_fetch_resumes(server, home):
    rng = random.Random(7)
    data = os.urandom(600_000)
    server.put("big.bin", data)
    server.rate = 300_000
    url = server.url("slow", "big.bin")
    final = cache_path(url)
    part = final.with_name(final.name + ".part")
    threshold = rng.randrange(50_000, 400_000)
    p = subprocess.Popen([sys.executable, "-m", "sslhub", "fetch", url, "-q"], env={**ENV, "SSLHUB_HOME": str(home)},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    try:
        while p.poll() is None and time.monotonic() < deadline:
            if part.exists() and part.stat().st_size >= threshold:
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL and not final.exists()
    have = part.stat().st_size
    assert 0 < have < len(data) and part.read_bytes() == data[:have]
    server.rate = 10_000_000
    assert fetch_url(url, progress=False).read_bytes() == data
    assert server.requests[-1] == ("/slow/big.bin", f"bytes={have}-"), "the next fetch asks only for the rest"
    left = sorted(x.name for x in final.parent.iterdir() if not x.name.endswith(".lock"))
    assert left == sorted([final.name, final.name + ".sslhub.json"])


def test_disk_full_during_a_download_keeps_the_part_for_resume(server, home):
    data = os.urandom(300_000)
    server.put("full.bin", data)
    url = server.url("ok", "full.bin")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with pytest.raises(DownloadError, match=r"no space left on device writing .*full\.bin\.part"):
            fetch_url(url, progress=False, retries=0)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert not cache_path(url).exists()
    assert fetch_url(url, progress=False).read_bytes() == data  # resumed once there is space
