"""Hugging Face ``transformers`` repos and timm Hub files load with no flags, with the features of the upstream's own
model, convert to sslhub safetensors and export to timm.

Fixtures are written by the upstreams themselves: ``transformers``' ``save_pretrained`` (tiny configs, random
weights perturbed so that LayerScale, biases and norms are not at their init values) and timm's ``save_for_hf``.
The references are the very ``transformers`` / timm models that wrote the files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

import sslhub
from shared_data import ROOT
from sslhub.checkpoints.io import CheckpointError, read_safetensors

transformers = pytest.importorskip("transformers")

REL = 1e-5  # relative: max |sslhub - upstream| / max |upstream|
X32 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
X28 = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
X64 = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max() / b.abs().max())


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _pooled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).pooler_output


def _cls(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).last_hidden_state[:, 0]


def _mean(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).last_hidden_state.mean(dim=1)


def _write(d: Path, cls: str, config, seed: int, feats, **save) -> tuple[Path, object]:
    model = _perturbed(getattr(transformers, cls)(config), seed)
    model.save_pretrained(d, **save)
    return d, lambda x: feats(model, x)


def _mae(d: Path) -> tuple[Path, object]:
    """ViTMAEForPreTraining as facebook/vit-mae-* hold it (encoder under ``vit.``, decoder, mask_ratio 0.75); the
    reference is transformers' ViTMAEModel read back with no masking, cls token after the final layernorm."""
    cfg = transformers.ViTMAEConfig(**SMALL, intermediate_size=64, image_size=32, patch_size=16, decoder_hidden_size=16,
                                    decoder_num_hidden_layers=1, decoder_intermediate_size=32)  # fmt: skip
    _perturbed(transformers.ViTMAEForPreTraining(cfg), 5).save_pretrained(d)
    ref = transformers.ViTMAEModel.from_pretrained(d, mask_ratio=0.0).eval()
    return d, lambda x: _cls(ref, x)


T = transformers
# id -> (writer(dir) -> (path, reference features fn), layout, prefix, input)
CASES = {
    "dinov2": (lambda d: _write(d, "Dinov2Model", T.Dinov2Config(**SMALL, image_size=28, patch_size=14), 1, _pooled),
               "transformers-dinov2", "", X28),
    "dinov2-registers": (lambda d: _write(d, "Dinov2WithRegistersModel", T.Dinov2WithRegistersConfig(
        **SMALL, image_size=28, patch_size=14, num_register_tokens=4), 2, _pooled), "transformers-dinov2", "", X28),
    "dinov2-swiglu": (lambda d: _write(d, "Dinov2Model", T.Dinov2Config(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14, use_swiglu_ffn=True),
        3, _pooled), "transformers-dinov2", "", X28),
    "dinov2-classifier": (lambda d: _write(d, "Dinov2ForImageClassification", T.Dinov2Config(
        **SMALL, image_size=28, patch_size=14, num_labels=3), 4, lambda m, x: _pooled(m.dinov2, x)),
        "transformers-dinov2", "dinov2.", X28),
    "dino-vit": (lambda d: _write(d, "ViTModel", T.ViTConfig(**SMALL, intermediate_size=64, image_size=32, patch_size=16),
                                  6, _cls), "transformers-vit", "", X32),
    "vit-mae-pretraining": (_mae, "transformers-vit-mae", "vit.", X32),
    "ijepa": (lambda d: _write(d, "IJepaModel", T.IJepaConfig(**SMALL, intermediate_size=64, image_size=28, patch_size=14),
                               7, _mean), "transformers-ijepa", "", X28),
    "dinov3-vit": (lambda d: _write(d, "DINOv3ViTModel", T.DINOv3ViTConfig(
        **SMALL, intermediate_size=64, image_size=32, patch_size=16, num_register_tokens=4), 8, _pooled),
        "transformers-dinov3-vit", "", X64),
    "dinov3-vit-gated": (lambda d: _write(d, "DINOv3ViTModel", T.DINOv3ViTConfig(
        **SMALL, intermediate_size=40, image_size=32, patch_size=16, use_gated_mlp=True, hidden_act="silu"), 9, _pooled),
        "transformers-dinov3-vit", "", X64),
    "dinov3-convnext": (lambda d: _write(d, "DINOv3ConvNextModel", T.DINOv3ConvNextConfig(
        hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 2, 1]), 10, _pooled), "transformers-dinov3-convnext", "", X64),
}  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    cache: dict[str, tuple[Path, object]] = {}

    def get(case: str) -> tuple[Path, object]:
        if case not in cache:
            cache[case] = CASES[case][0](tmp_path_factory.mktemp(case))
        return cache[case]

    return get


