"""Hugging Face Hub: fetching (``hf_hub_resolve``) and publishing (``sslhub publish``).

Against real servers on loopback: the ``olah`` mirror (offline mode, serving git repos with LFS through the Hub's
read API) and, for uploads, a stdlib endpoint for the Hub's commit calls that writes the git repos olah serves
(tests/hf_servers.py). Everything that talks to the Hub runs in subprocesses, with ``HF_ENDPOINT``/``HF_HOME``/
``HF_HUB_DISABLE_XET`` set before ``huggingface_hub`` is imported there. References are timm, torchvision and
Lightly models built here; loads go through timm's own ``hf-hub:`` loader and through sslhub.

The olah tests skip only when olah's venv is missing (``scripts/setup_olah_venv.sh`` creates it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import hf_servers
from hf_servers import HubWriteServer, OlahServer, make_repo, read_file, repo_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_sslhubTestToken0123456789abcdefXYZ"
WRONG_TOKEN = "hf_notTheRightToken9876543210zyxwvuQ"
SEED_INPUT = 1234

# ----------------------------------------------------------------------------------------------------------------
# sources and their reference features (built with timm / torchvision / lightly, not with sslhub)


def _inputs(size: int) -> torch.Tensor:
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(SEED_INPUT))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three checkpoints of the three publishable kinds, with features computed by their reference libraries."""
    import timm
    import torchvision
    from lightly_refs import documented_worker_loader, randomize_bn, save_worker_ckpt, worker_model

    d = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    out: dict = {}
    with torch.no_grad():
        vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32).eval()
        torch.save(vit.state_dict(), d / "vit.pth")
        out["vit"] = {"path": d / "vit.pth", "x": _inputs(32), "keys": sorted(vit.state_dict())}
        out["vit"]["ref"] = vit(out["vit"]["x"])

        rn = torchvision.models.resnet18(weights=None)
        randomize_bn(rn)
        torch.save(rn.state_dict(), d / "rn18.pth")  # with fc: publishing must drop it
        rn.fc = torch.nn.Identity()
        rn.eval()
        out["rn18"] = {"path": d / "rn18.pth", "x": _inputs(64), "keys": sorted(rn.state_dict())}
        out["rn18"]["ref"] = rn(out["rn18"]["x"])

        run = d / "run"
        run.mkdir()
        model = worker_model("resnet-9", width=0.125, num_ftrs=16, out_dim=8)
        save_worker_ckpt(model, run / "checkpoint.ckpt")
        metrics = [
            {"protocol": "knn", "dataset": "cifar10", "dataset_name": "CIFAR-10", "split": "test", "value": 31.25,
             "name": "kNN top-1", "source": "sslhub"},
            {"protocol": "linear", "dataset": "cifar10", "dataset_name": "CIFAR-10", "split": "test", "value": 40.5},
        ]  # fmt: skip
        (run / "metrics.json").write_text(json.dumps({"metrics": metrics}))
        x = _inputs(32)
        out["r9"] = {
            "path": run,
            "x": x,
            "metrics": metrics,
            "embedding": model.backbone(x).flatten(1),  # the Worker's num_ftrs embedding
            "backbone": documented_worker_loader(run / "checkpoint.ckpt", "resnet-9", 0.125)(x),
        }
    return out


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# dry runs: no server


def test_dry_run_writes_timm_readable_files(sources: dict, tmp_path: Path) -> None:
    import timm
    from huggingface_hub import ModelCard
    from safetensors import safe_open
    from timm.models import PretrainedCfg

    from sslhub.hub.publish import publish

    src = sources["vit"]
    out = tmp_path / "out"
    res = publish(src["path"], "acme/vit-tiny", dry_run=out, license="mit", method="dino", datasets=["cifar10"])
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert res.readme == "written" and res.commit_oid is None

    # Backbone only, timm's own key layout.
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == src["keys"]
        assert f.metadata()["format"] == "sslhub" and f.metadata()["backbone_prefix"] == ""

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "vit_tiny_patch16_224" and cfg["num_classes"] == 0
    assert cfg["num_features"] == 192
    assert set(cfg["pretrained_cfg"]) <= {f.name for f in dataclasses.fields(PretrainedCfg)}
    assert "hf_hub_id" not in cfg["pretrained_cfg"] and "tag" not in cfg["pretrained_cfg"]  # timm's own weights
    assert cfg["sslhub"]["arch"] == "vit_tiny_patch16_224" and cfg["sslhub"]["img_size"] == 32

    # timm reads the folder with its own config parser and strict loader.
    with torch.no_grad():
        model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
        assert _close(model(src["x"]), src["ref"])

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "sslhub" and card.data.pipeline_tag == "image-feature-extraction"
    assert card.data.license == "mit" and card.data.datasets == ["cifar10"]
    assert "dino" in card.data.tags and "hf-hub:acme/vit-tiny" in card.text
    assert cfg["sslhub"]["readme_sha256"] == hashlib.sha256((out / "README.md").read_bytes()).hexdigest()


