"""CPU benchmark: distilling a locally trained teacher into a ResNet-18 vs SimCLR on the same student, same budget.

On the clothing set (CC0, 10 classes; default /work/shared/data/clothing10_160px: 3,068 train images used
unlabelled for training and labelled as the kNN bank, 341 val and 372 test images as queries):

1. teacher: ``simclr-resnet-18-demo`` (Lightly ResNetGenerator resnet-18, width 0.25, 32 px), ``--teacher-epochs``;
2. student A: ``distillationv1-resnet-18`` (same architecture, width 0.25, 32 px, batch 64) taught by the teacher's
   ``model.safetensors``, ``--student-epochs``;
3. student B: ``simclr-resnet-18-demo`` for the same epochs, batch and images (SimCLR sees two views per image,
   distillation one view plus a teacher forward pass: the same images and steps, not the same FLOPs);
4. ``sslhub eval knn`` (k=20, t=0.1, 32 px) of each run and of the random-init twin (``--random-init``: the run's own
   untrained backbone; runs that share architecture, width and seed share one twin, evaluated once).

Every step is the ``sslhub`` CLI in a subprocess under ``nice -n 5`` with OMP_NUM_THREADS=1 (printed as run). A
finished run (its config.yaml has the asked epochs and metrics.jsonl that many rows) and a finished evaluation
(its JSON exists) are reused, so an interrupted benchmark continues; ``--fresh`` starts over. Training time is
the run's own ``elapsed_s`` (set-up and steps, from metrics.jsonl), so reused runs report their measured time.
Prints the table for training/README.md (Markdown) and writes it with the raw numbers to OUT/bench.json.

Usage: python scripts/bench_distill_cpu.py [--data DIR] [--out runs/bench_distill] [--teacher-epochs 24]
       [--student-epochs 8] [--student-seed 1] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/work/shared/data/clothing10_160px")
COMMON = ["--set", "monitor_every=0", "--num-workers", "1", "--logger", "none", "-q"]
KNN = ["--input-size", "32", "--k", "20", "--t", "0.1", "--num-workers", "1", "--no-record", "-q"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _sslhub(args: list[str]) -> float:
    """Run ``nice -n 5 python -m sslhub ARGS``; returns its wall seconds; raises with its stderr on failure."""
    cmd = ["nice", "-n", "5", sys.executable, "-m", "sslhub", *args]
    print("  $ sslhub " + " ".join(args), flush=True)
    t0 = time.monotonic()
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_env())
    if p.returncode != 0:
        raise RuntimeError(f"sslhub {args[0]} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return time.monotonic() - t0


def _rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _finished(run: Path, epochs: int) -> bool:
    import yaml  # after argparse: --help stays fast

    if not (run / "model.safetensors").exists() or not (run / "config.yaml").exists():
        return False
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    rows = _rows(run)
    return int(cfg["recipe"]["epochs"]) == epochs and len(rows) == epochs


def train(name: str, recipe: str, data: Path, out: Path, epochs: int, seed: int, extra: list[str]) -> dict:
    """Train (or reuse) ``out/name``; returns its command, steps, images and seconds."""
    run = out / name
    args = ["train", recipe, "--data", str(data / "train"), "--out", str(run), "--epochs", str(epochs),
            "--seed", str(seed), *COMMON, *extra]  # fmt: skip
    if _finished(run, epochs):
        print(f"[{name}] reusing the finished run in {run}", flush=True)
    else:
        print(f"[{name}] training {recipe} for {epochs} epochs ...", flush=True)
        _sslhub([*args, "--force"] if run.exists() else args)
    rows = _rows(run)
    batch = 64  # every run here: the demo recipe's batch and -b 64 for distillation
    return {"command": "sslhub " + " ".join(args), "run": str(run), "seed": seed, "epochs": epochs, "steps": rows[-1]["step"],
            "images": rows[-1]["step"] * batch, "elapsed_s": rows[-1]["elapsed_s"],
            "steps_s": sum(r["time_s"] for r in rows), "loss": [rows[0]["loss"], rows[-1]["loss"]]}  # fmt: skip


def knn(weights: Path, data: Path, split: str, out_json: Path, random_init: bool) -> float:
    """kNN top-1 (%) of ``weights`` (or its random-init twin) on ``split``; reuses ``out_json``."""
    if not out_json.exists():
        out_json.parent.mkdir(parents=True, exist_ok=True)
        # written next to the target, then renamed: an interrupted evaluation leaves no half file to reuse
        with tempfile.TemporaryDirectory(dir=out_json.parent) as tmp:
            tmp_json = Path(tmp) / out_json.name
            _sslhub(["eval", "knn", str(weights), "--data", str(data / "train"), "--val", str(data / split), *KNN,
                     "--json", str(tmp_json), *(["--random-init"] if random_init else [])])  # fmt: skip
            os.replace(tmp_json, out_json)
    return float(json.loads(out_json.read_text())["value"])


def _se(p: float, n: int) -> float:
    return 100 * math.sqrt(p / 100 * (1 - p / 100) / n)


def _count(folder: Path) -> int:
    return sum(1 for f in folder.rglob("*") if f.suffix.lower() in {".jpg", ".jpeg", ".png"})


def main() -> int:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train/, val/, test/ class folders")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_distill", help="runs and results")
    ap.add_argument("--teacher-epochs", type=int, default=24)
    ap.add_argument("--student-epochs", type=int, default=8)
    ap.add_argument("--student-seed", type=int, default=1, help="seed of both students (the teacher keeps seed 1); "
                    "another seed adds runs distill_seedN, simclr_seedN next to the others")  # fmt: skip
    ap.add_argument("--fresh", action="store_true", help="delete OUT's earlier runs and evaluations first")
    args = ap.parse_args()
    splits = [s for s in ("val", "test") if (args.data / s).is_dir()]
    if not (args.data / "train").is_dir() or not splits:
        ap.error(f"--data {args.data}: needs train/ and val/ (or test/) class folders")
    if min(args.teacher_epochs, args.student_epochs) < 1:
        ap.error("--teacher-epochs and --student-epochs: at least 1")
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    d, out, se = args.data, args.out, args.student_epochs
    t0 = time.monotonic()

    suffix = "" if args.student_seed == 1 else f"_seed{args.student_seed}"
    runs = {"teacher": train("teacher", "simclr-resnet-18-demo", d, out, args.teacher_epochs, 1, [])}
    teacher_file = out / "teacher" / "model.safetensors"
    runs["distill"] = train("distill" + suffix, "distillationv1-resnet-18", d, out, se, args.student_seed, [
        "--width", "0.25", "--input-size", "32", "-b", "64", "--set", "load_size=40",
        "--set", "model.queue_size=2048",  # LightlyTrain scales the queue with the data: below the 3,068 images
        "--set", f"model.teacher={teacher_file}", "--set", "schedule.warmup_epochs=1"])  # fmt: skip
    runs["simclr"] = train("simclr" + suffix, "simclr-resnet-18-demo", d, out, se, args.student_seed,
                           ["--set", "schedule.warmup_epochs=1"])  # fmt: skip

    sizes = {s: _count(d / s) for s in splits}
    twins: dict[tuple, str] = {}  # (arch, width, seed) -> the run whose random-init twin was evaluated
    for r in runs.values():
        name = Path(r["run"]).name
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        key = (cfg["recipe"]["backbone"]["arch"], cfg["recipe"]["backbone"]["width"], cfg["seed"])
        r["arch"] = f"{key[0]} width {key[1]}"
        twin = twins.setdefault(key, name)
        w = out / name / "model.safetensors"
        r["knn"] = {s: knn(w, d, s, out / "knn" / f"{name}_{s}.json", False) for s in splits}
        r["knn_random_init"] = {s: knn(out / twin / "model.safetensors", d, s, out / "knn" / f"{twin}_random_{s}.json",
                                       True) for s in splits}  # fmt: skip
        r["random_init_of"] = twin

    table = _table(runs, splits, sizes, out)
    print("\n" + table)
    (out / f"bench{suffix}.json").write_text(json.dumps({"runs": runs, "splits": sizes, "table": table,
                                                "bench_wall_s": time.monotonic() - t0}, indent=1))  # fmt: skip
    return 0


def _table(runs: dict, splits: list[str], sizes: dict[str, int], out: Path) -> str:
    head = "| run | student images (steps x 64) | train min (steps min) | " + " | ".join(
        f"kNN {s} ({sizes[s]}) | vs random init" for s in splits) + " |"  # fmt: skip
    lines = [head, "|" + "---|" * (3 + 2 * len(splits))]
    for r in runs.values():
        cells = [f"{Path(r['run']).name}: {r['arch']}, {r['epochs']} ep, seed {r['seed']}", f"{r['images']:,} ({r['steps']} steps)",
                 f"{r['elapsed_s'] / 60:.1f} ({r['steps_s'] / 60:.1f})"]  # fmt: skip
        for s in splits:
            v, b = r["knn"][s], r["knn_random_init"][s]
            cells += [f"{v:.2f} +/- {_se(v, sizes[s]):.1f}", f"{v - b:+.2f} (random init {b:.2f})"]
        lines.append("| " + " | ".join(cells) + " |")
    a, b = runs["distill"], runs["simclr"]
    ratio = [(f"distill / SimCLR, same student images ({a['images']:,} / {b['images']:,}): train time "
              f"{a['elapsed_s'] / b['elapsed_s']:.2f}x")]  # fmt: skip
    ratio += [f"kNN {s} {a['knn'][s] - b['knn'][s]:+.2f} points (SE of the difference "
              f"{math.hypot(_se(a['knn'][s], sizes[s]), _se(b['knn'][s], sizes[s])):.1f})" for s in splits]
    ratio.append(f"teacher cost not in the student's time: {runs['teacher']['elapsed_s'] / 60:.1f} min")
    return "\n".join(lines) + "\n\n" + "; ".join(ratio) + f"\n(runs in {out})"


if __name__ == "__main__":
    sys.exit(main())
