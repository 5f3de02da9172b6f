"""``sslhub info`` says which reader of the one registry matched a file, and on what (one line), through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import upstream_fixtures_2026 as uf26
from shared_data import ROOT

import sslhub
from sslhub.backbones import create_backbone
from sslhub.checkpoints.readers import READERS


def _worker(tmp: Path) -> Path:
    from lightly_refs import (  # needs the lightly test extra
        save_worker_ckpt,
        worker_model,
    )

    return save_worker_ckpt(worker_model("resnet-9", width=0.0625, num_ftrs=16, out_dim=8), tmp / "checkpoint.ckpt")


def _plain(tmp: Path) -> Path:
    torch.save(create_backbone("resnet18").state_dict(), tmp / "resnet18.pth")
    return tmp / "resnet18.pth"


CASES = {
    "dinov3": (lambda tmp: uf26.dinov3_vit(tmp / "v.pth")[0], "dinov3 (keys 'storage_tokens', 'rope_embed.periods')"),
    "worker": (_worker, "lightly-worker (keys 'model.backbone.0.running_mean', 'model.backbone.3.0.conv1.weight')"),
    "sslhub": (lambda tmp: sslhub.convert(_worker(tmp), tmp / "w.safetensors"),
               "sslhub (safetensors header format='sslhub', arch='resnet-9')"),
    "plain": (_plain, "state-dict (keys 'conv1.weight', 'layer1.0.conv1.weight')"),
}  # fmt: skip


def _reader_lines(stdout: str) -> list[list[str]]:
    return [ln.split(None, 1) for ln in stdout.splitlines() if ln.startswith("reader ")]


@pytest.mark.parametrize("case", ["dinov3", "worker"])
def test_cli_info_prints_the_reader_and_why_on_one_line(case, tmp_path):
    """Through the installed entry point, as a user runs it."""
    make, want = CASES[case]
    path = make(tmp_path)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "sslhub", "info", str(path)], capture_output=True, text=True, env=env,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _reader_lines(r.stdout) == [["reader", want]], r.stdout


@pytest.mark.parametrize("case", ["sslhub", "plain"])
def test_cli_info_reader_line_in_process(case, tmp_path, capsys):
    """The same line for the other kinds of reader (in process: a subprocess each would add ~10 s)."""
    from sslhub.cli import main

    make, want = CASES[case]
    path = make(tmp_path)
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    assert _reader_lines(capsys.readouterr().out) == [["reader", want]]


def test_info_json_names_the_lightning_benchmark_reader(tmp_path):
    sd = {f"backbone.{k}": v for k, v in create_backbone("resnet18").state_dict().items()}
    torch.save({"state_dict": sd, "pytorch-lightning_version": "2.4.0", "epoch": 3}, tmp_path / "b.ckpt")
    out = sslhub.info(tmp_path / "b.ckpt")
    assert (out["reader"], out["layout"]) == ("lightly-benchmark", "lightly-benchmark")
    assert out["matched_on"] == "'pytorch-lightning_version' in the wrapper, keys 'backbone.conv1.weight', " \
                                "'backbone.layer1.0.conv1.weight'"


def test_the_registry_names_each_reader_once_sslhub_first_plain_last():
    names = [r.name for r in READERS]
    assert len(names) == len(set(names))
    assert names[0] == "sslhub" and names[-3:] == ["lightly-worker", "lightly-benchmark", "state-dict"]
