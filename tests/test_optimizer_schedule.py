"""The learning rate a recipe trains with: the batch-size scaling rule (linear: Goyal et al. 2017, lr x B / 256;
sqrt: LAMB/LARS practice), the warmup and the cosine decay to ``min_lr_ratio``, and the values a real run records
in ``metrics.jsonl``. Before these tests no test looked at the learning rate: dropping the scaling rule or the
warmup passed the suite."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import sslhub
from sslhub.backbones import create_backbone
from sslhub.methods import build_method
from sslhub.recipes import get_recipe
from sslhub.training.trainer import _lr_lambda, _optimizer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini/train"


def _model():
    bb = create_backbone("resnet-9", width=0.0625)
    return build_method("simclr", bb, bb.num_features, out_dim=8)


@pytest.mark.parametrize(
    "name, scaling, batch, want",
    [
        ("sgd", "linear", 64, 0.06 * 64 / 256),
        ("sgd", "linear", 512, 0.06 * 2),
        ("sgd", "sqrt", 64, 0.06 * 0.5),
        ("sgd", "none", 64, 0.06),
        ("adamw", "linear", 128, 0.06 * 0.5),
        ("lars", "linear", 1024, 0.06 * 4),
        ("lamb", "sqrt", 1024, 0.06 * 2),
    ],
)
def test_the_base_lr_is_scaled_by_the_batch_size_rule(name, scaling, batch, want):
    r = get_recipe("simclr-resnet-18", [f"optimizer.name={name}", "optimizer.lr=0.06", f"optimizer.lr_scaling={scaling}",
                                        "optimizer.reference_batch_size=256"])  # fmt: skip
    opt = _optimizer(r, _model(), batch)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([want] * len(lrs), rel=1e-12) and lrs


def test_warmup_then_cosine_to_the_floor():
    r = {"schedule": {"warmup_epochs": 2, "min_lr_ratio": 0.1}}
    fn = _lr_lambda(r, steps_per_epoch=5, epochs=10)  # 10 warmup steps of 50
    assert [fn(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])  # linear ramp, peak at the last warmup step
    assert fn(10) == pytest.approx(1.0)  # cosine from the peak...
    assert fn(30) == pytest.approx(0.1 + 0.9 * 0.5)  # ...half way down at the middle of the decay...
    assert fn(20) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert fn(50) == pytest.approx(0.1) and fn(60) == pytest.approx(0.1)  # ...to the floor, and stays there
    assert all(fn(s) >= fn(s + 1) for s in range(10, 60))
    long_warmup = _lr_lambda({"schedule": {"warmup_epochs": 8}}, steps_per_epoch=5, epochs=10)
    assert long_warmup(24) == pytest.approx(1.0) and long_warmup(23) < 1.0  # clipped to half the run (25 steps)
    no_warmup = _lr_lambda({}, steps_per_epoch=5, epochs=10)
    assert no_warmup(0) == pytest.approx(1.0) and no_warmup(50) == pytest.approx(0.0)


def test_a_run_records_the_scaled_and_scheduled_lr(tmp_path):
    data = tmp_path / "data"
    for cls in sorted(p for p in DATA.iterdir() if p.is_dir())[:2]:
        (data / cls.name).mkdir(parents=True)
        for f in sorted(cls.glob("*.jpg"))[:8]:
            shutil.copy(f, data / cls.name / f.name)
    over = ["backbone.width=0.0625", "batch_size=8", "input_size=32", "monitor_every=0", "model.out_dim=8",
            "optimizer.lr=0.06", "optimizer.reference_batch_size=256", "schedule.warmup_epochs=0",
            "schedule.min_lr_ratio=0.1"]  # fmt: skip
    run = sslhub.train("simclr-resnet-9", data, tmp_path / "run", epochs=2, overrides=over, max_steps_per_epoch=2,
                       progress=False, device="cpu")  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    peak = 0.06 * 8 / 256
    # the lr after each epoch's last step: 2 of 4 steps (half way down the cosine), then 4 of 4 (the floor)
    assert [r["lr"] for r in rows] == pytest.approx([peak * (0.1 + 0.9 * 0.5), peak * 0.1], rel=1e-9)