def test_dry_run_run_dir_metrics_and_readme_protection(sources: dict, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    from sslhub.cli import main
    from sslhub.hub.publish import PublishError, publish

    src = sources["r9"]
    out = tmp_path / "out"
    publish(src["path"], "acme/r9", dry_run=out)
    card = ModelCard.load(out / "README.md")
    results = card.data.eval_results
    assert [(r.metric_name, r.metric_config, r.dataset_type, r.dataset_split, r.metric_value) for r in results] == [
        ("kNN top-1", "knn", "cifar10", "test", 31.25),
        ("linear probe accuracy", "linear", "cifar10", "test", 40.5),
    ]
    assert card.data.model_name == "r9"
    first = (out / "README.md").read_bytes()

    # Unedited: publishing again rewrites it (the same bytes: rendering is deterministic).
    publish(src["path"], "acme/r9", dry_run=out)
    assert (out / "README.md").read_bytes() == first

    # Edited by a person: refused, kept, or overwritten only on request.
    edited = first + b"\nMy own notes.\n"
    (out / "README.md").write_bytes(edited)
    with pytest.raises(PublishError, match="--overwrite-readme"):
        publish(src["path"], "acme/r9", dry_run=out)
    assert (out / "README.md").read_bytes() == edited
    assert main(["publish", str(src["path"]), "--repo-id", "acme/r9", "--dry-run", str(out)]) == 2

    res = publish(src["path"], "acme/r9", dry_run=out, keep_readme=True)
    assert res.readme == "kept" and (out / "README.md").read_bytes() == edited
    assert json.loads((out / "config.json").read_text())["sslhub"]["readme_sha256"] is None
    with pytest.raises(PublishError):  # still not ours after a keep
        publish(src["path"], "acme/r9", dry_run=out)

    assert main(["publish", str(src["path"]), "--repo-id", "acme/r9", "--dry-run", str(out), "--overwrite-readme"]) == 0
    assert (out / "README.md").read_bytes() == first


def test_publish_input_errors(sources: dict, tmp_path: Path) -> None:
    from sslhub.hub.publish import PublishError, publish
    from sslhub.training.run_results import RunResultsError, find_checkpoint

    with pytest.raises(RunResultsError, match="no checkpoint found"):
        find_checkpoint(tmp_path)
    (tmp_path / "a.ckpt").write_bytes(b"x")
    (tmp_path / "b.ckpt").write_bytes(b"x")
    with pytest.raises(RunResultsError, match="several checkpoints"):
        find_checkpoint(tmp_path)
    with pytest.raises(PublishError, match="org/name"):
        publish(sources["vit"]["path"], "just-a-name", dry_run=tmp_path / "o")
    with pytest.raises(PublishError, match="protocol"):
        publish(sources["vit"]["path"], "acme/x", dry_run=tmp_path / "o", metrics=[{"protocol": "knn", "value": 1}])
    # The dry-run folder may not be where the input lies under an output name.
    src = tmp_path / "model.safetensors"
    publish(sources["vit"]["path"], "acme/x", dry_run=tmp_path / "first")
    src.write_bytes((tmp_path / "first" / "model.safetensors").read_bytes())
    with pytest.raises(PublishError, match="being published"):
        publish(src, "acme/x", dry_run=tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# real servers: olah + the commit endpoint


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    exe = hf_servers.olah_cli()
    if exe is None:
        venv = os.environ.get("SSLHUB_OLAH_VENV", hf_servers.DEFAULT_OLAH_VENV)
        pytest.skip(f"olah venv missing at {venv} (create it with: bash scripts/setup_olah_venv.sh)")
    work = tmp_path_factory.mktemp("hub")
    olah = OlahServer(work, exe).start()
    writer = HubWriteServer(olah.mirrors, olah.url, TOKEN).start()
    try:
        yield writer
    finally:
        writer.stop()
        olah.stop()


def _env(hub: HubWriteServer, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SSLHUB_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_TOKEN=TOKEN,
        SSLHUB_HOME=str(home / "sslhub"),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(Path(__file__).parent)]),
    )
    env.update(extra)
    return env


