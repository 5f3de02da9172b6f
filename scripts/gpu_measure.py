"""Every GPU measurement of issue 16 in one run, all results in one folder.

Parts (``--parts``, in this order):

* ``speedrun``: ``sslhub train simclr-resnet-18-cifar10-speedrun`` on full CIFAR-10 (50,000 train / 10,000 test),
  timed end to end (process start to exit); ``speedrun/metrics.jsonl`` holds kNN top-1 (k=200) per monitored
  epoch with ``elapsed_s``, and ``speedrun/summary.md`` the kNN-vs-minutes table and the minute 85% was reached.
* ``byol``: the same for ``byol-resnet-18-cifar10-speedrun`` (not in the default parts).
* ``bench``: ``scripts/bench_vs_lightly.py`` for simclr, moco, byol, simsiam, vicreg with training/README.md's GPU
  flags (``--epochs 2 --workers 12 --threads 4 --no-progress``) on a class-balanced training subset.
* ``vit``: the same script with ``--methods dino_vit,mae`` (``--vit-methods`` adds ``ibot,dinov2,ijepa``).

Usage on a machine with a GPU, from the repository root (``--carry``: a folder made here with ``--prepare-carry``
holding the CIFAR-10 archives and the lightly/timm wheels, for a machine without them and without an index)::

    python scripts/gpu_measure.py --prepare-carry runs/devcarry           # here: copies data, downloads wheels
    python3 scripts/gpu_measure.py $OUT --carry runs/devcarry             # there: everything, <= --time-limit
    python3 scripts/gpu_measure.py $OUT --carry runs/devcarry --parts speedrun        # or in two calls of
    python3 scripts/gpu_measure.py $OUT --carry runs/devcarry --parts bench,vit       # <= 10 minutes each
    python scripts/gpu_measure.py runs/gpu --dry-run                       # print the plan and the commands

Every subprocess gets the time left of ``--time-limit`` (a part that would start with under 30 s left is
skipped, a running one is stopped at the limit; what it wrote so far stays). Logs: ``<part>.log``; overview:
``summary.md`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

PARTS = ("speedrun", "byol", "bench", "vit")
DEFAULT_PARTS = "speedrun,bench,vit"
SPEEDRUN_RECIPES = {"speedrun": "simclr-resnet-18-cifar10-speedrun", "byol": "byol-resnet-18-cifar10-speedrun"}
RESNET_METHODS = "simclr,moco,byol,simsiam,vicreg"
VIT_METHODS = "dino_vit,mae"
TARGET_KNN, TARGET_MINUTES = 85.0, 10.0
MIN_PART_S = 30
_TQDM = re.compile(r"\d+%\|")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__[__doc__.index("Parts"):])  # fmt: skip
    ap.add_argument("out", nargs="?", help="results folder (created)")
    ap.add_argument("--parts", default=DEFAULT_PARTS, help=f"comma-separated, from {','.join(PARTS)} (default {DEFAULT_PARTS})")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the commands; run nothing")
    ap.add_argument("--carry", help="folder from --prepare-carry: data/cifar10/*.tar.gz and *.whl (installed into a temp dir)")
    ap.add_argument("--prepare-carry", metavar="DIR", help="make that folder here (copy the archives, pip download the wheels), then exit")
    ap.add_argument("--shared-data", help="folder holding cifar10/ (default: <carry>/data, else bench_vs_lightly's search)")
    ap.add_argument("--data-root", default="/tmp/sslhub_gpu_data", help="where the archives are unpacked (once)")
    ap.add_argument("--workers", type=int, default=12, help="DataLoader workers (training/README.md's GPU runs: 12)")
    ap.add_argument("--threads", type=int, default=4, help="bench_vs_lightly --threads (training/README.md: 4)")
    ap.add_argument("--speedrun-epochs", type=int, default=None, help="override the speedrun recipes' epochs")
    ap.add_argument("--vit-methods", default=VIT_METHODS,
                    help=f"methods of the vit part (default {VIT_METHODS}; issue 27: dino_vit,mae,ibot,dinov2,ijepa)")
    ap.add_argument("--bench-epochs", type=int, default=2, help="epochs per side (img/s headline: epochs >= 2)")
    ap.add_argument("--bench-train-images", type=int, default=10000,
                    help="class-balanced training subset for bench and vit (0: all 50,000; keeps them ~4 min together)")
    ap.add_argument("--time-limit", type=float, default=590.0, help="seconds for the whole run (0: none); the lent "
                    "device allows 600 s per command")  # fmt: skip
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        ap.error(f"--parts {args.parts!r}: use a comma-separated list from {','.join(PARTS)}")
    args.part_list = parts
    for key in ("out", "carry", "shared_data", "data_root"):  # the parts run from the repository root
        if getattr(args, key):
            setattr(args, key, str(Path(getattr(args, key)).resolve()))
    if not args.prepare_carry and not args.out:
        ap.error("give the results folder (OUT), or --prepare-carry DIR")
    return args


# ----------------------------------------------------------------------------------------------- plan


def data_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    base = Path(args.data_root) / "cifar10"
    return base / "train", base / "test"


def commands(args: argparse.Namespace, shared: str) -> dict[str, list[str]]:
    """The command of each selected part (argv lists; the first element is the Python interpreter)."""
    py, out = sys.executable, Path(args.out)
    train_dir, test_dir = data_dirs(args)
    cmds: dict[str, list[str]] = {}
    for part in args.part_list:
        if part in SPEEDRUN_RECIPES:
            cmd = [py, "-m", "sslhub", "train", SPEEDRUN_RECIPES[part], "--data", str(train_dir), "--val", str(test_dir),
                   "--out", str(out / part), "--device", "cuda", "--workers", str(args.workers)]  # fmt: skip
            if args.speedrun_epochs:
                cmd += ["--epochs", str(args.speedrun_epochs)]
        else:
            cmd = [py, str(ROOT / "scripts" / "bench_vs_lightly.py"), "--data", "cifar10", "--shared-data", shared,
                   "--data-root", args.data_root, "--epochs", str(args.bench_epochs), "--device", "cuda",
                   "--workers", str(args.workers), "--threads", str(args.threads),
                   "--methods", RESNET_METHODS if part == "bench" else args.vit_methods, "--no-progress",
                   "--out", str(out / part)]  # fmt: skip
            if args.bench_train_images:
                cmd += ["--max-train-images", str(args.bench_train_images)]
        cmds[part] = cmd
    return cmds


def plan_lines(args: argparse.Namespace) -> list[str]:
    n_train = args.bench_train_images or 50000
    lines = [f"parts: {','.join(args.part_list)}; time limit: {args.time_limit:g} s" if args.time_limit else
             f"parts: {','.join(args.part_list)}; no time limit"]  # fmt: skip
    for part in args.part_list:
        if part in SPEEDRUN_RECIPES:
            from sslhub.recipes import get_recipe

            r = get_recipe(SPEEDRUN_RECIPES[part])
            epochs = args.speedrun_epochs or r["epochs"]
            lines.append(f"{part}: {r['name']}, {epochs} epochs x 50,000 images, batch {r['batch_size']}, "
                         f"kNN every {r.get('monitor_every', 1)} epochs on 10,000 test images; target "
                         f"{TARGET_KNN:g}% in <= {TARGET_MINUTES:g} min end to end")  # fmt: skip
        else:
            methods = RESNET_METHODS if part == "bench" else args.vit_methods
            lines.append(f"{part}: {methods}, sslhub and Lightly, {args.bench_epochs} epochs x {n_train:,} training "
                         f"images each, kNN on all 10,000 test images")  # fmt: skip
    return lines


# ------------------------------------------------------------------------------------------------ run


def prepare_carry(dst: Path) -> int:
    """Copy the CIFAR-10 archives into ``dst/data/cifar10`` and download the lightly and timm wheels."""
    from bench_vs_lightly import shared_data_dir

    import lightly
    import timm

    src = shared_data_dir(None) / "cifar10"
    (dst / "data" / "cifar10").mkdir(parents=True, exist_ok=True)
    for f in ("train.tar.gz", "test.tar.gz"):
        shutil.copyfile(src / f, dst / "data" / "cifar10" / f)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dst), f"lightly=={lightly.__version__}",
           f"timm=={timm.__version__}"]  # fmt: skip
    print("+", shlex.join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc == 0:
        size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file()) / 2**20
        print(f"carry folder {dst} ready ({size:.0f} MiB); on the GPU machine, carry it and pass --carry {dst}")
    return rc


def install_wheels(carry: Path, site: Path) -> None:
    wheels = sorted(str(w) for w in carry.glob("*.whl"))
    if wheels:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade", "--target", str(site),
               *wheels]  # fmt: skip
        print("+", shlex.join(cmd), flush=True)
        subprocess.check_call(cmd)
        sys.path.insert(0, str(site))


def no_cuda() -> str | None:
    """Why this machine cannot measure, or ``None`` when it has a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return None
    return (f"no CUDA device: scripts/gpu_measure.py measures on a GPU (torch {torch.__version__} sees none); "
            "use --dry-run to print what it would run")  # fmt: skip


