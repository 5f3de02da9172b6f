"""Recipes and the trainer: tiny runs on the embedded data, resume equality, Worker compatibility, DDP gather."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from conftest_servers import free_port
from gloo_ranks import run_ranks

import sslhub
from sslhub.recipes import get_recipe, list_recipes
from sslhub.training import TrainingError, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training/data/clothing10_mini"
TINY = ["backbone.width=0.0625", "batch_size=16", "input_size=32", "schedule.warmup_epochs=0"]


def test_registry_names_and_overrides():
    names = list_recipes()
    for method in ("simclr", "moco", "byol", "simsiam", "barlowtwins", "vicreg", "dcl", "dclw", "nnclr", "swav", "tico", "dino", "densecl"):
        assert f"{method}-resnet-18" in names and f"{method}-resnet50" in names
    r = get_recipe("moco-resnet-18", ["optimizer.lr=0.5", "model.memory_bank_size=64"])
    assert r["optimizer"]["lr"] == 0.5 and r["model"]["memory_bank_size"] == 64 and r["backbone"]["arch"] == "resnet-18"
    assert get_recipe("moco-resnet-18")["optimizer"]["lr"] != 0.5  # overrides do not leak into the registry
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("nope-resnet-18")


@pytest.mark.parametrize("recipe,extra", [
    ("byol-resnet-9", ["model.hidden_dim=32", "model.out_dim=16"]),
    ("moco-resnet-9", ["model.memory_bank_size=32", "model.out_dim=16"]),
    ("swav-resnet-9", ["model.hidden_dim=32", "model.out_dim=16", "model.n_prototypes=8"]),
    ("dino-resnet-9", ["model.hidden_dim=32", "model.bottleneck_dim=8", "model.out_dim=32"]),
    ("densecl-resnet-9", ["model.memory_bank_size=64", "model.out_dim=16"]),
])  # fmt: skip
def test_methods_train_and_load(tmp_path, recipe, extra):
    run = train(recipe, DATA / "train", tmp_path / "run", epochs=1, overrides=TINY + extra, max_steps_per_epoch=2, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 2 and math.isfinite(rows[0]["loss"])
    model = sslhub.load_pretrained(run / "model.safetensors")
    assert model.pretrained_cfg["method"] == recipe.split("-")[0]
    x = torch.randn(2, 3, 32, 32)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["model"]
    prefix = "teacher_backbone." if recipe.startswith("dino") else "backbone."
    ref = sslhub.create_backbone("resnet-9", width=0.0625)
    ref.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    with torch.no_grad():
        assert torch.equal(model(x), ref.eval()(x))


def test_simclr_worker_checkpoint_loads_in_lightly(tmp_path):
    lr = pytest.importorskip("lightly_refs")
    run = train("simclr-resnet-18", DATA / "train", tmp_path / "run", val=DATA / "val", epochs=1,
                overrides=TINY + ["worker.num_ftrs=16", "model.out_dim=8"], max_steps_per_epoch=2, progress=False)  # fmt: skip
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 <= row["knn_top1"] <= 100 and row["embedding_std"] > 0
    ckpt = run / "checkpoint.ckpt"
    cli = lr.cli_strict_load(ckpt, "resnet-18", 0.0625, 16, 8)  # Lightly CLI's strict loader accepts it
    doc = lr.documented_worker_loader(ckpt, "resnet-18", 0.0625)
    ours = sslhub.load_pretrained(ckpt)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), doc(x))
        assert torch.equal(sslhub.load_pretrained(ckpt, features="embedding")(x), cli.backbone(x).flatten(1))


# 2 workers: "auto" augments in them (recreated each epoch); "device": they only decode and persist across epochs
@pytest.fixture
def one_thread(monkeypatch):
    """Both runs of a bit-exact comparison on one torch thread: the machine rule picks fewer threads when the load
    is high, and another thread count changes the float sums. torch's count is restored afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("workers,place", [(0, "auto"), (2, "auto"), (2, "device")])