def _feats(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("case", list(CASES))
def test_transformers_repo_loads_with_no_flags(case, written):
    _w, layout, prefix, x = CASES[case]
    folder, ref = written(case)
    want = ref(x)
    for source in (folder, folder / "model.safetensors"):  # the folder, or the weights file with config.json beside
        model = sslhub.load_pretrained(source)
        assert model.pretrained_cfg["layout"] == layout and model.pretrained_cfg["backbone_prefix"] == prefix
        assert _rel(_feats(model, x), want) <= REL
    info = sslhub.info(folder)
    assert info["layout"] == layout and "config.json model_type" in info["variant"], info
    assert info["upstream"].startswith("huggingface/transformers") and info["facts"]


def test_sharded_repo_loads(tmp_path):
    folder, ref = _write(tmp_path, "Dinov2Model", T.Dinov2Config(**SMALL, image_size=28, patch_size=14), 11, _pooled,
                         max_shard_size="20KB")  # fmt: skip
    assert (folder / "model.safetensors.index.json").is_file() and not (folder / "model.safetensors").exists()
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    assert _rel(_feats(sslhub.load_pretrained(folder), X28), ref(X28)) <= REL
    (next(folder.glob("model-00001-*.safetensors"))).unlink()
    with pytest.raises(CheckpointError, match="model-00001-of-.*download it too"):
        sslhub.load_pretrained(folder)


def test_facts_from_config(written):
    """What only config.json says: heads, registers, SwiGLU, no class token, transformers' 1e-12 LayerNorm eps."""
    info = {c: sslhub.info(written(c)[0]) for c in ("dinov2-registers", "dinov2-swiglu", "dino-vit", "ijepa")}
    assert any("4 register tokens" in f for f in info["dinov2-registers"]["facts"])
    assert info["dinov2-swiglu"]["arch"] == "vit_giant_patch14_dinov2"
    assert any("layer_norm_eps=1e-12" in f for f in info["dino-vit"]["facts"])
    assert any("mean of the final-norm patch tokens" in f for f in info["ijepa"]["facts"])
    assert "decoder" in sslhub.info(written("vit-mae-pretraining")[0])["dropped"]


def test_wrong_config_is_a_clear_error(written, tmp_path):
    folder, _ref = written("dinov2")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    cfg = json.loads((folder / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "num_attention_heads": 3}))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "sslhub", "info", str(bad)], capture_output=True, text=True, env=env,
                       timeout=300)  # fmt: skip
    assert "num_attention_heads=3" in r.stdout + r.stderr and "Traceback" not in r.stderr
    with pytest.raises(CheckpointError, match="num_attention_heads=3"):
        sslhub.load_pretrained(bad)
    (bad / "config.json").unlink()  # weights copied without their config
    r = subprocess.run([sys.executable, "-m", "sslhub", "info", str(bad / "model.safetensors")], capture_output=True,
                       text=True, env=env, timeout=300)  # fmt: skip
    assert "without its config.json" in r.stdout + r.stderr and "Traceback" not in r.stderr


def _timm_export(path: Path, out: Path) -> nn.Module:
    from sslhub.export import export_checkpoint

    res = export_checkpoint(path, "timm", out)
    model = timm.create_model(res.arch, pretrained=False, num_classes=0, **res.kwargs)
    model.load_state_dict(load_file(str(res.path)) if res.path.suffix == ".safetensors" else
                          torch.load(res.path, weights_only=True), strict=True)  # fmt: skip
    return model


@pytest.mark.parametrize("case", ["dinov2-registers", "dinov2-swiglu", "vit-mae-pretraining", "ijepa", "dinov3-vit",
                                  "dinov3-convnext"])  # fmt: skip