def missing_modules(parts: list[str]) -> str | None:
    """A message naming the modules ``parts`` need that do not import, or ``None``."""
    missing = []
    for part, module in (("bench", "lightly"), ("vit", "lightly"), ("vit", "timm")):
        if part in parts:
            try:
                __import__(module)
            except ImportError:
                missing.append(module)
    if missing:
        return (f"{', '.join(sorted(set(missing)))} not importable: make a carry folder with --prepare-carry DIR "
                "and pass --carry DIR")  # fmt: skip
    return None


def run_logged(cmd: list[str], log: Path, env: dict[str, str], timeout: float | None) -> tuple[int | None, float]:
    """Run ``cmd``, its output to ``log`` and to stdout; (exit code or ``None`` when stopped at ``timeout``, seconds)."""
    print("+", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, cwd=ROOT)
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            proc.kill()

        timer = threading.Timer(timeout, stop) if timeout is not None else None
        if timer is not None:
            timer.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            if not _TQDM.search(line):  # progress bars: log file only
                sys.stdout.write(line)
                sys.stdout.flush()
        rc: int | None = proc.wait()
        if timer is not None:
            timer.cancel()
        if stopped.is_set():
            f.write(f"gpu_measure: stopped at the time limit ({timeout:.0f} s)\n")
            print(f"gpu_measure: stopped at the time limit ({timeout:.0f} s)", flush=True)
            rc = None
    return rc, time.perf_counter() - t0


