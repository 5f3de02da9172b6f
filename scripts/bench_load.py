"""Benchmark: loading a ResNet-50 Lightly Worker checkpoint, sslhub vs references, side by side.

Prints medians of several runs and ratios:
  * load_pretrained(.ckpt) and load_pretrained(.safetensors) vs the documented Lightly Worker loader
    (target: >= 3x faster on the safetensors path);
  * load_pretrained(.safetensors) vs bare safetensors.torch.load_file on the same file (target: <= 1.5x), with
    the architecture's skeleton cached (every load after the first in a process) and without (the first);
  * `import sslhub` over `import torch` (target: <= 150 ms).

Usage: python scripts/bench_load.py [--repeats 7] [--name resnet-50] [--width 1]
Needs the `lightly` test extra for the reference loader.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (page cache, lazy imports)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def import_overhead(repeats: int) -> tuple[float, float]:
    def run(code: str) -> float:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        return float(out.stdout.strip())

    t_torch = "import time; t=time.perf_counter(); import torch; print(time.perf_counter()-t)"
    t_both = "import time; t=time.perf_counter(); import torch, sslhub; print(time.perf_counter()-t)"
    run(t_both)  # warm the page cache for both
    pairs = [(run(t_torch), run(t_both)) for _ in range(repeats)]  # interleaved, so load drifts hit both
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--name", default="resnet-50")
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args()

    import lightly_refs  # tests/lightly_refs.py: builds the Worker model with lightly itself
    from safetensors.torch import load_file

    import sslhub
    from sslhub.checkpoints.skeleton import clear_cache

    tmp = Path(tempfile.mkdtemp(prefix="sslhub-bench-"))
    model = lightly_refs.worker_model(args.name, args.width, num_ftrs=32, out_dim=128)
    ckpt = lightly_refs.save_worker_ckpt(model, tmp / "checkpoint.ckpt")
    st = sslhub.convert(ckpt, tmp / "model.safetensors")
    print(f"{args.name} w{args.width:g}: .ckpt {ckpt.stat().st_size / 1e6:.1f} MB, .safetensors {st.stat().st_size / 1e6:.1f} MB, torch {torch.__version__}")

    rows = {
        "documented Lightly loader (.ckpt)": lambda: lightly_refs.documented_worker_loader(ckpt, args.name, args.width),
        "sslhub.load_pretrained(.ckpt)": lambda: sslhub.load_pretrained(ckpt),
        "sslhub.load_pretrained(.safetensors)": lambda: sslhub.load_pretrained(st),
        # What the first load of an architecture in a process pays: the skeleton is built on the meta device.
        "  same, skeleton not cached (1st load)": lambda: (clear_cache(), sslhub.load_pretrained(st)),
        "safetensors.torch.load_file (bare)": lambda: load_file(st),
    }
    t = {k: median_time(fn, args.repeats) for k, fn in rows.items()}
    ref, bare = t["documented Lightly loader (.ckpt)"], t["safetensors.torch.load_file (bare)"]
    print(f"\n{'path':<40} {'median ms':>10} {'vs Lightly':>11} {'vs load_file':>13}")
    for k, v in t.items():
        print(f"{k:<40} {v * 1e3:>10.1f} {ref / v:>10.2f}x {v / bare:>12.2f}x")
    st_ratio = t["sslhub.load_pretrained(.safetensors)"] / bare
    speedup = ref / t["sslhub.load_pretrained(.safetensors)"]
    a, b = import_overhead(args.repeats)
    print(f"\nimport torch: {a * 1e3:.0f} ms; import torch + sslhub: {b * 1e3:.0f} ms; sslhub adds {(b - a) * 1e3:.0f} ms")
    print("\ntargets:")
    print(f"  safetensors path / bare load_file = {st_ratio:.2f}x (target <= 1.5x): {'OK' if st_ratio <= 1.5 else 'MISSED'}")
    print(f"  Lightly loader / safetensors path = {speedup:.2f}x (target >= 3x): {'OK' if speedup >= 3 else 'MISSED'}")
    print(f"  import overhead = {(b - a) * 1e3:.0f} ms (target <= 150 ms): {'OK' if b - a <= 0.15 else 'MISSED'}")


if __name__ == "__main__":
    main()
