"""Fault suite, round 2 (issue 22): run folders, signals, downloads and numbers under faults a careful user meets.

Same rules as ``test_faults.py``: real subprocesses, real signals, loopback servers; what is checked is what a user
sees (exit code, a message naming the file or option, no traceback, nothing lost or leaked).
"""

from __future__ import annotations

import json
import os
import re
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
    # no workers: augmentation in the training process, so a mid-epoch resume is bit-exact (docs/safety.md)
    return ["train", "simclr-resnet-9", "--data", str(data), "--out", str(out), "--device", "cpu", "--workers", "0",
            *extra]


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


# ------------------------------------------------------------------------------------------------ downloads

SECRET = "X-Amz-Signature=0123456789abcdefdeadbeef&X-Amz-Credential=AKIAEXAMPLE"


# `server` and `home` fixtures: tests/conftest.py

def test_no_error_path_prints_the_query_string(server, home):
    server.put("s.bin", b"z" * 100)
    cases = [
        f"http://127.0.0.1:99999/bucket/w.ckpt?{SECRET}",  # a port out of range
        f"http://127.0.0.1:12ab/bucket/w.ckpt?{SECRET}",  # not a port
    ]
    server.location = f"ftp://127.0.0.1/bucket/w.ckpt?{SECRET}"  # a redirect to a scheme requests cannot fetch
    cases.append(server.url("redirect", f"s.bin?{SECRET}"))
    for url in cases:
        r = cli("fetch", url, "-q", "-v", env={"SSLHUB_HOME": str(home)}, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (url, r.stderr[-1500:])
        assert "Signature" not in r.stderr + r.stdout and "AKIA" not in r.stderr + r.stdout, (url, r.stderr)
        assert "query redacted" in r.stderr, r.stderr
    assert not any("Signature" in p.read_text(errors="replace") for p in home.rglob("*") if p.is_file())


def test_a_stalled_server_is_given_up_fast_and_retry_after_is_capped(server, home, monkeypatch):
    from sslhub.hub import DownloadError, fetch_url
    from sslhub.hub.download import default_timeout

    assert default_timeout() == (10.0, 10.0)  # huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT default
    data = os.urandom(50_000)
    server.put("stall.bin", data)
    server.cut, server.stall_s = 10_000, 20.0
    monkeypatch.setenv("SSLHUB_DOWNLOAD_TIMEOUT", "0.5")
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"after 2 attempt\(s\): timed out after \d+ bytes"):
        fetch_url(server.url("stall", "stall.bin"), progress=False, retries=1, backoff=0.01)
    assert time.monotonic() - t0 < 5
    monkeypatch.setenv("SSLHUB_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(DownloadError, match="SSLHUB_DOWNLOAD_TIMEOUT='soon'"):
        fetch_url(server.url("ok", "stall.bin"), progress=False)
    monkeypatch.delenv("SSLHUB_DOWNLOAD_TIMEOUT")
    server.put("busy.bin", data)
    for value in ("3600", "Wed, 21 Oct 2099 07:28:00 GMT"):
        server.retry_after = value
        t0 = time.monotonic()
        with pytest.raises(DownloadError, match=r"HTTP 429 .*asks to wait \d+ s .*Try again later"):
            fetch_url(server.url("busy", "busy.bin"), progress=False, retries=3)
        assert time.monotonic() - t0 < 5 and server.count("busy", "busy.bin") in (1, 2)
        server.requests.clear()


def test_compressed_responses_are_stored_as_sent(server, home, caplog):
    import gzip

    from sslhub.hub import cache_path, fetch_url

    data = bytes(4 << 20)  # 4 MiB of zeros: about 4 KB gzipped
    server.put("zeros.bin", data)
    url = server.url("gzip", "zeros.bin")
    with caplog.at_level("WARNING", logger="sslhub"):
        path = fetch_url(url, progress=False, retries=0)
    assert path.read_bytes() == gzip.compress(data) and path.stat().st_size < 100_000
    assert "Content-Encoding: gzip" in caplog.text and "not decompressed" in caplog.text
    assert path == cache_path(url)


def test_a_file_larger_than_the_free_space_is_refused_up_front(server, home, monkeypatch):
    import shutil as sh

    from sslhub.hub import DownloadError, cache_path, fetch_url

    server.put("huge.bin", b"h" * 200_000)
    url = server.url("ok", "huge.bin")
    real = sh.disk_usage
    monkeypatch.setattr(sh, "disk_usage", lambda p: real(p)._replace(free=50_000))  # a nearly full disk
    n = server.count("ok", "huge.bin")
    with pytest.raises(DownloadError, match=r"needs 0\.2 MiB more but .* has 0\.0 MiB free; nothing was downloaded"):
        fetch_url(url, progress=False, retries=3)
    part = cache_path(url).with_name("huge.bin.part")
    assert not cache_path(url).exists() and (not part.exists() or part.stat().st_size == 0)
    assert server.count("ok", "huge.bin") == n + 1, "not retried"


def test_a_damaged_cache_record_means_download_again(server, home):
    from sslhub.hub import fetch_url

    data = os.urandom(20_000)
    server.put("rec.bin", data)
    url = server.url("ok", "rec.bin")
    path = fetch_url(url, progress=False)
    record = path.with_name(path.name + ".sslhub.json")
    for damage in ("{not json", "", json.dumps({"sha256": "0" * 10}), None):
        st = path.stat()
        path.write_bytes(b"evil" + data[4:])  # the file is damaged too, its size and mtime kept
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if damage is None:
            record.unlink()
        else:
            record.write_text(damage)
        n = server.count("ok", "rec.bin")
        assert fetch_url(url, progress=False).read_bytes() == data, damage
        assert server.count("ok", "rec.bin") == n + 1
        meta = json.loads(record.read_text())
        assert meta["pinned"] == "first download" and meta["sha256"] == sha(path)


# ------------------------------------------------------------------------------------------------ numbers


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory) -> Path:
    """A tiny ResNetGenerator as sslhub safetensors."""
    import sslhub
    from sslhub.backbones import create_backbone

    d = tmp_path_factory.mktemp("tiny")
    bb = create_backbone("resnet-9", width=0.0625)
    torch.save({"state_dict": {f"model.backbone.{k}": v for k, v in bb.state_dict().items()}}, d / "tiny.ckpt")
    return sslhub.convert(d / "tiny.ckpt", d / "tiny.safetensors")


