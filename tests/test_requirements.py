"""Version gaps are reported as such: the package and the version needed, never "may be truncated"."""

from __future__ import annotations

import pytest
import torch

import sslhub
from sslhub import _requirements
from sslhub._requirements import DependencyError, require


def test_old_torch_names_the_version_instead_of_blaming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "r18.pth"
    torch.save(sslhub.create_backbone("resnet18").state_dict(), path)
    # torch 2.4 as sslhub sees it: no torch.serialization.safe_globals, version 2.4.1
    monkeypatch.delattr(torch.serialization, "safe_globals")
    monkeypatch.setattr(_requirements, "installed_version", lambda dist: "2.4.1" if dist == "torch" else None)
    with pytest.raises(DependencyError) as e:
        sslhub.load_pretrained(path)
    msg = str(e.value)
    assert "needs torch >= 2.5 (installed: 2.4.1)" in msg and "pip install -U 'torch>=2.5'" in msg
    assert str(path) in msg and "truncated" not in msg


def test_require_compares_release_numbers():
    require("torch", "2.5", "x")  # the installed torch is newer
    with pytest.raises(DependencyError, match=r"x needs torch >= 99.0 \(installed: "):
        require("torch", "99.0", "x")
    with pytest.raises(DependencyError, match="not installed"):
        require("no-such-distribution-sslhub", "1.0", "y")


def test_a_dinov3_architecture_on_an_old_timm_names_the_timm_release_that_has_it(monkeypatch):
    """DINOv3 files need timm's DINOv3 models (timm 1.0.20); an older timm gets the version, not just 'unknown'."""
    import timm

    from sslhub.backbones import create_backbone

    monkeypatch.setattr(timm, "__version__", "1.0.3")
    with pytest.raises(ValueError, match=r"needs timm >= 1\.0\.20 \(installed: 1\.0\.3\)"):
        create_backbone("vit_tiny_patch16_dinov3_nonexistent")
    monkeypatch.setattr(timm, "__version__", "1.0.31")  # a current timm: a plain unknown name, no version advice
    with pytest.raises(ValueError) as e:
        create_backbone("vit_tiny_patch16_dinov3_nonexistent")
    assert "needs timm" not in str(e.value)


@pytest.mark.parametrize("torch_version", ["2.5.0", None], ids=["torch-2.5", "installed-torch"])
def test_a_file_pickled_under_numpy_1_loads_on_every_supported_torch(tmp_path, monkeypatch, torch_version):
    """LightlySSL benchmark checkpoints hold np.float64 values pickled under numpy 1.x (``numpy.core.multiarray
    .scalar``). With numpy 2 installed, torch >= 2.6 allows them by an (object, name) pair, which torch 2.5 (the
    floor) does not take: there a same-named forwarder does it. Either way the value loads, and nothing else does."""
    import numpy as np

    from sslhub.checkpoints.io import CheckpointError, load_torch_file

    if torch_version:
        monkeypatch.setattr(torch, "__version__", torch_version)
    path = tmp_path / "bench.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "lr": np.float64(0.25)}, path, _use_new_zipfile_serialization=False)
    # the bytes numpy 1.x writes (legacy format: the pickle's GLOBAL opcode is plain text)
    raw = path.read_bytes().replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
    assert b"numpy.core.multiarray\nscalar" in raw
    path.write_bytes(raw)
    obj = load_torch_file(path)
    assert obj["lr"] == 0.25 and torch.equal(obj["state_dict"]["w"], torch.ones(2))
    # the allow-list stays narrow: another numpy.core.multiarray function is still refused
    path.write_bytes(raw.replace(b"numpy.core.multiarray\nscalar", b"numpy.core.multiarray\n_reconstruct"))
    with pytest.raises(CheckpointError):
        load_torch_file(path)