def test_convert_and_export(case, written, tmp_path):
    _w, layout, prefix, x = CASES[case]
    folder, ref = written(case)
    want = ref(x)
    st = sslhub.convert(folder, tmp_path / "model.safetensors")
    _t, meta = read_safetensors(st)
    assert meta["layout"] == layout and meta["backbone_prefix"] == prefix and meta["source_name"] == "model.safetensors"
    assert json.loads(meta["extras"])["config.json"]["model_type"] == json.loads((folder / "config.json").read_text())["model_type"]
    assert _rel(_feats(sslhub.load_pretrained(st), x), want) <= REL
    if case not in EPS_1E12:
        assert _rel(_feats(_timm_export(folder, tmp_path / "timm.safetensors"), x), want) <= REL


EPS_1E12 = {  # case -> transformers' model read back with the eps of the upstream's own network (timm's 1e-6)
    "dino-vit": lambda d: (_cls, transformers.ViTModel.from_pretrained(d, layer_norm_eps=1e-6)),
    "vit-mae-pretraining": lambda d: (_cls, transformers.ViTMAEModel.from_pretrained(d, mask_ratio=0.0, layer_norm_eps=1e-6)),
    "ijepa": lambda d: (_mean, transformers.IJepaModel.from_pretrained(d, layer_norm_eps=1e-6)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(EPS_1E12))
def test_export_of_eps_1e12_vit_is_the_upstream_timm_network(case, written, tmp_path):
    """transformers' ViT configs have LayerNorm eps 1e-12; DINO's, MAE's and I-JEPA's own networks (timm's) use
    1e-6, which timm's config.json cannot change. sslhub's own model keeps 1e-12 (above); the timm export is exactly
    transformers' model with eps 1e-6."""
    _w, _layout, _prefix, x = CASES[case]
    folder, _ref = written(case)
    pool, upstream = EPS_1E12[case](folder)
    got = _feats(_timm_export(folder, tmp_path / "timm.pth"), x)
    assert _rel(got, pool(upstream.eval(), x)) <= REL


def test_cli_info_and_convert(written, tmp_path):
    folder, ref = written("dinov3-vit")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "sslhub", "info", "--json", str(folder)], capture_output=True, text=True,
                       env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["layout"] == "transformers-dinov3-vit" and out["arch"] == "vit_small_patch16_dinov3"
    assert "DINOv3ViTModel" in out["variant"] and "embeddings.mask_token" in out["dropped"]
    dst = tmp_path / "dinov3.safetensors"
    r = subprocess.run([sys.executable, "-m", "sslhub", "convert", str(folder), str(dst)], capture_output=True,
                       text=True, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0 and dst.is_file(), r.stderr
    assert _rel(_feats(sslhub.load_pretrained(dst), X64), ref(X64)) <= REL


# --- timm Hub files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs,x", [
    ("convnext_atto", {"num_classes": 5}, X64),  # no key anchor: only config.json says what it is
    ("vit_small_patch16_224", {"num_classes": 0, "depth": 2, "embed_dim": 64, "num_heads": 4, "global_pool": "avg",
                               "img_size": 64}, X64),
    ("vit_small_patch16_dinov3", {"num_classes": 3, "depth": 2, "embed_dim": 64, "num_heads": 4}, X64),
])  # fmt: skip
def test_timm_hub_file_builds_from_config(name, kwargs, x, tmp_path):
    from timm.models import save_for_hf

    ref = _perturbed(timm.create_model(name, pretrained=False, **kwargs), 12)
    save_for_hf(ref, tmp_path, safe_serialization=True)
    with torch.no_grad():
        want = ref.forward_head(ref.forward_features(x), pre_logits=True)
    model = sslhub.load_pretrained(tmp_path / "model.safetensors")
    assert model.pretrained_cfg["layout"] == "timm-hub" and model.pretrained_cfg["arch"] == name
    assert tuple(model.pretrained_cfg["mean"]) == tuple(ref.pretrained_cfg["mean"])
    assert _rel(_feats(model, x), want) <= REL
    assert _rel(_feats(_timm_export(tmp_path, tmp_path / "timm.pth"), x), want) <= REL
    info = sslhub.info(tmp_path)
    assert info["layout"] == "timm-hub" and info["variant"] == f"timm {name} (config.json architecture)"


