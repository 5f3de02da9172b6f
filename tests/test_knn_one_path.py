"""One kNN number per model: the training monitor, `sslhub eval knn` on the run's weights and the random-init
baseline are one code path (issue 21), so they agree exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sslhub
from sslhub.backbones import create_backbone, feature_view

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "SSLHUB_OFFLINE": "1"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """4 classes x 10 training / 6 validation images; two short epochs of the Worker-model SimCLR recipe."""
    data = tmp_path_factory.mktemp("knn_data")
    for split, n in (("train", 10), ("val", 6)):
        for cls in ("dress", "hat", "pants", "shoes"):
            (data / split / cls).mkdir(parents=True)
            for f in sorted((DATA / split / cls).iterdir())[:n]:
                shutil.copy(f, data / split / cls / f.name)
    out = tmp_path_factory.mktemp("knn_runs") / "run"
    sslhub.train("simclr-resnet-18-mini", data / "train", out, val=data / "val", epochs=2, device="cpu",
                 progress=False, max_steps_per_epoch=2,
                 overrides=["batch_size=8", "backbone.width=0.125", "knn.k=5", "monitor_every=1", "seed=7"])  # fmt: skip
    return out, data


def test_feature_view_is_what_load_pretrained_rebuilds(run):
    """The monitor's view of a Worker backbone drops the num_ftrs conv, as load_pretrained does by default."""
    backbone = create_backbone("resnet-18", width=0.125, num_ftrs=16).eval()
    view = feature_view(backbone)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert view(x).shape == (2, 64) and backbone(x).shape == (2, 16)
        assert torch.equal(view(x), torch.nn.Sequential(*list(backbone)[:7], *list(backbone)[8:])(x))
    assert view.num_features == 64 and view.pretrained_cfg["num_ftrs"] is None
    assert feature_view(create_backbone("resnet-18", width=0.125)) is not None


def test_monitor_and_eval_knn_agree_exactly(run, tmp_path):
    out, data = run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    monitor, baseline = rows[-1]["knn_top1"], rows[0]["knn_top1_random_init"]
    common = ["--data", str(data / "train"), "--val", str(data / "val"), "--input-size", "32", "--k", "5",
              "--device", "cpu", "--no-record"]  # fmt: skip
    p = _cli("-q", "eval", "knn", str(out / "model.safetensors"), *common, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["value"] == monitor  # the same number, not a close one
    # the random-init baseline of a run's weights is the run's own untrained backbone (its seed)
    p = _cli("-q", "eval", "knn", str(out / "model.safetensors"), *common, "--random-init")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"kNN top-1 {baseline:.2f}% ") and p.stdout.rstrip().endswith("[random init]")
    # and the Worker checkpoint.ckpt of the run gives the same features, so the same number too
    model = sslhub.load_pretrained(out / "checkpoint.ckpt")
    from sslhub.evaluation import knn_eval

    result = knn_eval(model, data / "train", data / "val", k=5, input_size=32, device="cpu", num_workers=0)
    assert result["value"] == monitor