def _run_script(script: str, args: dict, env: dict[str, str], timeout: float = 240) -> tuple[dict, str]:
    """Run a Python script in a fresh interpreter; it prints one JSON line last. Returns (result, all output)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), json.dumps(args, default=str)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), output


# Runs every publishing step in one interpreter (torch imports once); the CLI is called as `sslhub` would be.
PUBLISH_SCRIPT = r"""
import contextlib, io, json, logging, os, sys
args = json.loads(sys.argv[1])
from huggingface_hub import HfApi
from sslhub.cli import main

class CurrentStderr:  # log records go wherever stderr points now, so each step's capture holds its logs
    def write(self, text):
        sys.stderr.write(text)
    def flush(self):
        sys.stderr.flush()

# Debug logging everywhere (sslhub, huggingface_hub, httpx): the token must not show up in any of it.
logging.basicConfig(level=logging.DEBUG, stream=CurrentStderr(), format="%(levelname)s %(name)s: %(message)s")

def cli(argv, token=None):
    saved = os.environ["HF_TOKEN"]
    if token == "":
        del os.environ["HF_TOKEN"]
    elif token:
        os.environ["HF_TOKEN"] = token
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    os.environ["HF_TOKEN"] = saved
    sys.stderr.write(out.getvalue() + err.getvalue())
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}

def head(repo):
    return HfApi().repo_info(repo, revision="main").sha

s = args["sources"]
steps = {}
steps["no_token"] = cli(["publish", s["vit"], "--repo-id", "acme/vit-tiny"], token="")
steps["wrong_token"] = cli(["publish", s["r9"], "--repo-id", "acme/elsewhere"], token=args["wrong_token"])
steps["vit"] = cli(["-v", "publish", s["vit"], "--repo-id", "acme/vit-tiny", "--license", "mit",
                    "--method", "dino", "--dataset", "cifar10"])
steps["rn18"] = cli(["publish", s["rn18"], "--repo-id", "acme/rn18", "--license", "mit"])
steps["r9"] = cli(["publish", s["r9"], "--repo-id", "acme/r9", "--private"])
steps["r9"]["head"] = head("acme/r9")
steps["r9_again"] = cli(["publish", s["r9"], "--repo-id", "acme/r9"])
steps["r9_again"]["head"] = head("acme/r9")
# A person edits the card on the Hub (through the same commit API).
edit = HfApi().upload_file(path_or_fileobj=b"# r9\n\nMy own notes.\n", path_in_repo="README.md", repo_id="acme/r9",
                           commit_message="Edit card by hand")
steps["edit"] = {"head": edit.oid}
steps["r9_refused"] = cli(["publish", s["r9"], "--repo-id", "acme/r9", "--license", "apache-2.0"])
steps["r9_refused"]["head"] = head("acme/r9")
steps["r9_keep"] = cli(["publish", s["r9"], "--repo-id", "acme/r9", "--license", "apache-2.0", "--keep-readme"])
steps["r9_keep"]["head"] = head("acme/r9")
steps["r9_overwrite"] = cli(["publish", s["r9"], "--repo-id", "acme/r9", "--license", "apache-2.0",
                             "--overwrite-readme"])
