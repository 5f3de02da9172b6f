"""``hf-hub:`` reads through sslhub and huggingface_hub alone (no Lightly references), so the dependency-floors run
(scripts/floors.sh) covers huggingface_hub: a repo written by ``sslhub publish`` on the olah mirror loads with the
weights' own features, and ``HF_HUB_OFFLINE=1`` serves the cache and names itself when a file is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch

import hf_servers
from hf_servers import OlahServer, make_repo

REPO_ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, os, sys
import torch, sslhub
from sslhub.hub.hf import HfHubError
args = json.loads(sys.argv[1])
x = torch.load(args["x"], weights_only=True)
res = {}
with torch.no_grad():
    torch.save(sslhub.load_pretrained("hf-hub:acme/vit-floor")(x), args["out"])
if args.get("uncached"):
    try:
        sslhub.load_pretrained("hf-hub:acme/never-fetched")
        res["uncached"] = "no error"
    except HfHubError as e:
        res["uncached"] = str(e)
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def olah(tmp_path_factory: pytest.TempPathFactory):
    exe = hf_servers.olah_cli()
    if exe is None:
        pytest.skip("olah venv missing (create it with: bash scripts/setup_olah_venv.sh)")
    server = OlahServer(tmp_path_factory.mktemp("hub"), exe).start()
    try:
        yield server
    finally:
        server.stop()


def _run(args: dict, home: Path, url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SSLHUB_"))}
    env.update(HF_ENDPOINT=url, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               SSLHUB_HOME=str(home / "sslhub"), **extra)  # fmt: skip
    # the caller's PYTHONPATH first: the floors run puts the lowest declared versions there
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO_ROOT)) if p)
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(args)], env=env,
                       capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)  # fmt: skip
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_published_repo_loads_and_offline_uses_the_cache(olah, tmp_path):
    from sslhub.hub.publish import publish

    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0).eval()  # a standard size: no hints
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = vit(x)
    torch.save(x, tmp_path / "x.pt")
    out = tmp_path / "repo"
    publish(tmp_path / "vit.pth", "acme/vit-floor", dry_run=out)
    make_repo(olah.mirrors, "acme/vit-floor", {p.name: p.read_bytes() for p in out.iterdir()})
    make_repo(olah.mirrors, "acme/never-fetched", {"model.safetensors": (out / "model.safetensors").read_bytes()})

    home = tmp_path / "home"
    args = {"x": str(tmp_path / "x.pt"), "out": str(tmp_path / "online.pt")}
    _run(args, home, olah.url)
    torch.testing.assert_close(torch.load(tmp_path / "online.pt", weights_only=True), ref, rtol=0, atol=1e-5)

    args.update(out=str(tmp_path / "offline.pt"), uncached=True)
    res = _run(args, home, "http://127.0.0.1:9", HF_HUB_OFFLINE="1")  # a dead endpoint: only the cache can answer
    torch.testing.assert_close(torch.load(tmp_path / "offline.pt", weights_only=True), ref, rtol=0, atol=1e-5)
    assert "not in the Hugging Face cache" in res["uncached"] and "HF_HUB_OFFLINE is set" in res["uncached"]