def speedrun_summary(run: Path, wall_s: float, rc: int | None) -> dict[str, Any]:
    rows = []
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    curve = [{"epoch": r["epoch"], "minutes": r["elapsed_s"] / 60, "knn_top1": r.get("knn_top1"),
              "images_per_s": r["images_per_s"], "loss": r["loss"]} for r in rows]  # fmt: skip
    hit = next((c for c in curve if c["knn_top1"] is not None and c["knn_top1"] >= TARGET_KNN), None)
    best = max((c["knn_top1"] for c in curve if c["knn_top1"] is not None), default=None)
    final = next((c["knn_top1"] for c in reversed(curve) if c["knn_top1"] is not None), None)
    summary = {"exit_code": rc, "wall_s": wall_s, "epochs_done": len(rows), "final_knn_top1": final,
               "best_knn_top1": best, "reached_target_at_minutes": hit["minutes"] if hit else None,
               "target_met": bool(hit and rc == 0 and wall_s <= TARGET_MINUTES * 60), "curve": curve}  # fmt: skip
    lines = [f"# {run.name}: kNN top-1 (k=200) against wall-clock minutes", "",
             f"exit code {rc}, end-to-end wall clock {wall_s / 60:.2f} min, {len(rows)} epochs; final kNN "
             f"{final}, best {best}; {TARGET_KNN:g}% reached at "
             f"{'%.2f min' % hit['minutes'] if hit else 'never'}; target met: {summary['target_met']}", "",
             "| epoch | minutes | kNN top-1 | img/s | loss |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for c in curve:
        knn = "" if c["knn_top1"] is None else f"{c['knn_top1']:.2f}"
        lines.append(f"| {c['epoch']} | {c['minutes']:.2f} | {knn} | {c['images_per_s']:.0f} | {c['loss']:.4f} |")
    run.mkdir(parents=True, exist_ok=True)
    (run / "summary.md").write_text("\n".join(lines) + "\n")
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare_carry:
        return prepare_carry(Path(args.prepare_carry))
    shared = args.shared_data or (str(Path(args.carry) / "data") if args.carry else "")
    if not shared:
        from bench_vs_lightly import shared_data_dir

        try:
            shared = str(shared_data_dir(None))
        except SystemExit:
            shared = "<pass --shared-data or --carry>"
    cmds = commands(args, shared)
    for line in plan_lines(args):
        print(line)
    if args.dry_run:
        for part, cmd in cmds.items():
            print(f"[{part}] {shlex.join(cmd)}")
        return 0

    t_start = time.perf_counter()
    problem = no_cuda()
    if problem:
        print(f"gpu_measure: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.carry:
        site = Path(args.data_root) / "site"
        install_wheels(Path(args.carry), site)
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), env.get("PYTHONPATH", "")])
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    problem = missing_modules(args.part_list)
    if problem:
        print(f"gpu_measure: {problem}", file=sys.stderr)
        return 2
    from bench_vs_lightly import extract_archives

    train_dir, _ = data_dirs(args)
    extract_archives(Path(shared) / "cifar10", train_dir.parent, ("train", "test"))

    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "part_list"},
                               "plan": plan_lines(args), "parts": {}}  # fmt: skip
    for part, cmd in cmds.items():
        left = None if not args.time_limit else args.time_limit - (time.perf_counter() - t_start)
        if left is not None and left < MIN_PART_S:
            print(f"gpu_measure: {part} skipped, {left:.0f} s left of --time-limit {args.time_limit:g}", flush=True)
            results["parts"][part] = {"skipped": f"{left:.0f} s left"}
            continue
        rc, wall = run_logged(cmd, out / f"{part}.log", env, left)
        entry: dict[str, Any] = {"command": shlex.join(cmd), "exit_code": rc, "wall_s": wall}
        if part in SPEEDRUN_RECIPES:
            entry.update(speedrun_summary(out / part, wall, rc))
        results["parts"][part] = entry
        print(f"gpu_measure: {part} exit code {rc} after {wall:.0f} s", flush=True)
        (out / "summary.json").write_text(json.dumps(results, indent=1, default=str))
    md = ["# GPU measurements (scripts/gpu_measure.py)", "", *[f"- {line}" for line in results["plan"]], ""]
    for part, entry in results["parts"].items():
        if "skipped" in entry:
            md += [f"## {part}: skipped ({entry['skipped']} of --time-limit)", ""]
            continue
        md.append(f"## {part}: exit code {entry['exit_code']}, {entry['wall_s']:.0f} s")
        detail = out / part / ("summary.md" if part in SPEEDRUN_RECIPES else "results.md")
        md += ["", detail.read_text() if detail.exists() else f"(no {detail.name}; see {part}.log)", ""]
    (out / "summary.md").write_text("\n".join(md))
    (out / "summary.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"results in {out}/summary.md")
    return 0 if all(e.get("exit_code") == 0 for e in results["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
