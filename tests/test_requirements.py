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