def test_sslhub_published_folder_is_not_read_as_timm_hub(tmp_path):
    """sslhub's own files carry their header; a config.json beside them (written for timm) is not consulted."""
    src = tmp_path / "vit.pth"
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    torch.save(vit.state_dict(), src)
    (tmp_path / "pub").mkdir()
    st = sslhub.convert(src, tmp_path / "pub" / "model.safetensors")
    (tmp_path / "pub" / "config.json").write_text(json.dumps({"architecture": "resnet18", "model_args": {}}))
    assert sslhub.load_pretrained(st).pretrained_cfg["layout"] == "state-dict"


# --- hf-hub: through huggingface_hub against the olah mirror on loopback ------------------------------------------

HUB_SCRIPT = r"""
import json, sys, torch, sslhub
args = json.loads(sys.argv[1])
x = torch.load(args["x"], weights_only=True)
res = {}
for repo in ("dinov2-tiny", "dinov2-sharded"):
    m = sslhub.load_pretrained(f"hf-hub:facebook/{repo}")
    with torch.no_grad():
        torch.save(m(x), args["out"] + repo)
    res[repo] = {"layout": m.pretrained_cfg["layout"], "source": m.pretrained_cfg["source"]}
print(json.dumps(res))
"""


def test_hf_hub_transformers_repo(written, tmp_path):
    import hf_servers

    exe = hf_servers.olah_cli()
    if exe is None:
        pytest.skip("olah venv missing (bash scripts/setup_olah_venv.sh)")
    folder, ref = written("dinov2")
    olah = hf_servers.OlahServer(tmp_path / "hub", exe)
    hf_servers.make_repo(olah.mirrors, "facebook/dinov2-tiny", {
        n: (folder / n).read_bytes() for n in ("config.json", "model.safetensors")})  # fmt: skip
    sharded = tmp_path / "sharded"
    transformers.Dinov2Model.from_pretrained(folder).save_pretrained(sharded, max_shard_size="20KB")
    files = {p.name: p.read_bytes() for p in sharded.iterdir() if p.name != "model.safetensors"}
    assert "model.safetensors.index.json" in files and len(files) > 3
    hf_servers.make_repo(olah.mirrors, "facebook/dinov2-sharded", files)
    olah.start()
    try:
        torch.save(X28, tmp_path / "x.pt")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SSLHUB_"))}
        env.update(HF_ENDPOINT=olah.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1",
                   HF_HUB_DISABLE_TELEMETRY="1", SSLHUB_HOME=str(tmp_path / "sslhub"), PYTHONPATH=str(ROOT))  # fmt: skip
        args = json.dumps({"x": str(tmp_path / "x.pt"), "out": str(tmp_path / "f.pt")})
        r = subprocess.run([sys.executable, "-c", HUB_SCRIPT, args], env=env, capture_output=True, text=True,
                           timeout=300, cwd=ROOT)  # fmt: skip
    finally:
        olah.stop()
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for repo in ("dinov2-tiny", "dinov2-sharded"):
        assert res[repo]["layout"] == "transformers-dinov2" and "snapshots" in res[repo]["source"]
        assert _rel(torch.load(tmp_path / f"f.pt{repo}", weights_only=True), ref(X28)) <= REL
    assert res["dinov2-sharded"]["source"].endswith("model.safetensors.index.json")


# --- real size --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dinov2_base_real_size(tmp_path):
    """facebook/dinov2-base's config (ViT-B/14, 768 wide, 12 heads, LayerScale) at 224 px."""
    cfg = T.Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=14)
    model = T.Dinov2Model(cfg).eval()
    model.save_pretrained(tmp_path)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    want = _pooled(model, x)
    del model
    loaded = sslhub.load_pretrained(tmp_path)
    assert loaded.pretrained_cfg["arch"] == "vit_base_patch14_dinov2"
    assert _rel(_feats(loaded, x), want) <= REL
