"""``sslhub train --logger``: each experiment logger writes what its own reader reads back: TensorBoard's event
reader, MLflow's client on the run's local store, and W&B's offline run file (parsed with W&B's protobuf records).
The scalars equal ``metrics.jsonl``; the preview grid and the curves arrive as images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini"
RECIPE = "simclr-resnet-18-mini"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    full = {**base, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1",
            "SSLHUB_OFFLINE": "1", **(env or {})}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True, env=full,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    for cls in ("hat", "shoes"):
        (root / cls).mkdir(parents=True)
        for f in sorted((DATA / "train" / cls).iterdir())[:6]:
            shutil.copy(f, root / cls / f.name)
    return root


def _train(data: Path, out: Path, *extra: str, epochs: int = 2, env: dict[str, str] | None = None):
    p = cli("train", RECIPE, "--data", str(data), "--out", str(out), "--epochs", str(epochs), "-b", "4",
            "--width", "0.125", "--max-steps", "2", "--no-amp", "--set", "monitor_every=0", *extra, env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _scalar_rows(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    keys = {k for r in rows for k, v in r.items() if isinstance(v, (int, float))}
    return {k: [(r["step"], float(r[k])) for r in rows if k in r] for k in keys}


def _wandb_records(path: Path):
    """The records of a W&B run file (LevelDB log blocks of W&B's protobuf ``Record``s, after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            yield rec
            buf = b""


def test_all_three_loggers_read_back(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    out = tmp_path / "run"
    _train(tiny_data, out, "--logger", "tensorboard", "--logger", "mlflow", "--logger", "wandb",
           env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})  # fmt: skip
    rows = _rows(out)
    assert len(rows) == 2
    expected = _scalar_rows(rows)
    assert {"loss", "lr", "step", "epoch", "images_per_s"} <= expected.keys()

    # TensorBoard: its own event reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == expected.keys()
    for key, points in expected.items():
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in points]
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6)
    assert {"preview", "curves"} <= set(acc.Tags()["images"])
    assert acc.Images("preview")[0].width > 96 and acc.Images("curves")[0].step == rows[-1]["step"]

    # MLflow: its client on the run's local store
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("sslhub").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["name"] == RECIPE and run.data.params["batch_size"] == "4"
    for key, points in expected.items():
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert [s for s, _ in got] == [s for s, _ in points]
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"preview.png", "curves.png"}

    # W&B offline: the run file's history records
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    history: dict[int, dict[str, str]] = {}
    exit_codes = []
    for rec in _wandb_records(run_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or ".".join(i.nested_key): i.value_json for i in rec.history.item}
            history.setdefault(rec.history.step.num, {}).update(items)
        elif kind == "exit":
            exit_codes.append(rec.exit.exit_code)
    assert exit_codes == [0]
    for key, points in expected.items():
        got = [(s, float(h[key])) for s, h in sorted(history.items()) if key in h]
        assert [s for s, _ in got] == [s for s, _ in points]
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6)
    assert "preview._type" in history[0] and "curves._type" in history[rows[-1]["step"]]
    assert any((out / "wandb").glob("offline-run-*/files/media/images/preview_*.png"))


def test_tensorboard_is_the_default_and_a_resume_leaves_no_duplicate_steps(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    _train(tiny_data, out, epochs=1)  # no --logger: TensorBoard, as it is installed
    _train(tiny_data, out, "--resume", epochs=2)
    rows = _rows(out)
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [(e.step, round(e.value, 5)) for e in acc.Scalars("loss")] == [(r["step"], round(r["loss"], 5)) for r in rows]
    _train(tiny_data, out, "--force", "--logger", "none", epochs=1)  # --force removes the old run's event files
    assert not (out / "tensorboard").exists()


def test_unknown_or_missing_logger_fails_before_training(tiny_data, tmp_path):
    p = cli("train", RECIPE, "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--logger", "comet")
    assert p.returncode == 2 and "--logger 'comet'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()