steps["r9_overwrite"]["head"] = head("acme/r9")
print(json.dumps(steps))
"""


@pytest.fixture(scope="module")
def published(hub: HubWriteServer, sources: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("hf-home-publish")
    srcs = {k: str(v["path"]) for k, v in sources.items()}
    steps, output = _run_script(PUBLISH_SCRIPT, {"sources": srcs, "wrong_token": WRONG_TOKEN}, _env(hub, home))
    return {"steps": steps, "output": output, "home": home}


def _git_log(hub: HubWriteServer, repo_id: str) -> list[str]:
    return hf_servers._git(repo_dir(hub.mirrors, repo_id), "log", "--format=%H", "main").split()


def test_publish_one_commit_with_three_files(hub: HubWriteServer, published: dict) -> None:
    steps = published["steps"]
    for name in ("vit", "rn18", "r9"):
        assert steps[name]["rc"] == 0, steps[name]["err"]
    for repo_id in ("acme/vit-tiny", "acme/rn18"):
        repo = repo_dir(hub.mirrors, repo_id)
        log = _git_log(hub, repo_id)
        assert len(log) == 2  # the Hub's initial commit + exactly one publish commit
        files = hf_servers._git(repo, "ls-tree", "--name-only", "main").split()
        assert sorted(files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
        changed = hf_servers._git(repo, "show", "--name-only", "--format=", "main").split()
        assert sorted(changed) == ["README.md", "config.json", "model.safetensors"]
        # The weights went through LFS (pointer in git, object uploaded with the batch API).
        pointer = subprocess.run(["git", "show", "main:model.safetensors"], cwd=repo, capture_output=True).stdout
        assert hf_servers.parse_pointer(pointer) is not None
    assert hub.visibility == {"acme/vit-tiny": "public", "acme/rn18": "public", "acme/r9": "private"}
    # Every sslhub commit names the commit its README check saw, so a concurrent edit fails instead of being lost.
    ours = [h for h in hub.commit_headers if h["summary"].startswith("Publish ")]
    assert len(ours) >= 5 and all(len(h.get("parentCommit", "")) == 40 for h in ours)


def test_publish_needs_token_and_never_leaks_it(hub: HubWriteServer, published: dict) -> None:
    steps = published["steps"]
    assert steps["no_token"]["rc"] == 2 and "no Hugging Face token" in steps["no_token"]["err"]
    wrong = steps["wrong_token"]
    assert wrong["rc"] == 2 and "refused the token" in wrong["err"] and "Traceback" not in wrong["err"]
    assert not repo_dir(hub.mirrors, "acme/elsewhere").exists()
    # Everything ran with debug logging (sslhub, huggingface_hub, httpx): no token in any of it, nor in a file.
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in published["output"]
        for root in (hub.mirrors, published["home"]):
            for path in hf_servers.iter_tree_files(root):
                assert secret.encode() not in path.read_bytes(), path
    writes = [(m, p, ok) for m, p, ok in hub.requests if m in ("POST", "PUT")]
    # Every API write carried the token, except the one attempt made with the wrong token.
    assert [(m, p) for m, p, ok in writes if m == "POST" and not ok] == [("POST", "/api/repos/create")]
    assert not any(ok for m, p, ok in writes if m == "PUT")  # the LFS storage upload did not


def test_publish_never_overwrites_an_edited_readme(hub: HubWriteServer, published: dict, sources: dict,
                                                   tmp_path: Path) -> None:  # fmt: skip
    from sslhub.hub.publish import publish

    s = published["steps"]
    repo = repo_dir(hub.mirrors, "acme/r9")
    # Re-publishing the same content: nothing changed, no commit.
    assert s["r9_again"]["rc"] == 0 and s["r9_again"]["head"] == s["r9"]["head"]
    assert "nothing to commit" in s["r9_again"]["out"] and s["r9"]["out"].startswith("published resnet-9")
    # After a hand edit: refused, no commit, README untouched.
    assert s["r9_refused"]["rc"] == 2 and "--overwrite-readme" in s["r9_refused"]["err"]
    assert s["r9_refused"]["head"] == s["edit"]["head"]
    # --keep-readme: a new commit with the new config, the person's README as it was.
    assert s["r9_keep"]["rc"] == 0 and s["r9_keep"]["head"] != s["edit"]["head"]
    assert read_file(repo, s["r9_keep"]["head"], "README.md") == b"# r9\n\nMy own notes.\n"
    kept_config = json.loads(read_file(repo, s["r9_keep"]["head"], "config.json"))
    assert kept_config["pretrained_cfg"]["license"] == "apache-2.0" and kept_config["sslhub"]["readme_sha256"] is None
    # --overwrite-readme: exactly the card a dry run renders.
    dry = tmp_path / "dry"
    publish(sources["r9"]["path"], "acme/r9", dry_run=dry, license="apache-2.0")
    assert read_file(repo, s["r9_overwrite"]["head"], "README.md") == (dry / "README.md").read_bytes()
    weights = read_file(repo, s["r9_overwrite"]["head"], "model.safetensors")
    assert weights == (dry / "model.safetensors").read_bytes()
    assert _git_log(hub, "acme/r9") == [s["r9_overwrite"]["head"], s["r9_keep"]["head"], s["edit"]["head"],
                                        s["r9"]["head"], _git_log(hub, "acme/r9")[-1]]  # fmt: skip


# Everything a user does to read: timm alone, sslhub, huggingface_hub's download functions.
READ_SCRIPT = r"""
import json, os, sys
args = json.loads(sys.argv[1])
import torch, timm, sslhub
from huggingface_hub import hf_hub_download, snapshot_download
from sslhub.hub.hf import HfHubError, hf_hub_resolve

