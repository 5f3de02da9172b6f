"""torch.hub: ``torch.hub.load(repo_dir, entry, source="local")`` with weights served by nginx on loopback, going
through sslhub's verified fetch (sha256 from the card)."""

from __future__ import annotations

import hashlib
import importlib.util
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from conftest_servers import nginx  # noqa: F401  (pytest fixture)
from lightly_refs import documented_worker_loader, save_worker_ckpt, worker_model

from sslhub.hub import DEPRECATED_NAMES, HashMismatchError, cache_path, entrypoint_name, registry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SSLHUB_HOME", str(home))
    monkeypatch.delenv("SSLHUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SSLHUB_CARDS", raising=False)
    return home


def load_hubconf():
    spec = importlib.util.spec_from_file_location("sslhub_hubconf_under_test", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_entrypoint_per_card():
    hub = load_hubconf()
    public = sorted(n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_"))  # as torch.hub.list
    # one per card, plus the old names of renamed cards (deprecated aliases that still load)
    assert public == sorted({entrypoint_name(n) for n in registry()} | {entrypoint_name(n) for n in DEPRECATED_NAMES})
    assert "simclr_resnet50_lightly_in1k" in public and "simclr_resnet_9_w0_0625_d16_lightly_zoo" in public
    assert "simclr_resnet9_w0_0625_d16_lightly_zoo" in public  # deprecated alias
    assert "63.2%" in hub.simclr_resnet50_lightly_in1k.__doc__  # the reported metric travels with the entrypoint
    for dep in hub.dependencies:
        assert importlib.util.find_spec(dep) is not None, dep


def _same_network(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    """Parameter-level equality: the same names and shapes, and with the reference's (randomised) tensors loaded,
    the same function (a stride, padding or activation that differs changes the output, not the shapes)."""
    with torch.no_grad():
        for b in ref.buffers():  # non-trivial BatchNorm statistics, so that eval mode uses them
            if b.is_floating_point():
                b.uniform_(0.5, 1.5)
    ref_sd = ref.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_sd.items()}
    ours.load_state_dict(ref_sd, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x).flatten(1), rtol=0, atol=1e-5)


def test_untrained_backbones_match_the_reference_architectures():
    torch.manual_seed(0)
    r50 = torch.hub.load(str(REPO), "simclr_resnet50_lightly_in1k", source="local", pretrained=False)
    ref = torchvision.models.resnet50()
    ref.fc = torch.nn.Identity()
    _same_network(r50, ref)
    assert r50.num_features == 2048
    assert not r50.training, "pretrained=False must return the same (eval) mode as pretrained=True"

    r9 = torch.hub.load(str(REPO), "simclr_resnet9_w0_0625_d16_lightly_zoo", source="local", pretrained=False)
    lightly_model = worker_model("resnet-9", width=0.0625, num_ftrs=16)
    # the Worker's backbone up to its last stage (7. is the num_ftrs conv, which the untrained entrypoint drops)
    trunk = torch.nn.Sequential(*list(lightly_model.backbone.children())[:7], torch.nn.AdaptiveAvgPool2d(1))
    _same_network(r9, trunk)
    assert not r9.training


def test_hubconf_docstring_calls_are_valid_torch_hub_calls():
    """Every ``torch.hub.<fn>(...)`` the docstring shows binds to torch.hub's real signature."""
    import ast
    import inspect

    doc = load_hubconf().__doc__
    calls = [line.split(">>> ", 1)[1].split("#")[0] for line in doc.splitlines() if "torch.hub." in line and ">>>" in line]
    assert len(calls) >= 2
    for src in calls:
        call = next(n for n in ast.walk(ast.parse(src.strip())) if isinstance(n, ast.Call))
        fn = getattr(torch.hub, call.func.attr)
        inspect.signature(fn).bind(*[ast.literal_eval(a) for a in call.args],
                                   **{k.arg: ast.literal_eval(k.value) for k in call.keywords})  # fmt: skip


def test_untrained_mocov3_vits16_has_the_upstream_12_heads():
    """The card's load.timm_kwargs: MoCo v3's ViT-S has 12 heads where timm's vit_small_patch16_224 has 6, which
    the tensors' shapes cannot show; pretrained=False builds what moco-v3's vits.py builds."""
    vit = torch.hub.load(str(REPO), "mocov3_vits16_fb_in1k", source="local", pretrained=False)
    assert [b.attn.num_heads for b in vit.blocks] == [12] * 12
    assert vit.embed_dim == 384
    vit6 = torch.hub.load(str(REPO), "mocov3_vits16_fb_in1k", source="local", pretrained=False, num_heads=6)
    assert vit6.blocks[0].attn.num_heads == 6  # a caller's keyword still wins


def _card(name: str, url: str, sha256: str) -> str:
    return textwrap.dedent(f"""\
        name: {name}
        method: simclr
        architecture: resnet-9
        width: 0.0625
        num_ftrs: 16
        num_features: 32
        summary: tiny Worker checkpoint served from loopback for the torch.hub test
        training: {{data: random, epochs: 1, batch_size: 2}}
        metrics: []
        files:
          - {{url: "{url}", filename: hub.ckpt, size: unknown, sha256: "{sha256}"}}
        source: {{layout: lightly-worker, prefix: model.backbone.}}
        load: {{arch: resnet-9, width: 0.0625}}
        license: MIT
        paper: null
    """)


def test_pretrained_entrypoint_uses_the_verified_fetch(nginx, tmp_path, monkeypatch, hub_env):
    model = worker_model("resnet-9", width=0.0625, num_ftrs=16, out_dim=8)
    src = save_worker_ckpt(model, tmp_path / "worker.ckpt")
    data = src.read_bytes()
    nginx.put("hub/worker.ckpt", data)
    cards = tmp_path / "cards"
    cards.mkdir()
    good = "simclr-resnet9-w0.0625-d16.hubtest"
    bad = "simclr-resnet9-w0.0625-d16.hubtest-tampered"
    (cards / f"{good}.yaml").write_text(_card(good, nginx.url("hub/worker.ckpt"), hashlib.sha256(data).hexdigest()))
    # the tampered card's server holds another checkpoint than the one whose sha256 the card publishes
    other = save_worker_ckpt(worker_model("resnet-9", width=0.0625, num_ftrs=16, out_dim=8), tmp_path / "o.ckpt")
    nginx.put("hub/tampered.ckpt", other.read_bytes())
    bad_url = nginx.url("hub/tampered.ckpt")
    (cards / f"{bad}.yaml").write_text(_card(bad, bad_url, hashlib.sha256(data).hexdigest()))
    monkeypatch.setenv("SSLHUB_CARDS", str(cards))

    loaded = torch.hub.load(str(REPO), entrypoint_name(good), source="local", pretrained=True, progress=False)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ref = documented_worker_loader(src, "resnet-9", 0.0625)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ref(x), rtol=0, atol=1e-6)
        assert not loaded.training
        # features="embedding" keeps the num_ftrs conv: the 16-d embeddings lightly-embed computes
        emb = torch.hub.load(str(REPO), entrypoint_name(good), source="local", features="embedding")
        torch.testing.assert_close(emb(x), model.backbone(x).flatten(1), rtol=0, atol=1e-6)
    assert len(nginx.log("hub/worker.ckpt")) == 1, "the second load must come from the verified cache"

    with pytest.raises(HashMismatchError):
        torch.hub.load(str(REPO), entrypoint_name(bad), source="local", pretrained=True, progress=False)
    assert not cache_path(bad_url, "hub.ckpt").exists()
    assert not cache_path(bad_url, "hub.ckpt").with_name("hub.ckpt.part").exists()

    monkeypatch.setenv("SSLHUB_OFFLINE", "1")  # cached: still loads without the network
    again = torch.hub.load(str(REPO), entrypoint_name(good), source="local")
    with torch.no_grad():
        torch.testing.assert_close(again(x), ref(x), rtol=0, atol=1e-6)
    assert len(nginx.log("hub/worker.ckpt")) == 1
