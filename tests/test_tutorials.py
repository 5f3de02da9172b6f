"""The tutorials in scripts/tutorials/ run as a user runs them (a subprocess, ``--quick``, the embedded CC0 photos).

Each test checks the exit code and the printed results block, then re-checks the files the tutorial wrote with the
target library itself (torchvision, timm, Lightly's documented Worker loader) instead of trusting the printout.
The four scripts run two at a time (each uses one thread) in the background while the tests check the ones
that have finished.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "scripts" / "tutorials"
DATA = ROOT / "training" / "data" / "clothing10_mini"
# Longest first, so that the two slots finish together.
NAMES = ("finetune_clothing", "detection_fasterrcnn", "timm_interop", "worker_roundtrip")
PARALLEL = 2
TIMEOUT_S = 300


class Run:
    """One finished tutorial subprocess: exit code, output, and its --out folder."""

    def __init__(self, name: str, out: Path, returncode: int, stdout: str, stderr: str, seconds: float) -> None:
        self.name, self.out, self.returncode, self.seconds = name, out, returncode, seconds
        self.stdout, self.stderr = stdout, stderr

    @property
    def results(self) -> dict:
        return json.loads((self.out / "results.json").read_text())

    def line(self, label: str) -> str:
        """The results-block line that starts with ``label`` (the block follows the ``== tutorial`` header)."""
        block = self.stdout.split("\n== tutorial", 1)[-1]
        found = [ln for ln in block.splitlines() if ln.startswith(label + " ")]
        assert len(found) == 1, f"{self.name}: expected one '{label}' line in\n{self.stdout}"
        return found[0]

    def check_ok(self) -> None:
        assert self.returncode == 0, (
            f"{self.name} exited {self.returncode} after {self.seconds:.0f} s:\n{self.stdout}\n{self.stderr}"
        )
        assert self.line("result").split()[-1] == "OK"
        assert self.results["ok"] is True


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _run(name: str, out: Path) -> Run:
    cmd = [sys.executable, str(TUTORIALS / f"{name}.py"), "--quick", "--out", str(out)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:  # its captured output is bytes even with text=True
        code, stdout, stderr = -9, _text(e.stdout), _text(e.stderr) + f"\n[killed after {TIMEOUT_S} s]"
    return Run(name, out, code, stdout, stderr, time.monotonic() - t0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """All tutorials start at once, two at a time; a test waits for its own, so its checks overlap the others."""
    pool = ThreadPoolExecutor(max_workers=PARALLEL)
    futures = {n: pool.submit(_run, n, tmp_path_factory.mktemp(n)) for n in NAMES}
    yield {n: f.result for n, f in futures.items()}
    pool.shutdown(wait=True, cancel_futures=True)


def _floats(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"[-+]?\d+\.\d+(?:e[-+]\d+)?", text)]


# --- (a) finetuning ---------------------------------------------------------------------------------------------


def test_finetune_clothing(runs):
    from sslhub.evaluation import knn_eval

    import sslhub

    run = runs["finetune_clothing"]()
    run.check_ok()
    res = run.results
    ssl, rnd = res["finetune"]["ssl"], res["finetune"]["random_init"]
    printed = _floats(run.line("finetune top-1"))
    assert printed[:2] == [round(ssl["value"], 1), round(rnd["value"], 1)]
    assert ssl["metric"] == rnd["metric"] == "finetune_top1"
    assert ssl["protocol"]["epochs"] == 1 and res["ssl_epochs"] == 2 == len(res["ssl_loss"])
    n_val = sum(1 for p in (DATA / "val").rglob("*") if p.is_file())
    assert ssl["protocol"]["num_val"] == rnd["protocol"]["num_val"] == n_val == res["num_val"]
    assert res["num_classes"] == len([d for d in (DATA / "train").iterdir() if d.is_dir()])
    # The printed kNN accuracy of the SSL weights is what the weights the run wrote really give.
    model = sslhub.load_pretrained(run.out / "ssl_run" / "model.safetensors")
    assert model.pretrained_cfg["arch"] == "resnet-18" and model.num_features == 128  # the mini recipe: width 0.25
    knn = knn_eval(model, DATA / "train", DATA / "val", k=res["knn"]["ssl"]["protocol"]["k"], input_size=32,
                   num_workers=0)  # fmt: skip
    assert knn["value"] == pytest.approx(res["knn"]["ssl"]["value"], abs=1e-6)
    assert _floats(run.line("kNN top-1"))[0] == round(knn["value"], 1)


# --- (b) detection ----------------------------------------------------------------------------------------------


def test_detection_fasterrcnn(runs):
    import torchvision
    import yaml
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    run = runs["detection_fasterrcnn"]()
    run.check_ok()
    res = run.results
    # The printed per-step losses are the recorded ones; the loss on the training canvases fell.
    steps = [_floats(ln)[0] for ln in run.stdout.splitlines() if re.match(r"\s+step\s+\d+\s+loss", ln)]
    assert steps == [round(h["loss"], 3) for h in res["losses"]] and len(steps) == 6
    before, after = _floats(run.line("detector loss"))[:2]
    assert [before, after] == [round(res["loss_before"], 3), round(res["loss_after"], 3)]
    assert after < before

    # The export loads strictly into the detector's backbone body (built on the meta device: no init cost).
    sd = torch.load(run.out / "resnet50_torchvision.pth", map_location="cpu", weights_only=True)
    with torch.device("meta"):
        detector = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    detector.backbone.body.load_state_dict(sd, strict=True, assign=True)
    assert float(res["body_vs_sslhub_max_abs_diff"]) <= 1e-4

    # The Detectron2 config: printed as written, with what torchvision-layout R-50 weights need.
    text = (run.out / "resnet50_d2.yaml").read_text()
    printed = run.stdout.split("detectron2 config", 1)[1].split("\n", 1)[1].split("\nresult", 1)[0]
    assert [ln.strip() for ln in printed.splitlines()] == [ln.strip() for ln in text.splitlines()]
    cfg = yaml.safe_load(text)
    assert cfg["MODEL"]["RESNETS"] == {"DEPTH": 50, "STRIDE_IN_1X1": False}
    assert cfg["INPUT"]["FORMAT"] == "RGB"
    assert Path(cfg["MODEL"]["WEIGHTS"]) == (run.out / "resnet50_d2.pkl").resolve()
    # The pretraining normalised with ImageNet statistics: torchvision's own preset for ResNet-50, x255.
    preset = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert cfg["MODEL"]["PIXEL_MEAN"] == pytest.approx([255 * m for m in preset.mean])
    assert cfg["MODEL"]["PIXEL_STD"] == pytest.approx([255 * s for s in preset.std])
    assert res["detectron2_tensors"] == sum(not k.endswith("num_batches_tracked") for k in sd)


# --- (c) timm ---------------------------------------------------------------------------------------------------


def test_timm_interop(runs):
    import timm

    import sslhub

    run = runs["timm_interop"]()
    run.check_ok()
    res = run.results
    assert [_floats(ln)[-1] for ln in run.stdout.splitlines() if ln.startswith("max |diff|")] == [0.0, 0.0]
    assert res["timm_kwargs"] == {"patch_size": 4, "img_size": 32}  # mae-vit-tiny-p4-32 is not timm's default
    ref_model = sslhub.load_pretrained(run.out / "run" / "model.safetensors")
    from_file = timm.create_model(
        res["timm_arch"], num_classes=0, checkpoint_path=res["export"], **res["timm_kwargs"]
    ).eval()
    from_hub = timm.create_model(f"local-dir:{res['hub_folder']}", pretrained=True).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = ref_model(x)
        assert torch.equal(from_file(x), ref)
        assert torch.equal(from_hub(x), ref)


# --- (d) Worker round trip --------------------------------------------------------------------------------------


def test_worker_roundtrip(runs):
    lr = pytest.importorskip("lightly_refs")

    run = runs["worker_roundtrip"]()
    run.check_ok()
    res = run.results
    diffs = [_floats(ln)[-1] for ln in run.stdout.splitlines() if ln.startswith("max |diff|")]
    assert diffs == [0.0] * 8 and res["lossless_roundtrip"] is True
    assert res["published_files"] == ["README.md", "config.json", "model.safetensors"]
    # Lightly's documented loader (the tests' copy) reads the file made from the published folder and gives the
    # original checkpoint's features; and the checkpoint holds trained BatchNorm statistics, not init values that
    # would hide a swapped or dropped norm tensor.
    original = lr.documented_worker_loader(run.out / "checkpoint.ckpt", "resnet-18", 1.0)
    back = lr.documented_worker_loader(run.out / "checkpoint_from_hub.ckpt", "resnet-18", 1.0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(back(x), original(x))
    sd = torch.load(run.out / "checkpoint.ckpt", weights_only=True)["state_dict"]
    assert not torch.equal(sd["model.backbone.0.running_mean"], torch.zeros(3))


def test_tutorials_are_listed_in_the_readme():
    readme = (TUTORIALS / "README.md").read_text()
    scripts = sorted(p.stem for p in TUTORIALS.glob("*.py") if not p.name.startswith("_"))
    assert scripts == sorted(NAMES)
    for name in scripts:
        assert f"scripts/tutorials/{name}.py" in readme
