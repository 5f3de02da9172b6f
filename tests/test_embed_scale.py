"""Embeddings and kNN at dataset scale (issue 23): shard folders read back by load_embeddings and by plain
safetensors, resume after kill -9 equal to an uninterrupted run, 2-process torchrun equal to 1 process (embed and
kNN), file lists / CSV manifests / WebDataset tars, chunked top-k against the exact kNN, flat memory in N."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest_servers import free_port
from shared_data import shared_data

from sslhub.backbones import create_backbone
from sslhub.data import DatasetError, ImageFolderDataset
from sslhub.data.sources import FileListSource, TarSource, open_source, redact_url
from sslhub.evaluation import embed, embed_to_shards, load_embeddings, write_lightly_csv
from sslhub.evaluation.knn import knn_scores
from sslhub.evaluation.shards import EmbeddingsError
from sslhub.evaluation.topk import chunked_topk, faiss_topk, knn_vote

ROOT = Path(__file__).resolve().parents[1]
TINY = shared_data("cifar10_tiny")
MODEL_ARGS = ["--arch", "resnet-18", "--width", "0.125", "--input-size", "32", "--device", "cpu"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet-18", width=0.125).eval()


@pytest.fixture(scope="module")
def tiny_weights(tiny_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SSLHUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout)  # fmt: skip


def run_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``sslhub ARGS`` through the CLI's entry point in this process: exit code, stdout, stderr."""
    from sslhub.cli import main

    capsys.readouterr()
    rc = main(list(args))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert exe, "torchrun comes with torch"
    cmd = [exe, f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           "-m", "sslhub", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


KW = dict(input_size=32, device="cpu", num_workers=0)


# ------------------------------------------------------------------------------------------- shard format


def test_shards_read_back_memory_mapped_and_by_plain_safetensors(tiny_model, tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    out = tmp_path / "emb"
    run = embed_to_shards(tiny_model, TINY / "test", out, batch_size=16, shard_size=32, **KW)
    assert (run.num_embeddings, run.dim, run.shards, run.skipped) == (100, 64, 4, 0)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", *(f"shard-{i:06d}.safetensors" for i in range(4))]

    emb = load_embeddings(out, verify=True)
    ref = embed(tiny_model, TINY / "test", batch_size=16, **KW)  # the in-memory path, same batches
    assert emb.filenames == ref.filenames == ImageFolderDataset(TINY / "test").filenames
    assert np.array_equal(emb.labels, ref.labels.numpy())
    assert all(isinstance(p, np.memmap) for p in emb.vectors.parts)
    assert np.array_equal(np.asarray(emb.vectors), ref.features.numpy())
    assert np.array_equal(emb.vectors[30:70], ref.features.numpy()[30:70])  # across a shard boundary
    assert np.array_equal(emb.vectors[-1], ref.features.numpy()[-1])

    # Any safetensors reader sees the same rows, labels and names.
    plain = [load_file(str(out / f"shard-{i:06d}.safetensors")) for i in range(4)]
    assert np.array_equal(np.concatenate([p["embeddings"] for p in plain]), ref.features.numpy())
    assert np.array_equal(np.concatenate([p["labels"] for p in plain]), ref.labels.numpy())
    with safe_open(str(out / "shard-000001.safetensors"), framework="np") as f:
        assert json.loads(f.metadata()["filenames"]) == ref.filenames[32:64]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and [s["rows"] for s in manifest["shards"]] == [32, 32, 32, 4]

    # float16 shards: the same vectors, rounded.
    half = embed_to_shards(tiny_model, TINY / "test", tmp_path / "half", batch_size=16, shard_size=64,
                           dtype="float16", **KW)  # fmt: skip
    assert half.num_embeddings == 100
    h = load_embeddings(tmp_path / "half")
    assert h.vectors.dtype == np.float16
    np.testing.assert_allclose(np.asarray(h.vectors, dtype=np.float32), ref.features.numpy(), rtol=1e-3, atol=1e-3)


def test_export_to_lightly_csv_and_checksum_verification(tiny_model, tmp_path: Path, capsys) -> None:
    from lightly.utils.io import load_embeddings as lightly_load

    out = tmp_path / "emb"
    embed_to_shards(tiny_model, TINY / "test", out, batch_size=16, shard_size=48, **KW)
    emb = load_embeddings(out)
    ref_csv = tmp_path / "ref.csv"
    write_lightly_csv(ref_csv, np.asarray(emb.vectors), emb.labels.tolist(), emb.filenames)

    p = cli("export-embeddings", str(out), "--out", str(tmp_path / "x.csv"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "x.csv").read_bytes() == ref_csv.read_bytes()  # Lightly's format, byte for byte
    e, labels, names = lightly_load(str(tmp_path / "x.csv"))
    assert names == emb.filenames and labels == emb.labels.tolist()
    rc, _, err = run_main(capsys, "export-embeddings", str(out), "--out", str(tmp_path / "x.csv"))
    assert rc == 2 and "--force" in err and "Traceback" not in err

    # A changed shard is caught by the checksum check.
    shard = out / "shard-000001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(EmbeddingsError, match="shard-000001.safetensors does not match its checksum"):
        load_embeddings(out, verify=True)


def test_sharded_cli_output_guards(tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # The CLI's entry point in this process (a subprocess costs seconds of imports each; the subprocess path of
    # the same main() is covered by the resume, export and torchrun tests).
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    rc, _, err = run_main(capsys, "embed", str(tiny_weights), str(TINY / "test"), "--out", f"{other}/", *MODEL_ARGS)
    assert rc == 2 and "not an sslhub embedding folder" in err and "Traceback" not in err
    assert (other / "notes.txt").read_text() == "mine"

    out = tmp_path / "emb"
    args = ("embed", str(tiny_weights), str(TINY / "test"), "--out", f"{out}/", *MODEL_ARGS, "--shard-size", "64")
    rc, stdout, err = run_main(capsys, *args)
    assert rc == 0, err
    assert "wrote 100 embeddings of dimension 64" in stdout and "2 shard(s)" in stdout
    before = _files(out)
    rc, _, err = run_main(capsys, *args)
    assert rc == 2 and "already holds a finished embedding run; pass --force" in err
    assert _files(out) == before
    rc, _, err = run_main(capsys, *args, "--force")
    assert rc == 0, err
    assert _files(out) == before  # deterministic
    rc, _, err = run_main(capsys, "embed", str(tiny_weights), str(TINY / "test"), "--out", str(tmp_path / "e.parquet"),
                          *MODEL_ARGS)  # fmt: skip
    assert rc == 2 and ".csv, .safetensors, .npy" in err


# ------------------------------------------------------------------------------------------------ resume


def _big_folder(root: Path, copies: int) -> Path:
    """``copies`` x the 200 tiny training images, hard-linked under new names (class folders kept)."""
    for src in sorted((TINY / "train").rglob("*.jpg")):
        (root / src.parent.name).mkdir(parents=True, exist_ok=True)
        for c in range(copies):
            os.link(src, root / src.parent.name / f"{c}_{src.name}")
    return root


def test_resume_after_kill_9_equals_an_uninterrupted_run(tiny_weights: Path, tmp_path: Path, capsys) -> None:
    data = _big_folder(tmp_path / "data", 6)  # 1,200 images, 30 shards
    args = [str(tiny_weights), str(data), *MODEL_ARGS, "--shard-size", "40", "--batch-size", "20", "--num-workers", "0"]
    ref = tmp_path / "ref"
    rc, _, err = run_main(capsys, "embed", *args, "--out", f"{ref}/")  # the uninterrupted run
    assert rc == 0, err

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sslhub", "embed", *args, "--out", f"{out}/"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / ".progress").glob("*.json"))) >= 3 if (out / ".progress").is_dir() else False:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False  # the kill landed mid-run
    done = sorted(out.glob("shard-*.safetensors"))
    assert 3 <= len(done) < 30
    # A finished shard damaged after the kill is caught by its checksum and embedded again.
    first = bytearray(done[0].read_bytes())
    first[-1] ^= 0xFF
    done[0].write_bytes(bytes(first))

    p = cli("embed", *args, "--out", f"{out}/")
    assert p.returncode == 0, p.stderr
    assert "kept from an earlier run" in p.stdout and "does not match its recorded checksum" in p.stderr
    assert _files(out) == _files(ref)  # bit for bit, manifest included; no .progress or temporary files left


# ------------------------------------------------------------------------------------------------ torchrun


def test_torchrun_two_processes_equal_one_process_embed_and_knn(tiny_weights: Path, tmp_path: Path,
                                                                 capsys) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    args = [str(tiny_weights), str(TINY / "test"), *MODEL_ARGS, "--shard-size", "16", "--batch-size", "8",
            "--num-workers", "0"]  # fmt: skip
    rc, _, err = run_main(capsys, "embed", *args, "--out", f"{one}/")
    assert rc == 0, err
    p = torchrun("embed", *args, "--out", f"{two}/")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("wrote 100 embeddings") == 1  # rank 0 reports
    assert _files(two) == _files(one)  # 7 shards, 4 written by rank 0 and 3 by rank 1, and the manifest

    knn = ["eval", "knn", str(tiny_weights), "--data", str(TINY / "train"), "--val", str(TINY / "test"),
           "--k", "20", *MODEL_ARGS, "--batch-size", "32", "--num-workers", "0", "--no-record"]  # fmt: skip
    rc, _, err = run_main(capsys, *knn, "--json", str(tmp_path / "one.json"))  # the one-process kNN (knn_eval)
    assert rc == 0, err
    p2 = torchrun(*knn, "--json", str(tmp_path / "two.json"))
    assert p2.returncode == 0, p2.stderr[-3000:]
    r1, r2 = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert r2 == r1 and r1["protocol"]["num_train"] == 200 and r1["protocol"]["num_val"] == 100
    rc, _, err = run_main(capsys, *knn, "--faiss", "--json", str(tmp_path / "faiss.json"))  # FAISS, one process
    assert rc == 0, err
    assert json.loads((tmp_path / "faiss.json").read_text()) == r1


# ---------------------------------------------------------------------------------------------- inputs


def test_file_list_csv_manifest_and_webdataset_tars(tiny_model, tmp_path: Path) -> None:
    import webdataset as wds

    folder = ImageFolderDataset(TINY / "test")
    names, labels = folder.filenames, folder.targets
    ref = embed_to_shards(tiny_model, TINY / "test", tmp_path / "ref", batch_size=25, shard_size=50, **KW)
    ref_emb = load_embeddings(ref.folder)

    # A plain list (absolute paths) and a CSV manifest (relative paths, class names as labels).
    listing = tmp_path / "files.txt"
    listing.write_text("# one image per line\n" + "\n".join(str(TINY / "test" / n) for n in names) + "\n")
    (tmp_path / "imgs").symlink_to(TINY / "test")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"imgs/{n},{n.split('/')[0]}\n" for n in names))
    # WebDataset shards written by webdataset's own writer, 40 samples per tar.
    tars = []
    for t in range(3):
        tars.append(tmp_path / f"train-{t:03d}.tar")
        with wds.TarWriter(str(tars[-1])) as w:
            for i in range(40 * t, min(40 * (t + 1), len(names))):
                w.write({"__key__": f"s{i:05d}", "jpg": (TINY / "test" / names[i]).read_bytes(), "cls": labels[i]})

    for src, expect_labels in [(listing, [-1] * 100), (manifest, labels), (str(tmp_path / "train-{000..002}.tar"),
                                                                            labels)]:  # fmt: skip
        out = tmp_path / f"out_{len(list(tmp_path.iterdir()))}"
        embed_to_shards(tiny_model, src, out, batch_size=25, shard_size=50, **KW)
        e = load_embeddings(out)
        assert np.array_equal(np.asarray(e.vectors), np.asarray(ref_emb.vectors)), src  # same pixels, same order
        assert e.labels.tolist() == expect_labels, src
    assert FileListSource(manifest).classes == sorted(set(n.split("/")[0] for n in names))

    # The tar index sees the samples webdataset's own reader yields, in its order.
    seen = [(s["__key__"], int(s["cls"])) for s in wds.WebDataset(str(tmp_path / "train-{000..002}.tar"),
                                                                   shardshuffle=False)]  # fmt: skip
    ts = TarSource(str(tmp_path / "train-{000..002}.tar"))
    assert [(ts.names[i].split("/", 1)[1], int(ts.labels[i])) for i in range(len(ts))] == seen
    assert e.filenames[:2] == ["train-000.tar/s00000", "train-000.tar/s00001"]


def test_bad_images_are_skipped_and_counted(tiny_model, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    shutil.copytree(TINY / "test" / "cat", root)
    good = sorted(root.iterdir())
    (root / "broken.jpg").write_bytes(good[0].read_bytes()[:200])  # truncated JPEG
    (root / "zero.png").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{good[0]}\n{tmp_path / 'missing.jpg'}\n{good[1]}\n")
    run = embed_to_shards(tiny_model, root, tmp_path / "a", batch_size=4, shard_size=4, **KW)
    assert run.skipped == 2 and run.num_embeddings == len(good)
    assert "broken.jpg" not in load_embeddings(run.folder).filenames
    run = embed_to_shards(tiny_model, listing, tmp_path / "b", batch_size=4, shard_size=4, **KW)
    assert (run.skipped, run.num_embeddings) == (1, 2)
    (tmp_path / "list.json").write_text("{}")
    with pytest.raises(DatasetError, match="cannot tell what .*list.json holds"):
        open_source(tmp_path / "list.json")


def test_url_entries_are_fetched_and_never_logged_with_their_token(tiny_model, tmp_path: Path) -> None:
    import http.server
    import threading

    img = sorted((TINY / "test" / "cat").iterdir())[0].read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/ok.jpg"):
                self.send_response(200)
                self.end_headers()
                self.wfile.write(img)
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        listing = tmp_path / "urls.csv"
        listing.write_text(f"url,label\n{base}/ok.jpg?X-Amz-Signature=SECRET123,0\n{base}/gone.jpg?token=SECRET456,1\n")
        src = FileListSource(listing).with_decoding(32)
        assert src[0][0].shape == (3, 32, 32)
        with pytest.raises(Exception) as e:
            src.load(1)
        assert "HTTP 404" in str(e.value) and "SECRET" not in str(e.value)
        assert "SECRET" not in redact_url(f"{base}/x.jpg?sig=SECRET")
        # The image that downloads is embedded, the other skipped; no token lands in a file.
        run = embed_to_shards(tiny_model, listing, tmp_path / "emb", batch_size=2, shard_size=2, **KW)
        assert (run.num_embeddings, run.skipped) == (1, 1)
        assert load_embeddings(run.folder).filenames == [f"{base}/ok.jpg"]
        assert not [f for f in (tmp_path / "emb").rglob("*") if f.is_file() and b"SECRET" in f.read_bytes()]
    finally:
        server.shutdown()


# ------------------------------------------------------------------------------------------------ top-k


def test_chunked_topk_and_faiss_give_the_exact_knn() -> None:
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(3000, 32, generator=g)
    labels = torch.randint(0, 10, (3000,), generator=g)
    queries = torch.randn(257, 32, generator=g)
    bn = torch.nn.functional.normalize(bank, dim=1)
    qn = torch.nn.functional.normalize(queries, dim=1)
    exact = knn_scores(qn, bn.t().contiguous(), labels, 10, 50, 0.1)
    ref_sims, ref_idx = (qn @ bn.t()).topk(50, dim=1)

    blocks = [(a, bank[a : a + 700]) for a in range(0, 3000, 700)]  # blocks smaller and larger than k
    sims, idx = chunked_topk(queries, blocks, 50, query_chunk=100)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(sims, ref_sims)
    scores = knn_vote(sims, labels[idx], 10, 0.1)
    torch.testing.assert_close(scores, exact)
    assert torch.equal(scores.argmax(1), exact.argmax(1))

    pytest.importorskip("faiss")
    fs, fi = faiss_topk(queries, [(a, b.numpy()) for a, b in blocks], 50)
    assert torch.equal(fi, ref_idx)
    torch.testing.assert_close(fs, ref_sims, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ flat memory


def _peak_rss(n: int, tmp_path: Path) -> float:
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "embed_rss_probe.py"), str(n), str(tmp_path / f"e{n}")],
                       capture_output=True, text=True, env=_env(), timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["n"] == n
    return result["peak_rss_mb"]


# Holding the 512-d float32 embeddings in memory (the old way) would add 2 KB per image: +53 MB from 4k to 30k,
# +180 MB from 10k to 100k (and twice that while they are concatenated). Streaming shards keeps one shard.
RSS_BOUND_MB = 32


def test_memory_is_flat_in_the_number_of_images(tmp_path: Path) -> None:
    small, large = _peak_rss(4000, tmp_path), _peak_rss(30000, tmp_path)
    assert large - small < RSS_BOUND_MB, (small, large)


@pytest.mark.slow
def test_memory_is_flat_from_10k_to_100k_images(tmp_path: Path) -> None:
    small, large = _peak_rss(10000, tmp_path), _peak_rss(100000, tmp_path)
    assert large - small < RSS_BOUND_MB, (small, large)


def test_an_unfinished_run_resumes_only_with_its_own_settings(tiny_model, tmp_path: Path) -> None:
    out = tmp_path / "emb"
    embed_to_shards(tiny_model, TINY / "test", out, batch_size=16, shard_size=64, **KW)
    manifest = json.loads((out / "manifest.json").read_text())
    # As a killed run leaves it: the manifest unfinished, one shard's record in .progress.
    (out / ".progress").mkdir()
    first = manifest["shards"][0]
    (out / ".progress" / "shard-000000.safetensors.json").write_text(json.dumps({**first, "dim": 64}))
    (out / "shard-000001.safetensors").unlink()
    (out / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(EmbeddingsError, match="unfinished run with other settings \\(shard_size: 64 there, 32 now\\)"):
        embed_to_shards(tiny_model, TINY / "test", out, batch_size=16, shard_size=32, **KW)
    with pytest.raises(EmbeddingsError, match="unfinished embedding run; run the same"):
        load_embeddings(out)
    run = embed_to_shards(tiny_model, TINY / "test", out, batch_size=16, shard_size=64, **KW)
    assert (run.shards_kept, run.shards_done_here) == (1, 1)
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_nan_embeddings_or_no_readable_image_never_finish_a_run(tiny_model, tmp_path: Path) -> None:
    class NaNAfter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            return y / 0 * 0 if self.calls_left() else y  # NaN from the second batch on

        def calls_left(self) -> bool:
            self.n = getattr(self, "n", 0) + 1
            return self.n > 1

    out = tmp_path / "nan"
    with pytest.raises(EmbeddingsError, match="non-finite embeddings .* shard-000001.safetensors"):
        embed_to_shards(NaNAfter(), TINY / "test", out, batch_size=20, shard_size=20, **KW)
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-000000.safetensors"]

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="no image of folder .*bad could be decoded"):
        embed_to_shards(tiny_model, bad, tmp_path / "none", batch_size=4, shard_size=4, **KW)


def test_knn_on_csv_manifests_equals_knn_on_the_folders(tiny_model, tmp_path: Path) -> None:
    from sslhub.evaluation import knn_eval
    from sslhub.evaluation.knn_scale import knn_eval_sharded

    lists = {}
    for split in ("train", "test"):
        ds = ImageFolderDataset(TINY / split)
        lists[split] = tmp_path / f"{split}.csv"
        lists[split].write_text("filename,label\n" + "".join(f"{TINY / split / n},{n.split('/')[0]}\n"
                                                               for n in ds.filenames))  # fmt: skip
    kw = dict(k=20, batch_size=32, **KW)
    ref = knn_eval(tiny_model, TINY / "train", TINY / "test", **kw)
    got = knn_eval_sharded(tiny_model, lists["train"], lists["test"], dataset="cifar10_tiny", split="test", **kw)
    assert got["value"] == ref["value"] and got["protocol"]["top5"] == ref["protocol"]["top5"]
    assert got["protocol"]["num_train"] == 200 and got["protocol"]["num_classes"] == 10