def test_resume_after_interruption_gives_same_weights(tmp_path, workers, place, one_thread):
    over = TINY + ["model.out_dim=8"]
    kw = dict(overrides=over, max_steps_per_epoch=2, progress=False, deterministic=True, device="cpu",
              num_workers=workers, augment_on=place)  # fmt: skip
    full = train("simclr-resnet-9", DATA / "train", tmp_path / "full", epochs=3, **kw)
    # "kill" after epoch 2: run 2 epochs of a 3-epoch schedule by stopping inside epoch 3
    part = tmp_path / "part"
    import sslhub.training.trainer as T

    calls = {"n": 0}
    orig = T.SSLMethod.after_step

    def crash(self, step, total):
        calls["n"] += 1
        if step == 5:  # inside epoch 3 (steps 4, 5)
            raise KeyboardInterrupt
        return orig(self, step, total)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(T.SSLMethod, "after_step", crash)
        with pytest.raises(KeyboardInterrupt):
            train("simclr-resnet-9", DATA / "train", part, epochs=3, **kw)
    assert torch.load(part / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 2
    assert not (part / "model.safetensors").exists()
    train("simclr-resnet-9", DATA / "train", part, epochs=3, resume=True, **kw)
    a = torch.load(full / "checkpoints/last.ckpt", weights_only=True)["model"]
    b = torch.load(part / "checkpoints/last.ckpt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    torch.use_deterministic_algorithms(False)
    import yaml

    expected = "workers" if workers and place == "auto" else "device"
    assert yaml.safe_load((full / "config.yaml").read_text())["augment_on"] == expected


def test_augmentation_place_is_checked_and_both_places_train(tmp_path):
    kw = dict(overrides=TINY + ["model.out_dim=8"], epochs=1, max_steps_per_epoch=2, progress=False, device="cpu")
    with pytest.raises(ValueError, match="needs DataLoader workers"):
        train("simclr-resnet-9", DATA / "train", tmp_path / "a", augment_on="workers", **kw)
    with pytest.raises(ValueError, match="use 'auto', 'workers' or 'device'"):
        train("simclr-resnet-9", DATA / "train", tmp_path / "a", augment_on="gpu", **kw)
    losses = {}
    for place in ("workers", "device"):
        run = train("simclr-resnet-9", DATA / "train", tmp_path / place, num_workers=2, augment_on=place, **kw)
        losses[place] = json.loads((run / "metrics.jsonl").read_text())["loss"]
    # same initial weights and data order, different augmentation draws: close losses, not equal ones
    assert losses["workers"] != losses["device"]
    assert abs(losses["workers"] - losses["device"]) < 0.5


def test_nan_loss_stops_with_step_and_keeps_last_good(tmp_path):
    from sslhub.methods import SimCLR

    orig = SimCLR.forward

    def poisoned(self, views, progress):
        loss = orig(self, views, progress)
        return loss * float("nan") if progress[0] == 3 else loss

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SimCLR, "forward", poisoned)
        with pytest.raises(TrainingError, match=r"epoch 2, step 3;.*last good state is .*last\.ckpt"):
            train("simclr-resnet-9", DATA / "train", tmp_path / "run", epochs=2, overrides=TINY,
                  max_steps_per_epoch=2, progress=False)  # fmt: skip
    assert torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_loss_log_reports_the_first_non_finite_step_when_read():
    """On a GPU the trainer reads losses back every few steps only; the first bad step is still the one named."""
    from sslhub.training.trainer import _LossLog

    log = _LossLog(torch.device("cpu"))
    log.every = 3  # as on a GPU, where every step's read would stall the host
    values = [1.0, 2.0, float("nan"), 4.0, float("inf"), 6.0]
    seen = [log.add(torch.tensor(v), step) for step, v in enumerate(values, start=10)]
    assert seen == [None, None, 12, None, None, 12]  # read at the 3rd and 6th add; the first bad step sticks
    ok = _LossLog(torch.device("cpu"))
    assert [ok.add(torch.tensor(v), s) for s, v in enumerate([1.0, 2.0])] == [None, None]
    assert ok.read() is None and ok.mean == 1.5 and ok.last == 1.5


def _gather_worker(rank: int, world: int, port: int, z0: torch.Tensor, z1: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    from sslhub.losses import NTXentLoss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = z0.shape[0] // world
    a = z0[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    b = z1[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    loss = NTXentLoss(temperature=0.3, gather_distributed=True)(a, b)
    loss.backward()
    torch.save({"loss": loss.detach(), "grad": a.grad}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_gathered_loss_equals_single_process_loss(tmp_path):
    from sslhub.losses import NTXentLoss

    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    res = run_ranks(_gather_worker, tmp_path, z0, z1)
    a = z0.clone().requires_grad_(True)
    full = NTXentLoss(temperature=0.3)(a, z1)
    full.backward()
    mean = (res[0]["loss"] + res[1]["loss"]) / 2
    assert abs(mean.item() - full.item()) <= 1e-5
    # gradients flow through the gather: summed over ranks, then averaged as DDP does, they equal the full grads
    grads = torch.cat([res[0]["grad"], res[1]["grad"]])
    assert torch.allclose(grads / 2, a.grad, atol=1e-6)


SMALL_MODEL = {
    "simclr": {"out_dim": 8}, "dcl": {"out_dim": 8}, "dclw": {"out_dim": 8},
    "moco": {"out_dim": 8, "memory_bank_size": 16}, "byol": {"hidden_dim": 16, "out_dim": 8},
    "simsiam": {"out_dim": 16, "pred_hidden_dim": 8}, "barlowtwins": {"hidden_dim": 16, "out_dim": 16},
    "vicreg": {"hidden_dim": 16, "out_dim": 16}, "nnclr": {"hidden_dim": 16, "out_dim": 8, "pred_hidden_dim": 16, "memory_bank_size": 16},
    "swav": {"hidden_dim": 16, "out_dim": 8, "n_prototypes": 4}, "tico": {"hidden_dim": 16, "out_dim": 8},
    "dino": {"hidden_dim": 16, "bottleneck_dim": 8, "out_dim": 16}, "densecl": {"out_dim": 8, "memory_bank_size": 16},
}  # fmt: skip


@pytest.mark.parametrize("method", sorted(SMALL_MODEL))
def test_every_method_trains_its_backbone(method):
    """One optimizer step changes the trained backbone and leaves momentum copies to the EMA update."""
    from sslhub.methods import build_method

    torch.manual_seed(0)
    bb = sslhub.create_backbone("resnet-9", width=0.0625)
    model = build_method(method, bb, bb.num_features, **SMALL_MODEL[method]).train()
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)] + ([torch.randn(4, 3, 16, 16)] * 2 if method in ("swav", "dino") else [])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(views, (0, 10, 0))
    assert torch.isfinite(loss)
    loss.backward()
    model.before_optimizer_step(0)
    opt.step()
    model.after_step(0, 10)
    after = model.state_dict()
    assert not torch.equal(before["backbone.1.weight"], after["backbone.1.weight"])
    ema = [k for k in after if k.startswith(("backbone_momentum.", "teacher_backbone.")) and k.endswith("1.weight")]
    for k in ema:  # EMA copies move towards the student, not by the gradient
        assert not torch.equal(before[k], after[k]), k


def test_torchrun_two_processes_ddp(tmp_path):
    """The same command under torchrun trains with DDP (gloo on CPU); rank 0 alone writes the run."""
    import shutil
    import subprocess
    import sys

    import yaml

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    out = tmp_path / "ddp"
    cmd = [torchrun, "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "sslhub",
           "train", "simclr-resnet-9", "--data", str(DATA / "train"), "--epochs", "1", "--out", str(out),
           "--set", "backbone.width=0.0625", "--set", "batch_size=8", "--set", "model.out_dim=8", "--max-steps", "2",
           "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert yaml.safe_load((out / "config.yaml").read_text())["world_size"] == 2
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["step"] == 2  # one writer, 2 steps of 2x8 images
    assert sslhub.load_pretrained(out / "model.safetensors").num_features == 32


def test_every_recipe_transform_makes_views_of_its_input_size():
    """The trainer builds each recipe's transform at the recipe's size (also two-view ones like BYOL/TiCo)."""
    from sslhub.transforms.recipe import build_recipe_transform

    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    for template in sorted({n.split("-")[0] for n in list_recipes()}):
        name = next(n for n in list_recipes(f"{template}-*"))
        r = get_recipe(name)
        views = build_recipe_transform(r)(images)
        assert tuple(views[0].shape) == (2, 3, r["input_size"], r["input_size"]), name