def _with_tensors(src: Path, dst: Path, fn) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(src, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(fn(tensors), dst, metadata=meta)
    return dst


def _poison(tensors: dict) -> dict:
    name = next(k for k, v in tensors.items() if k.endswith("weight") and v.ndim == 4)
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    return tensors


def test_nan_weights_are_reported_at_load_and_embed_eval_refuse_them(tmp_path, tiny_st, small_data):
    bad = _with_tensors(tiny_st, tmp_path / "nan.safetensors", _poison)
    out = tmp_path / "e.csv"
    common = ["--input-size", "32", "--device", "cpu", "--num-workers", "0"]
    r = cli("embed", str(bad), str(small_data), "--out", str(out), *common)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert "weight tensor(s) are not finite" in r.stderr and "--allow-non-finite" in r.stderr
    assert re.search(r"WARNING .*nan\.safetensors: 1 weight tensor\(s\) are not finite \(NaN or Inf\): \S+\.weight",
                     r.stderr), "the load names the tensors"
    assert not out.exists() and temps(tmp_path) == []
    r = cli("embed", str(bad), str(small_data), "--out", str(out), *common, "--allow-non-finite")
    assert r.returncode == 0 and "written anyway" in r.stderr and out.exists(), r.stderr[-1500:]
    js = tmp_path / "knn.json"
    r = cli("eval", "knn", str(bad), "--data", str(small_data), "--val", str(small_data), "--json", str(js), *common)
    assert r.returncode == 2 and "not finite" in r.stderr and str(bad) in r.stderr and "Traceback" not in r.stderr
    assert not js.exists() and "top1" not in r.stdout


def test_results_and_metrics_are_strict_json(tmp_path):
    from sslhub.evaluation.results import record_result, write_results
    from sslhub.hub.publish import load_metrics, run_dir_metrics
    from sslhub.training.run_results import RunResultsError

    with pytest.raises(ValueError, match=r"x\.json: the result holds NaN or Infinity"):
        write_results({"metric": "knn_top1", "value": float("nan")}, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    for value in ("NaN", "Infinity", "-Infinity"):
        (tmp_path / "m.json").write_text(f'[{{"protocol": "knn", "dataset": "d", "value": {value}}}]')
        with pytest.raises(RunResultsError, match="not a finite number"):  # publish reports it as a PublishError
            load_metrics(tmp_path / "m.json")
    # a damaged metrics.json in a run folder: the new result is kept, the damaged file moved aside, not lost
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"metrics": [{"metric": "knn_top1", "val')
    result = {"metric": "knn_top1", "value": 12.5, "dataset": "d", "split": "val", "protocol": {"k": 20, "t": 0.1}}
    record_result(result, run)
    assert json.loads((run / "metrics.json").read_text()) == {"metrics": [result]}
    (aside,) = run.glob("metrics.json.damaged-*")
    assert aside.read_text().startswith('{"metrics": [{"metric"')
    # a metrics.jsonl cut by a kill: publish still reads the rows that are whole
    (run / "config.yaml").write_text("recipe: {name: x}\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1, "knn_top1": 30.0}\n{"epoch": 2, "knn_top1": 3')
    knn = [m for m in run_dir_metrics(run) if m.get("source") == "sslhub train"]
    assert [m["value"] for m in knn] == [30.0]


def test_half_precision_files_load_as_float32_and_embed(tmp_path, tiny_st, small_data):
    import sslhub

    for dt in (torch.float16, torch.bfloat16):
        half = _with_tensors(tiny_st, tmp_path / f"{dt}.safetensors",
                             lambda t: {k: v.to(dt) if v.is_floating_point() else v for k, v in t.items()})  # noqa: B023
        model = sslhub.load_pretrained(half)
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert model.pretrained_cfg["file_dtype"] == str(dt).removeprefix("torch.")
        with torch.no_grad():
            assert torch.isfinite(model(torch.rand(2, 3, 32, 32))).all()
        kept = sslhub.load_pretrained(half, dtype=None)
        assert {p.dtype for p in kept.parameters()} == {dt}
    r = cli("embed", str(half), str(small_data), "--out", str(tmp_path / "h.npy"), "--input-size", "32", "--device",
            "cpu")  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]


# ------------------------------------------------------------------------------------------------ inputs


def test_set_reads_exponent_numbers_as_yaml_1_2_does():
    from sslhub.recipes import get_recipe
    from sslhub.recipes.schema import RecipeError

    for raw, want in [("1e-3", 1e-3), ("1E-3", 1e-3), ("5e4", 5e4), ("1e30", 1e30), ("-2.5e-1", None)]:
        if want is None:
            with pytest.raises(RecipeError, match=r"optimizer\.lr=-2\.5e-1: must be > 0"):
                get_recipe("simclr-resnet-9", [f"optimizer.lr={raw}"])
            continue
        r = get_recipe("simclr-resnet-9", [f"optimizer.lr={raw}"])
        assert r["optimizer"]["lr"] == want and isinstance(r["optimizer"]["lr"], float)
    with pytest.raises(RecipeError, match="must be > 0"):  # 1e400 is inf: not a learning rate
        get_recipe("simclr-resnet-9", ["optimizer.lr=1e400"])
    assert get_recipe("simclr-resnet-9", ["name=1e3"])["name"] == "1e3", "a string key keeps the string"


def test_a_hand_edited_config_yaml_is_checked_on_resume(tmp_path, finished_run, capsys):
    import yaml

    from sslhub.cli import main

    run = _copy_run(finished_run, tmp_path / "run")
    cfg_path = run / "config.yaml"
    good = cfg_path.read_text()
    for edit, named in [(("batch_size", "eight"), "batch_size='eight': expected an integer"),
                        (("optimizer", "abc"), "optimizer='abc'"),
                        (("seed", -1.5), "seed=-1.5")]:  # fmt: skip
        cfg = yaml.safe_load(good)
        cfg["recipe"][edit[0]] = edit[1]
        cfg_path.write_text(yaml.safe_dump(cfg))
        code = main(_train_args(tmp_path, run, "--resume", "--epochs", "2"))
        err = capsys.readouterr().err
        assert code == 2 and str(cfg_path) in err and named in err and "Traceback" not in err, err
    cfg = yaml.safe_load(good)
    lr = cfg["recipe"]["optimizer"]["lr"]
    text = good.replace(f"lr: {lr}", f"lr: {lr:e}".replace(".000000", ""))  # e.g. 3e-01: a string in YAML 1.1
    assert text != good
    cfg_path.write_text(text)
    from sslhub.training.run_dir import saved_config

    assert saved_config(run)["recipe"]["optimizer"]["lr"] == pytest.approx(lr)


# ------------------------------------------------------------------------------------------------ outputs


def test_kill_9_inside_safetensors_own_temp_file_leaves_nothing_the_next_convert_keeps(tmp_path):
    """safetensors' save_file writes its own ``.tmpXXXXXX`` next to its target before renaming it; a kill -9 right
    then must leave only what sslhub's sweep recognises."""
    import torchvision

    src = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), src)
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(2):
        p = subprocess.Popen([sys.executable, "-m", "sslhub", "convert", str(src), str(out / "a.safetensors"), "--force"],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 120
        try:
            while p.poll() is None and time.monotonic() < deadline:
                if any(n.startswith(".tmp") for _, _, names in os.walk(out) for n in names):
                    p.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.001)
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == -signal.SIGKILL, "the convert ended before its temporary file was seen"
    r = cli("convert", str(src), str(out / "b.safetensors"))
    assert r.returncode == 0, r.stderr[-1500:]
    assert sorted(os.listdir(out)) == ["b.safetensors"], "every hidden leftover is removed"


def test_pipes_and_devices_are_written_into_and_folders_are_refused_before_the_work(tmp_path, tiny_st, small_data):
    import threading

    from safetensors.torch import load

    fifo = tmp_path / "stream.safetensors"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = cli("convert", str(tiny_st), str(fifo))
    reader.join(timeout=60)
    assert r.returncode == 0, r.stderr[-1500:]
    assert stat_is_fifo(fifo) and len(load(got[0])) > 0, "the pipe is still a pipe and got the whole file"
    null = tmp_path / "null.safetensors"
    null.symlink_to("/dev/null")  # a device under a name with the output's suffix (as /dev/stdout would be)
    r = cli("convert", str(tiny_st), str(null))
    assert r.returncode == 0 and null.is_symlink() and Path("/dev/null").is_char_device(), r.stderr[-1500:]
    assert temps(tmp_path) == []
    folder = tmp_path / "a_folder.safetensors"
    folder.mkdir()
    # (embed --out into a folder is not this case: a folder there is the sharded output, see test_embed_scale)
    for args in (["convert", str(tiny_st), str(folder)], ["convert", str(tiny_st), str(folder), "--force"],
                 ["eval", "knn", str(tiny_st), "--data", str(small_data), "--val", str(small_data), "--json",
                  str(folder), "--force", "--input-size", "32"]):
        r = cli(*args)
        assert r.returncode == 2 and f"{folder} is a folder" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "pass --force" not in r.stderr
    assert list(folder.iterdir()) == []


def stat_is_fifo(path: Path) -> bool:
    import stat as st

    return st.S_ISFIFO(os.stat(path).st_mode)


# ------------------------------------------------------------------------------------------------ files and names


def _bomb_jpeg(path: Path, width: int = 24000, height: int = 16000) -> Path:
    """A tiny JPEG whose header declares ``width`` x ``height`` pixels (a decompression bomb of a few hundred
    bytes)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_skipped_unverified_too(tmp_path):
    import resource

    from sslhub.data import ImageFolderDataset
    from sslhub.data.decode import UnreadableImageError, read_image_uint8

    bomb = _bomb_jpeg(tmp_path / "bomb.jpg")
    assert bomb.stat().st_size < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UnreadableImageError, match=r"bomb\.jpg: cannot decode image .*(decompression bomb|exceed)"):
        read_image_uint8(bomb, 32)
    ds = ImageFolderDataset(tmp_path, decode_size=32, verify=False)  # as the training kNN monitor reads its folder
    assert ds[0] is None and ds.skipped == 1
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f"the bomb was decoded ({grown_mib:.0f} MiB more)"


def test_a_symlink_loop_is_followed_once(tmp_path, small_data):
    from sslhub.data import ImageFolderDataset

    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    cls = sorted(data.iterdir())[0]
    (cls / "loop").symlink_to("..", target_is_directory=True)  # data/<cls>/loop -> data
    (data / "alias").symlink_to(cls.name, target_is_directory=True)  # a second name for a class folder
    ds = ImageFolderDataset(data, decode_size=32)
    assert len(ds) == 24 + 8, "every image once per class folder, the loop not followed again"


def test_file_names_that_are_not_utf8_are_written_losslessly(tmp_path, tiny_st, small_data):
    import csv

    data = tmp_path / "data" / "cls"
    data.mkdir(parents=True)
    src = sorted(small_data.rglob("*.jpg"))[:3]
    raw_names = [b"caf\xe9.jpg", b"\xff\xfe.jpg", "ok.jpg".encode()]  # Latin-1 and invalid bytes, as on old disks
    for p, raw in zip(src, raw_names):
        with open(os.path.join(os.fsencode(data), raw), "wb") as f:
            f.write(p.read_bytes())
    out = tmp_path / "e.csv"
    r = cli("embed", str(tiny_st), str(tmp_path / "data"), "--out", str(out), "--input-size", "32", "--device", "cpu")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.reader(f))[1:]
    got = sorted(os.fsencode(row[0]) for row in rows)
    assert got == sorted(b"cls/" + n for n in raw_names), "the bytes of each name come back"


def test_overlapping_tensor_views_convert(tmp_path):
    from safetensors.torch import load_file

    import sslhub
    from sslhub.backbones import create_backbone

    sd = create_backbone("resnet-9", width=0.0625).state_dict()
    flat = torch.cat([v.reshape(-1).float() for v in sd.values()] + [torch.zeros(8)])
    views, off, overlapped = {}, 0, False
    for k, v in sd.items():  # every tensor a view into one buffer; one overlaps the next
        views[f"model.backbone.{k}"] = flat[off : off + v.numel()].view(v.shape) if v.is_floating_point() else v
        step = v.numel() // 2 if v.ndim == 4 and not overlapped else v.numel()
        overlapped |= step != v.numel()
        off += step
    assert overlapped
    torch.save({"state_dict": views}, tmp_path / "views.ckpt")
    out = sslhub.convert(tmp_path / "views.ckpt", tmp_path / "views.safetensors")
    back = load_file(out)
    loaded = torch.load(tmp_path / "views.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(back[k], v) for k, v in loaded.items() if k in back) and len(back) > 10


def test_embeddings_that_are_not_finite_are_not_written(tmp_path, caplog):
    from sslhub.evaluation import Features
    from sslhub.evaluation.embeddings import save_embeddings
    from sslhub.evaluation.finite import NonFiniteError

    feats = torch.randn(4, 3)
    feats[2, 1] = float("inf")
    f = Features(feats, torch.zeros(4, dtype=torch.long), [f"{i}.jpg" for i in range(4)])
    for suffix in (".csv", ".safetensors", ".npy"):
        with pytest.raises(NonFiniteError, match=rf"1 of 4 rows of the embeddings for .*e{suffix} are not finite"):
            save_embeddings(f, tmp_path / f"e{suffix}")
    assert sorted(os.listdir(tmp_path)) == []
    with caplog.at_level("WARNING"):
        save_embeddings(f, tmp_path / "e.npy", allow_non_finite=True)
    assert "written anyway" in caplog.text and (tmp_path / "e.npy").exists()


def test_non_finite_screen_misses_nothing_and_overflowing_sums_are_not_flagged():
    """The load's NaN/Inf check screens with one sum per tensor: every NaN or Inf is found, and a finite tensor whose
    sum overflows (fp16 and fp32 alike) is not reported."""
    from sslhub.checkpoints.remap import non_finite
    from sslhub.evaluation.finite import non_finite_tensors

    big32 = torch.full((4,), 3e38)  # finite, sum overflows float32
    big16 = torch.full((8,), 6e4, dtype=torch.float16)  # finite, sum overflows float16
    nan_one = torch.zeros(1000)
    nan_one[517] = float("nan")
    both_inf = torch.tensor([float("inf"), float("-inf"), 1.0])  # the sum is NaN
    pos_inf = torch.tensor([1.0, float("inf")], dtype=torch.bfloat16)
    tensors = {"ok": torch.randn(3, 3), "big32": big32, "big16": big16, "nan": nan_one, "infs": both_inf,
               "bf16": pos_inf, "empty": torch.empty(0), "ints": torch.arange(3)}  # fmt: skip
    assert non_finite(tensors) == ["nan", "infs", "bf16"]
    assert non_finite_tensors(tensors.items()) == ["nan", "infs", "bf16"]
    assert non_finite({}) == [] and non_finite({"i": torch.arange(2)}) == []
