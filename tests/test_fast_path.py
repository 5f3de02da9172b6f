"""The trainer's opt-in fast path (recipe ``fast:``), LARS against Lightly's, and the CIFAR-10 speedrun recipes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sslhub.backbones import create_backbone
from sslhub.methods import build_method
from sslhub.recipes import get_recipe
from sslhub.training import train
from sslhub.training.fast import FastPath
from sslhub.training.optim import LARS, norm_bias_groups

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini"
TINY = ["backbone.width=0.0625", "batch_size=16", "input_size=32", "schedule.warmup_epochs=0", "model.out_dim=8"]
CPU = torch.device("cpu")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}  # fmt: skip


# ------------------------------------------------------------------------------------------------ LARS


def _lars_model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.Linear(5, 3))
    with torch.no_grad():
        m[4].weight.zero_()  # |p| == 0: LARS must leave this layer's gradient unscaled and undecayed
    return m


def _train_steps(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 4) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 3, 8, 8, generator=gen)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("kwargs", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True, trust_coefficient=0.02),
                                    dict(momentum=0.0)])  # fmt: skip
def test_lars_equals_lightlys_bit_for_bit_and_foreach_to_rounding(kwargs):
    from lightly.utils.lars import LARS as LightlyLARS

    ref, ours, multi = _lars_model(), _lars_model(), _lars_model()
    groups = lambda m: norm_bias_groups(m, 1e-3)  # noqa: E731
    _train_steps(ref, LightlyLARS(groups(ref), lr=0.5, **kwargs))
    _train_steps(ours, LARS(groups(ours), lr=0.5, **kwargs))
    _train_steps(multi, LARS(groups(multi), lr=0.5, foreach=True, **kwargs))
    for (name, a), b, c in zip(ref.state_dict().items(), ours.state_dict().values(), multi.state_dict().values()):
        assert torch.equal(a, b), name
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(ref[0].weight, _lars_model()[0].weight)  # it trained


def test_lars_clip_lr_caps_the_layer_rate_at_the_global_one():
    # one step, no momentum: the update of a decayed layer is lr * min(trust_ratio / lr, 1) * (g + wd * p)
    m = nn.Linear(4, 3)
    p0 = m.weight.detach().clone()
    m(torch.randn(5, 4)).sum().backward()
    g = m.weight.grad.clone()
    LARS([{"params": [m.weight], "weight_decay": 0.1}], lr=0.3, trust_coefficient=10.0, clip_lr=True).step()
    trust = 10.0 * p0.norm() / (g.norm() + 0.1 * p0.norm() + 1e-8)
    assert trust / 0.3 > 1  # the cap applies
    torch.testing.assert_close(m.weight.detach(), p0 - 0.3 * (g + 0.1 * p0))


def test_norm_bias_groups_take_biases_and_norms_out_of_decay():
    m = _lars_model()
    decay, no_decay = norm_bias_groups(m, 0.5)
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(m[0].weight), id(m[3].weight), id(m[4].weight)}
    assert len(no_decay["params"]) == 5  # conv bias, bn weight/bias, two linear biases


# ------------------------------------------------------------------------------------------- fast path


def test_fast_section_is_checked_and_off_means_the_default_path():
    off = FastPath.from_recipe({}, CPU)
    views = [torch.zeros(2, 3, 4, 4)]
    assert off.inputs(views) is views and off.optimizer_kwargs == {} and off.compile_backend is None
    assert not off.grad_scaler_enabled and off.autocast_dtype is None
    assert FastPath.from_recipe({}, torch.device("cuda")).grad_scaler_enabled  # fp16 + GradScaler stays the default
    with pytest.raises(ValueError, match="fast.chanels_last"):
        FastPath.from_recipe({"fast": {"chanels_last": True}}, CPU)
    with pytest.raises(ValueError, match=r"fast.bf16='yes': expected bool"):
        FastPath.from_recipe({"fast": {"bf16": "yes"}}, CPU)


def test_fast_path_pieces_resolve_per_device(caplog):
    r = {"fast": {"compile": True, "fused_optimizer": True, "bf16": True, "channels_last": True},
         "optimizer": {"name": "sgd"}}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="sslhub.training.fast"):
        cpu = FastPath.from_recipe(r, CPU)
    assert cpu.compile_backend is None and cpu.optimizer_kwargs == {"foreach": True} and cpu.bf16
    assert not cpu.channels_last and "fast.channels_last: skipped on cpu" in caplog.text
    assert "fast.compile: skipped on cpu" in caplog.text and "fused sgd needs CUDA" in caplog.text
    gpu = FastPath.from_recipe({**r, "fast": {"compile": True, "fused_optimizer": True, "channels_last": True}},
                               torch.device("cuda"))  # fmt: skip
    assert gpu.compile_backend == "inductor" and gpu.optimizer_kwargs == {"fused": True} and gpu.channels_last
    lars = FastPath.from_recipe({**r, "optimizer": {"name": "lars"}}, torch.device("cuda"))
    assert lars.optimizer_kwargs == {"foreach": True}  # LARS has no fused kernel: its multi-tensor path
    assert FastPath.from_recipe({"fast": {"compile": "aot_eager"}}, CPU).compile_backend == "aot_eager"


def _simclr_step(fast: FastPath) -> tuple[float, list[torch.Tensor]]:
    """Loss and gradients of one SimCLR step on fixed views through ``fast``."""
    torch.manual_seed(0)
    # a small conv net keeps dynamo's tracing cheap; 8+ channels (see the channels_last note in fast.py)
    bb = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                       nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    model = build_method("simclr", bb, 16, out_dim=16)
    fast.prepare_model(model)
    gen = torch.Generator().manual_seed(3)
    views = fast.inputs([torch.randn(8, 3, 32, 32, generator=gen) for _ in range(2)])
    with fast.autocast():
        loss = fast.step_fn(model)(views, (0, 10, 0))
    loss.backward()
    return float(loss.detach()), [p.grad.float().contiguous() for p in model.parameters()]


@pytest.mark.parametrize("spec,tol", [({"channels_last": True}, 1e-4), ({"compile_backend": "aot_eager"}, 1e-4),
                                      ({"bf16": True}, 5e-2)])  # fmt: skip
def test_each_fast_piece_gives_the_same_loss_and_gradients(spec, tol):
    # FastPath built directly: from_recipe skips channels_last on a CPU (see sslhub.training.fast)
    base_loss, base_grads = _simclr_step(FastPath(CPU))
    loss, grads = _simclr_step(FastPath(CPU, **spec))
    assert loss == pytest.approx(base_loss, rel=tol)
    flat, ref = torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in base_grads])
    assert torch.nn.functional.cosine_similarity(flat, ref, dim=0) > 1 - tol
    assert (flat - ref).norm() / ref.norm() < 10 * tol


def test_compile_falls_back_to_eager_when_the_backend_fails(caplog):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    fast = FastPath(CPU, compile_backend=broken_backend)
    model = nn.Linear(3, 2)
    step = fast.step_fn(model)
    x = torch.randn(4, 3)
    with caplog.at_level(logging.WARNING, logger="sslhub.training.fast"):
        out = step(x)
    assert torch.equal(out, model(x)) and "running the model step eagerly" in caplog.text
    assert step.compiled is None  # later steps do not try again


def test_trainer_with_the_fast_path_trains_like_without(tmp_path):
    # compile: dynamo with the "eager" backend (the plumbing; aot_eager's gradients are checked above); bf16 and
    # channels_last (CUDA only in a recipe) are checked on their own above
    kw = dict(epochs=1, max_steps_per_epoch=2, progress=False, device="cpu")
    over = TINY + ["monitor_every=0"]
    runs = {name: train("simclr-resnet-9", DATA / "train", tmp_path / name, overrides=over + extra, **kw)
            for name, extra in [("base", []),
                                ("off", ["fast={channels_last: false, bf16: false, compile: false, fused_optimizer: false}"]),
                                ("fast", ["fast={compile: eager, fused_optimizer: true}"])]}  # fmt: skip
    sd = {k: torch.load(run / "checkpoints/last.ckpt", weights_only=True)["model"] for k, run in runs.items()}
    loss = {k: json.loads((run / "metrics.jsonl").read_text())["loss"] for k, run in runs.items()}
    assert all(torch.equal(sd["base"][k], sd["off"][k]) for k in sd["base"])  # all off is the default path, bit for bit
    assert loss["fast"] == pytest.approx(loss["base"], rel=1e-4)
    assert sd["base"].keys() == sd["fast"].keys()  # compile and channels_last leave the state dict as it was
    for k, v in sd["base"].items():
        torch.testing.assert_close(sd["fast"][k], v, rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_large_batch_optimizers_train_from_a_recipe(tmp_path, name):
    from timm.optim import Lamb

    from sslhub.training.trainer import _optimizer

    r = get_recipe("simclr-resnet-18", TINY + [f"optimizer.name={name}", "optimizer.lr=0.01"])
    bb = create_backbone("resnet-9", width=0.0625)
    model = build_method("simclr", bb, bb.num_features, out_dim=8)
    opt = _optimizer(r, model, 16)
    assert isinstance(opt, LARS if name == "lars" else Lamb)
    assert [g["weight_decay"] for g in opt.param_groups] == [r["optimizer"]["weight_decay"], 0.0]  # norms/biases


# ----------------------------------------------------------------------------------- speedrun recipes


def test_speedrun_recipe_runs_on_cpu_from_the_cli(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sslhub", "train", "simclr-resnet-18-cifar10-speedrun", "--data", str(DATA / "train"),
           "--val", str(DATA / "val"), "--out", str(out), "--epochs", "1", "--max-steps", "1", "--device", "cpu",
           "--set", "backbone.width=0.0625", "--set", "batch_size=16", "--set", "monitor_every=1"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "fast.compile: skipped on cpu" in p.stderr and "fast.channels_last: skipped on cpu" in p.stderr
    assert "fast.fused_optimizer:" not in p.stderr  # LARS: foreach on any device, so no note that fused is skipped
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and 0 <= rows[0]["knn_top1"] <= 100
    assert rows[0]["elapsed_s"] > rows[0]["time_s"] > 0  # wall clock of the run: set-up and monitor included
    r = get_recipe("simclr-resnet-18-cifar10-speedrun")
    assert r["optimizer"]["name"] == "lars" and r["worker"] is None and r["fast"]["compile"] is True
    b = get_recipe("byol-resnet-18-cifar10-speedrun")
    assert b["method"] == "byol" and b["fast"] == r["fast"] and b["batch_size"] == r["batch_size"]


# ------------------------------------------------------------------------------------ scripts/gpu_measure.py


def _gpu_measure():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_measure", ROOT / "scripts" / "gpu_measure.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_measure_dry_run_prints_valid_commands_and_refuses_without_cuda(tmp_path, capsys):
    script = str(ROOT / "scripts" / "gpu_measure.py")
    gm = _gpu_measure()  # in this process (the script's main); also puts scripts/ on sys.path
    assert gm.main([str(tmp_path / "out"), "--dry-run"]) == 0
    stdout = capsys.readouterr().out
    cmds = {line.split("] ")[0][1:]: line.split("] ", 1)[1].split() for line in stdout.splitlines() if line.startswith("[")}
    assert list(cmds) == ["speedrun", "bench", "vit"] and "150 epochs x 50,000 images" in stdout
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    # each printed command parses with the real argument parsers (sslhub's CLI, bench_vs_lightly's)
    from sslhub.cli import build_parser

    train = build_parser().parse_args(cmds["speedrun"][3:])
    assert train.recipe == "simclr-resnet-18-cifar10-speedrun" and train.device == "cuda" and train.val.endswith("test")
    import bench_vs_lightly

    for part, methods in (("bench", "simclr,moco,byol,simsiam,vicreg"), ("vit", "dino_vit,mae")):
        a = bench_vs_lightly.parse_args(cmds[part][2:])
        assert (a.methods, a.epochs, a.workers, a.threads, a.device, a.no_progress) == (methods, 2, 12, 4, "cuda", True)
        assert a.max_train_images == 10000
    # issue 27's command: the ViT part with the modern ViT methods, each a method bench_vs_lightly knows
    assert gm.main([str(tmp_path / "out"), "--dry-run", "--parts", "vit", "--vit-methods", "dino_vit,mae,ibot,dinov2,ijepa"]) == 0
    vit_line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[vit]")][0]
    a = bench_vs_lightly.parse_args(vit_line.split("] ", 1)[1].split()[2:])
    assert a.methods == "dino_vit,mae,ibot,dinov2,ijepa"
    assert set(a.methods.split(",")) <= set(bench_vs_lightly.all_methods())
    bad = subprocess.run([sys.executable, script, "x", "--parts", "speedrun,nope"], capture_output=True, text=True,
                         env=_env(), timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--parts 'speedrun,nope'" in bad.stderr
    if not torch.cuda.is_available():
        p = subprocess.run([sys.executable, script, str(tmp_path / "out")], capture_output=True, text=True, env=_env(),
                           timeout=120)  # fmt: skip
        assert p.returncode == 2 and "no CUDA device" in p.stderr and "Traceback" not in p.stderr
    assert gm.PARTS == ("speedrun", "byol", "bench", "vit")


def test_gpu_measure_stops_a_part_at_the_time_limit_and_summarises_the_curve(tmp_path):
    gm = _gpu_measure()
    rc, wall = gm.run_logged([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"],
                             tmp_path / "slow.log", dict(os.environ), timeout=2.0)  # fmt: skip
    assert rc is None and wall < 20 and "started" in (tmp_path / "slow.log").read_text()
    run = tmp_path / "speedrun"
    run.mkdir()
    rows = [{"epoch": 15, "elapsed_s": 60.0, "knn_top1": 70.0, "images_per_s": 20000.0, "loss": 5.0},
            {"epoch": 30, "elapsed_s": 300.0, "knn_top1": 85.5, "images_per_s": 21000.0, "loss": 4.5},
            {"epoch": 31, "elapsed_s": 310.0, "images_per_s": 21000.0, "loss": 4.4}]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = gm.speedrun_summary(run, 330.0, 0)
    assert s["reached_target_at_minutes"] == 5.0 and s["target_met"] and s["final_knn_top1"] == 85.5
    assert "| 30 | 5.00 | 85.50 | 21000 | 4.5000 |" in (run / "summary.md").read_text()
    assert not gm.speedrun_summary(run, 700.0, 0)["target_met"]  # over 10 minutes end to end


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_speedrun_step_never_waits_for_the_gpu():
    # the speedrun's step (SimCLR loss, bf16 autocast without GradScaler, LARS multi-tensor) queues its kernels
    # without any host-device synchronisation; torch raises on the first one
    dev = torch.device("cuda")
    r = get_recipe("simclr-resnet-18-cifar10-speedrun", ["backbone.width=0.25", "fast.compile=false"])
    fast = FastPath.from_recipe(r, dev)
    bb = create_backbone("resnet-18", width=0.25)
    model = fast.prepare_model(build_method("simclr", bb, bb.num_features, hidden_dim=64, out_dim=32).to(dev))
    from sslhub.training.trainer import _optimizer

    opt = _optimizer(r, model, 64, fast.optimizer_kwargs)
    views = fast.inputs([torch.randn(64, 3, 32, 32, device=dev) for _ in range(2)])
    for sync_mode in ("default", "error", "error"):  # the first step allocates (momentum buffers, cuBLAS handles)
        torch.cuda.set_sync_debug_mode(sync_mode)
        try:
            with fast.autocast():
                loss = model(views, (0, 10, 0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss)
