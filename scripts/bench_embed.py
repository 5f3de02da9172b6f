"""Benchmark: embedding at dataset scale, sslhub's streaming shards vs the all-in-memory way and lightly-embed.

Each measurement is one subprocess (tests/embed_rss_probe.py), so its peak RSS is its own. Prints a table of
images/s and peak RSS per size, the growth of both with N, and the kill-at-50%-and-resume timing:

  * synthetic 8x8 images generated on the fly (no files): ``sslhub`` streaming shards at every size, the old
    in-memory path (``sslhub embed --out x.csv`` holds everything) up to ``--max-in-memory``;
  * a folder of ``--folder-size`` generated 8x8 PNG files: sslhub shards vs lightly-embed's pipeline (Lightly 1.6:
    LightlyDataset + Resize/ToTensor/Normalize + SelfSupervisedEmbedding.embed) with the same model;
  * resume: an uninterrupted run vs a run killed (SIGKILL) when half its shards are done plus the rerun.

The model is a one-conv 512-d extractor (tests/embed_rss_probe.py), so the numbers measure the pipeline (decode,
batching, writing), not a backbone: with a real backbone the model dominates and both paths run at its speed.

Usage: python scripts/bench_embed.py [--sizes 10000,50000,500000] [--folder-size 10000] [--resume-size 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "embed_rss_probe.py"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def probe(n: int, out: Path, *extra: str) -> dict:
    p = subprocess.run([sys.executable, str(PROBE), str(n), str(out), *extra], capture_output=True, text=True,
                       env=_env())  # fmt: skip
    if p.returncode != 0:
        raise RuntimeError(f"probe {n} {' '.join(extra)} failed:\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"  measured: {n} images {' '.join(extra)}: {r['images_per_s']:.0f} images/s, "
          f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    return r


def write_pngs(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = folder / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i:07d}.png")


def resume_timing(n: int, work: Path, shard_size: int) -> tuple[float, float]:
    """Seconds for an uninterrupted run, and for a run killed at 50 % of its shards plus its rerun."""
    t = time.perf_counter()
    probe(n, work / "full", "--shard-size", str(shard_size))
    full = time.perf_counter() - t
    out = work / "killed"
    half = (n // shard_size) // 2
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(PROBE), str(n), str(out), "--shard-size", str(shard_size)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while proc.poll() is None and len(list((out / ".progress").glob("*.json"))) < half:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run([sys.executable, "-c", _RESUME.format(root=str(ROOT), n=n, out=str(out), s=shard_size)],
                   env=_env(), check=True, capture_output=True)  # fmt: skip
    killed = time.perf_counter() - t
    full_files = {p.name: p.read_bytes() for p in (work / "full").iterdir()}
    assert {p.name: p.read_bytes() for p in out.iterdir()} == full_files, "the resumed run differs"
    return full, killed


# The rerun of a killed probe (the probe passes force=True, which would start over; a rerun must not).
_RESUME = """
import sys, torch; sys.path.insert(0, {root!r}); sys.path.insert(0, {root!r} + '/tests')
torch.set_num_threads(1)
from embed_rss_probe import wide_tiny_model
from sslhub.data.sources import SyntheticSource
from sslhub.evaluation import embed_to_shards
embed_to_shards(wide_tiny_model(), SyntheticSource({n}, size=8), {out!r}, input_size=8, batch_size=256,
                device='cpu', num_workers=0, shard_size={s})
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,500000")
    ap.add_argument("--max-in-memory", type=int, default=50000)
    ap.add_argument("--folder-size", type=int, default=10000)
    ap.add_argument("--resume-size", type=int, default=50000)
    ap.add_argument("--shard-size", type=int, default=4096)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in (int(s) for s in args.sizes.split(",")):
            r = probe(n, work / f"s{n}", "--shard-size", str(args.shard_size))
            rows.append(("synthetic", n, "sslhub shards", r))
            if n <= args.max_in_memory:
                rows.append(("synthetic", n, "in memory (old)", probe(n, work / "x", "--in-memory")))
        if args.folder_size:
            folder = work / "pngs"
            write_pngs(folder, args.folder_size)
            n = args.folder_size
            rows.append(("png folder", n, "sslhub shards", probe(n, work / "f", "--folder", str(folder))))
            rows.append(("png folder", n, "lightly-embed path", probe(n, work / "l", "--folder", str(folder),
                                                                       "--lightly")))  # fmt: skip
        print(f"{'input':<11} {'images':>8}  {'pipeline':<20} {'images/s':>9} {'peak RSS MB':>12}")
        for kind, n, what, r in rows:
            print(f"{kind:<11} {n:>8}  {what:<20} {r['images_per_s']:>9.0f} {r['peak_rss_mb']:>12.0f}")
        shards = [(n, r) for kind, n, what, r in rows if kind == "synthetic" and what == "sslhub shards"]
        if len(shards) > 1:
            (n0, r0), (n1, r1) = shards[0], shards[-1]
            print(f"\nsslhub shards, {n0} -> {n1} images: time x{r1['seconds'] / r0['seconds']:.1f} "
                  f"(N x{n1 / n0:.0f}), peak RSS {r1['peak_rss_mb'] - r0['peak_rss_mb']:+.0f} MB")  # fmt: skip
        if args.resume_size:
            full, killed = resume_timing(args.resume_size, work, args.shard_size)
            print(f"resume, {args.resume_size} images: uninterrupted {full:.1f} s; killed at 50 % + rerun "
                  f"{killed:.1f} s (x{killed / full:.2f}); resumed shards equal uninterrupted ones")  # fmt: skip


if __name__ == "__main__":
    main()