x = {k: torch.load(v, weights_only=True) for k, v in args["inputs"].items()}
feats, res = {}, {}
with torch.no_grad():
    feats["timm_vit"] = timm.create_model("hf-hub:acme/vit-tiny", pretrained=True).eval()(x["vit"])
    feats["timm_rn18"] = timm.create_model("hf-hub:acme/rn18", pretrained=True).eval()(x["rn18"])
    feats["sslhub_vit"] = sslhub.load_pretrained("hf-hub:acme/vit-tiny")(x["vit"])
    feats["sslhub_rn18"] = sslhub.load_pretrained("hf-hub:acme/rn18")(x["rn18"])
    feats["sslhub_r9_embedding"] = sslhub.load_pretrained("hf-hub:acme/r9", features="embedding")(x["r9"])
    feats["sslhub_r9_backbone"] = sslhub.load_pretrained("hf-hub:acme/r9@" + args["r9_first"])(x["r9"])
torch.save(feats, args["feats_out"])

p = hf_hub_resolve("acme/r9", args["r9_first"])
res["resolve_first"] = str(p)
res["config_next_to_it"] = (p.parent / "config.json").is_file()
res["resolve_main"] = str(hf_hub_resolve("acme/r9"))
snap = snapshot_download("acme/r9")
res["snapshot"] = sorted(os.listdir(snap))
res["snapshot_dir"] = snap
res["download_readme"] = open(hf_hub_download("acme/r9", "README.md"), "rb").read().decode()
for name, call in [
    ("missing_repo", lambda: hf_hub_resolve("acme/does-not-exist")),
    ("pickle_only", lambda: hf_hub_resolve("acme/pickle-only")),
    ("bad_id", lambda: sslhub.load_pretrained("hf-hub:not a repo")),
]:
    try:
        call()
        res[name] = "no error"
    except HfHubError as e:
        res[name] = str(e)
os.environ["SSLHUB_OFFLINE"] = "1"
try:
    hf_hub_resolve("acme/never-fetched")
    res["sslhub_offline_uncached"] = "no error"
except HfHubError as e:
    res["sslhub_offline_uncached"] = str(e)
res["sslhub_offline_cached"] = str(hf_hub_resolve("acme/r9"))
print(json.dumps(res))
"""

OFFLINE_SCRIPT = r"""
import json, sys
args = json.loads(sys.argv[1])
import torch, timm, sslhub
from sslhub.hub.hf import hf_hub_resolve
x = torch.load(args["x"], weights_only=True)
with torch.no_grad():
    torch.save({"timm_vit": timm.create_model("hf-hub:acme/vit-tiny", pretrained=True).eval()(x),
                "sslhub_vit": sslhub.load_pretrained("hf-hub:acme/vit-tiny")(x)}, args["feats_out"])
