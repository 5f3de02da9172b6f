"""Verified, resumable downloads against real servers on loopback: nginx (Range/ETag/If-Range), a proxy that cuts
connections mid-file, and moto_server for presigned S3 GET URLs. Weights are real Lightly Worker checkpoints."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest_servers import cutting_proxy, moto_s3, nginx  # noqa: F401  (pytest fixtures)
from lightly_refs import documented_worker_loader, save_worker_ckpt, worker_model

import sslhub
from sslhub.hub import (
    DownloadError,
    HashMismatchError,
    OfflineError,
    cache_path,
    fetch_url,
    redact_url,
    resolve_source,
)

MB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_bytes(n: int, seed: int) -> bytes:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8).numpy().tobytes()


@pytest.fixture(autouse=True)
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "sslhub_home"
    monkeypatch.setenv("SSLHUB_HOME", str(home))
    monkeypatch.delenv("SSLHUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SSLHUB_CARDS", raising=False)
    return home


@pytest.fixture(scope="module")
def worker_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """A Lightly Worker checkpoint of ResNetGenerator('resnet-9', width=0.0625) built with lightly."""
    model = worker_model("resnet-9", width=0.0625, num_ftrs=16, out_dim=8)
    path = save_worker_ckpt(model, tmp_path_factory.mktemp("ckpt") / "worker.ckpt")
    return path.read_bytes(), path


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


# ------------------------------------------------------------------------------------------------ nginx


def test_fetch_verifies_caches_and_loads(nginx, worker_ckpt, hub_env):
    data, src = worker_ckpt
    nginx.put("w/worker.ckpt", data)
    url = nginx.url("w/worker.ckpt")
    path = fetch_url(url, sha256=sha(data), progress=False)
    assert path == cache_path(url) and path.read_bytes() == data
    assert str(path).startswith(str(hub_env))
    meta = json.loads(path.with_name(path.name + ".sslhub.json").read_text())
    assert meta["sha256"] == sha(data) and meta["verified"] is True
    n = len(nginx.log("worker.ckpt"))
    assert fetch_url(url, sha256=sha(data), progress=False) == path
    assert len(nginx.log("worker.ckpt")) == n, "a cached, verified file must not be downloaded again"

    # load_pretrained(URL) goes through the same cache; features equal Lightly's documented Worker loader
    model = sslhub.load_pretrained(url)
    assert len(nginx.log("worker.ckpt")) == n
    ref = documented_worker_loader(src, "resnet-9", 0.0625)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-6)


def test_resume_after_cut_connection(nginx, cutting_proxy, hub_env):
    data = random_bytes(2 * MB, seed=1)
    nginx.put("r/big.bin", data)
    url = cutting_proxy.url("r/big.bin")
    cutting_proxy.cut_next(700_000)
    with pytest.raises(DownloadError, match="next fetch resumes"):
        fetch_url(url, sha256=sha(data), progress=False, retries=0)
    final = cache_path(url)
    part = final.with_name(final.name + ".part")
    assert not final.exists()
    have = part.stat().st_size
    assert 0 < have < len(data) and part.read_bytes() == data[:have]
    etag = nginx.log("big.bin")[-1]

    path = fetch_url(url, sha256=sha(data), progress=False)
    assert path.read_bytes() == data
    last = nginx.log("big.bin")[-1]
    assert last.range == f"bytes={have}-" and last.status == 206
    assert last.if_range.startswith('"') and etag.status == 200  # If-Range carried the strong ETag
    assert last.body_bytes == len(data) - have, "only the missing bytes must be transferred"
    assert leftovers(hub_env) == sorted([path.name, path.name + ".sslhub.json"])


def test_retries_resume_within_one_call(nginx, cutting_proxy, caplog):
    data = random_bytes(MB + 123, seed=2)
    nginx.put("r/retry.bin", data)
    cutting_proxy.cut_next(300_000, times=2)
    with caplog.at_level(logging.WARNING, logger="sslhub"):
        path = fetch_url(cutting_proxy.url("r/retry.bin"), sha256=sha(data), progress=False, retries=3, backoff=0.01)
    assert path.read_bytes() == data
    # nginx logs a request when it ends, so the cut ones may come later: compare as a multiset
    statuses = sorted((e.status, bool(e.range)) for e in nginx.log("retry.bin"))
    assert statuses == [(200, False), (206, True), (206, True)]
    last = [e for e in nginx.log("retry.bin") if e.status == 206 and e.body_bytes == len(data) - int(e.range[6:-1])]
    assert last, "the final attempt must fetch exactly the missing bytes"
    assert caplog.text.count("retrying in") == 2


def test_server_file_changed_between_attempts_restarts(nginx, cutting_proxy):
    old = random_bytes(MB, seed=3)
    new = random_bytes(MB, seed=4)  # same size: only the ETag (mtime) tells them apart
    nginx.put("r/changing.bin", old, mtime=1_600_000_000)
    url = cutting_proxy.url("r/changing.bin")
    cutting_proxy.cut_next(400_000)
    with pytest.raises(DownloadError):
        fetch_url(url, sha256=sha(new), progress=False, retries=0)
    nginx.put("r/changing.bin", new, mtime=1_700_000_000)

    path = fetch_url(url, sha256=sha(new), progress=False)
    assert path.read_bytes() == new
    last = nginx.log("changing.bin")[-1]
    # we asked to resume with the old ETag; nginx saw it no longer matches and sent the whole new file
    assert last.range.startswith("bytes=") and last.if_range and last.status == 200 and last.body_bytes == len(new)


def test_wrong_file_for_known_sha256_is_deleted(nginx, hub_env):
    good, evil = random_bytes(200_000, seed=5), random_bytes(200_000, seed=6)
    nginx.put("r/evil.bin", evil)
    url = nginx.url("r/evil.bin")
    with pytest.raises(HashMismatchError, match="deleted") as exc:
        fetch_url(url, sha256=sha(good), progress=False)
    assert sha(evil) in str(exc.value)
    assert leftovers(hub_env) == [], "nothing of a mismatching download may stay in the cache"
    # a file cached by an unverified fetch of the same URL is not returned to a verified one
    fetch_url(url, progress=False)
    n = len(nginx.log("evil.bin"))
    with pytest.raises(HashMismatchError):
        fetch_url(url, sha256=sha(good), progress=False)
    assert len(nginx.log("evil.bin")) == n + 1, "the mismatching cached file must trigger a fresh, verified download"


def test_wrong_size_is_rejected(nginx, hub_env):
    data = random_bytes(50_000, seed=7)
    nginx.put("r/size.bin", data)
    with pytest.raises(HashMismatchError, match="size 50000 bytes, expected 50001"):
        fetch_url(nginx.url("r/size.bin"), size=len(data) + 1, progress=False)
    assert leftovers(hub_env) == []


def test_concurrent_fetches_download_once(nginx, hub_env, tmp_path):
    data = random_bytes(2 * MB, seed=8)  # ~2 s at the /slow/ rate, so both processes overlap
    nginx.put("r/shared.bin", data)
    url = nginx.url("r/shared.bin", slow=True)
    script = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO)
        from sslhub.hub import fetch_url
        print(fetch_url({url!r}, sha256={sha(data)!r}, progress=False))
    """)
    env = {**os.environ, "SSLHUB_HOME": str(hub_env)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1 and Path(paths.pop()).read_bytes() == data
    gets = nginx.log("slow/r/shared.bin")
    assert len(gets) == 1 and gets[0].status == 200, "the second process must wait for the first and reuse its file"
    assert any("another process is downloading" in o[1] for o in outs)


def test_offline_mode_uses_cache_or_fails_clearly(nginx, monkeypatch):
    data = random_bytes(10_000, seed=9)
    nginx.put("r/offline.bin", data)
    url = nginx.url("r/offline.bin")
    path = fetch_url(url, sha256=sha(data), progress=False)
    n = len(nginx.log())
    monkeypatch.setenv("SSLHUB_OFFLINE", "1")
    assert fetch_url(url, sha256=sha(data), progress=False) == path
    with pytest.raises(OfflineError, match="SSLHUB_OFFLINE=1"):
        fetch_url(nginx.url("r/not-cached.bin"), progress=False)
    # HF_HUB_OFFLINE=1 means offline for sslhub too (one switch for a machine without network)
    monkeypatch.delenv("SSLHUB_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_url(url, sha256=sha(data), progress=False) == path
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE=1"):
        fetch_url(nginx.url("r/not-cached.bin"), progress=False)
    assert len(nginx.log()) == n, "offline mode must not contact the server"


def test_unverified_download_warns_with_digest(nginx, caplog):
    data = random_bytes(5_000, seed=10)
    nginx.put("r/unverified.bin", data)
    with caplog.at_level(logging.WARNING, logger="sslhub"):
        fetch_url(nginx.url("r/unverified.bin"), progress=False)
    assert "UNVERIFIED" in caplog.text and sha(data) in caplog.text


def test_client_errors_are_not_retried(nginx):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_url(nginx.url("r/missing.bin"), progress=False, retries=3, backoff=5.0)
    assert len(nginx.log("missing.bin")) == 1


def test_mirror_is_used_when_the_primary_fails(nginx):
    data = random_bytes(20_000, seed=11)
    nginx.put("r/mirror.bin", data)
    path = fetch_url(nginx.url("r/gone.bin"), mirrors=[nginx.url("r/mirror.bin")], filename="m.bin",
                     sha256=sha(data), progress=False)
    assert path.read_bytes() == data and path.name == "m.bin"


def test_card_name_resolves_to_verified_fetch(nginx, worker_ckpt, tmp_path, monkeypatch, capsys):
    data, src = worker_ckpt
    nginx.put("cards/tiny.ckpt", data)
    cards = tmp_path / "cards"
    cards.mkdir()
    good = _card("simclr-resnet9-w0.0625-d16.test", nginx.url("cards/tiny.ckpt"), sha(data), len(data))
    bad = _card("simclr-resnet9-w0.0625-d16.badhash", nginx.url("cards/tiny.ckpt"), "0" * 64, len(data))
    (cards / "simclr-resnet9-w0.0625-d16.test.yaml").write_text(good)
    (cards / "simclr-resnet9-w0.0625-d16.badhash.yaml").write_text(bad)
    monkeypatch.setenv("SSLHUB_CARDS", str(cards))

    assert "simclr-resnet9-w0.0625-d16.test" in sslhub.list_pretrained("*.test")
    path = resolve_source("simclr-resnet9-w0.0625-d16.test", progress=False)
    assert path.read_bytes() == data
    model = sslhub.load_pretrained("simclr-resnet9-w0.0625-d16.test")
    ref = documented_worker_loader(src, "resnet-9", 0.0625)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-6)
    with pytest.raises(HashMismatchError):
        sslhub.load_pretrained("simclr-resnet9-w0.0625-d16.badhash")

    from sslhub.cli import main

    assert main(["fetch", "simclr-resnet9-w0.0625-d16.test", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert main(["fetch", "simclr-resnet9-w0.0625-d16.badhash", "-q"]) == 2
    assert "sha256" in capsys.readouterr().err


def _card(name: str, url: str, sha256: str, size: int) -> str:
    return textwrap.dedent(f"""\
        name: {name}
        method: simclr
        architecture: resnet-9
        width: 0.0625
        num_ftrs: 16
        summary: tiny test weight served from loopback
        training: {{data: random, epochs: 1, batch_size: 2}}
        metrics: []
        files:
          - {{url: "{url}", filename: tiny.ckpt, size: {size}, sha256: "{sha256}"}}
        source: {{layout: lightly-worker, prefix: model.backbone.}}
        load: {{arch: resnet-9, width: 0.0625}}
        license: MIT
        paper: null
    """)


def test_unknown_sources_name_the_accepted_forms():
    with pytest.raises(ValueError, match="registry name") as e:
        resolve_source("simclr-resnet50.nonexistent")
    assert "hf-hub:" in str(e.value) and "simclr-resnet50.lightly-in1k" in str(e.value)  # close match suggested
    with pytest.raises(ValueError, match="presigned"):
        resolve_source("s3://bucket/key.ckpt")
    with pytest.raises(FileNotFoundError, match="no such file"):  # a path: an OSError naming it, exit 2 in the CLI
        resolve_source("./does/not/exist.ckpt")


def test_redact_url():
    u = "https://user:pw@bucket.s3.amazonaws.com/a/b.ckpt?X-Amz-Signature=abc&X-Amz-Credential=k#frag"
    assert redact_url(u) == "https://bucket.s3.amazonaws.com/a/b.ckpt?<query redacted>"
    assert cache_path(u) == cache_path(u.split("?")[0]), "a fresh presigned URL must find the cached object"


# ------------------------------------------------------------------------------------------------ S3 (moto)


def test_s3_presigned_get(moto_s3, worker_ckpt, caplog, capsys):
    data, src = worker_ckpt
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="lightly-worker")
    key = "runs/42/checkpoints/lightly_epoch_3.ckpt"
    s3.put_object(Bucket="lightly-worker", Key=key, Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "lightly-worker", "Key": key}, ExpiresIn=600)
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    assert len(signature) == 64

    before = len(moto_s3.requests_for(key))  # boto3's PUT
    missing = s3.generate_presigned_url("get_object", Params={"Bucket": "lightly-worker", "Key": "nope.ckpt"})
    caplog.clear()  # boto3 itself logs signatures while presigning; only what sslhub does is checked below
    with caplog.at_level(logging.DEBUG):  # urllib3's debug lines included
        model = sslhub.load_pretrained(url)
        with pytest.raises(DownloadError) as e:
            fetch_url(missing, progress=False)
    ref = documented_worker_loader(src, "resnet-9", 0.0625)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-6)
    assert "HTTP 404" in str(e.value) and "NoSuchKey" in str(e.value)
    for text in (caplog.text, str(e.value), capsys.readouterr().err):
        assert "X-Amz-Signature" not in text and signature not in text and "X-Amz-Credential" not in text
    assert '"GET /lightly-worker/runs/42/checkpoints/lightly_epoch_3.ckpt?<query redacted>' in caplog.text
    # only GET, never HEAD (the signature covers GET only)
    ours = moto_s3.requests_for(key)[before:]
    assert ours and all(r.startswith("GET ") for r in ours), ours
    # a fresh presigned URL for the same object is served from the cache
    n = len(moto_s3.requests_for(key))
    url2 = s3.generate_presigned_url("get_object", Params={"Bucket": "lightly-worker", "Key": key}, ExpiresIn=900)
    assert url2 != url and resolve_source(url2) == cache_path(url)
    assert len(moto_s3.requests_for(key)) == n