print(json.dumps({"resolve": str(hf_hub_resolve("acme/r9"))}))
"""


@pytest.fixture(scope="module")
def downloaded(hub: HubWriteServer, published: dict, sources: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("read")
    home = d / "hf-home"
    pickled = {"pytorch_model.bin": b"\x80\x02not really a pickle", "config.json": b"{}"}
    make_repo(hub.mirrors, "acme/pickle-only", pickled)
    make_repo(hub.mirrors, "acme/never-fetched", {"model.safetensors": b"\x00" * 16})
    inputs = {}
    for k in ("vit", "rn18", "r9"):
        torch.save(sources[k]["x"], d / f"x_{k}.pt")
        inputs[k] = str(d / f"x_{k}.pt")
    args = {"inputs": inputs, "feats_out": str(d / "feats.pt"), "r9_first": published["steps"]["r9"]["head"]}
    res, _ = _run_script(READ_SCRIPT, args, _env(hub, home))
    res["feats"] = torch.load(d / "feats.pt", weights_only=True)
    # Offline: huggingface_hub's own offline mode, the cache filled above, no request reaches the servers.
    before = len(hub.requests)
    off, _ = _run_script(OFFLINE_SCRIPT, {"x": inputs["vit"], "feats_out": str(d / "off.pt")},
                         _env(hub, home, HF_HUB_OFFLINE="1"))  # fmt: skip
    off_feats = torch.load(d / "off.pt", weights_only=True)
    res["offline"] = {**off, "requests": len(hub.requests) - before, "feats": off_feats}
    return res


def test_timm_alone_loads_published_weights(downloaded: dict, sources: dict) -> None:
    f = downloaded["feats"]
    assert _close(f["timm_vit"], sources["vit"]["ref"])
    # torchvision-layout ResNet published as timm resnet18 keys: timm's model gives torchvision's features.
    assert _close(f["timm_rn18"], sources["rn18"]["ref"])


def test_sslhub_loads_published_weights(downloaded: dict, sources: dict) -> None:
    f = downloaded["feats"]
    assert _close(f["sslhub_vit"], sources["vit"]["ref"])
    assert _close(f["sslhub_rn18"], sources["rn18"]["ref"])
    # Lightly ResNetGenerator: the Worker's embedding (num_ftrs conv kept) and Lightly's documented loader.
    assert _close(f["sslhub_r9_embedding"], sources["r9"]["embedding"])
    assert _close(f["sslhub_r9_backbone"], sources["r9"]["backbone"])


def test_hf_hub_resolve_through_huggingface_hub(hub: HubWriteServer, downloaded: dict, published: dict) -> None:
    s = published["steps"]
    repo = repo_dir(hub.mirrors, "acme/r9")
    first, last = Path(downloaded["resolve_first"]), Path(downloaded["resolve_main"])
    # huggingface_hub's cache layout: snapshots/<commit>/model.safetensors, config.json of the same commit.
    assert first.parent.name == s["r9"]["head"] and last.parent.name == s["r9_overwrite"]["head"]
    assert first.read_bytes() == read_file(repo, s["r9"]["head"], "model.safetensors")
    assert downloaded["config_next_to_it"]
    assert json.loads((first.parent / "config.json").read_bytes()) == json.loads(
        read_file(repo, s["r9"]["head"], "config.json")
    )
    assert downloaded["snapshot"] == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert downloaded["download_readme"].encode() == read_file(repo, "main", "README.md")
    assert "hf-hub:acme/does-not-exist: repository not found" in downloaded["missing_repo"]
    assert "has no model.safetensors (it has pytorch_model.bin)" in downloaded["pickle_only"]
    assert "hf-hub:org/name" in downloaded["bad_id"]
    assert "not in the Hugging Face cache" in downloaded["sslhub_offline_uncached"]
    assert downloaded["sslhub_offline_cached"] == downloaded["resolve_main"]


def test_offline_mode_uses_the_cache_only(downloaded: dict, sources: dict) -> None:
    off = downloaded["offline"]
    assert off["requests"] == 0
    assert off["resolve"] == downloaded["resolve_main"]
    assert _close(off["feats"]["timm_vit"], sources["vit"]["ref"])
    assert _close(off["feats"]["sslhub_vit"], sources["vit"]["ref"])
