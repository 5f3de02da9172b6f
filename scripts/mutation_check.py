"""Break important features on purpose and check that their tests fail (a small, hand-written mutation test).

Each mutation below replaces one exact piece of source (it must occur exactly once; tests/test_mutation_list.py
checks that the list still applies) in a scratch copy of the repository's tracked files, runs only the related
tests there, and records whether they failed. Nothing in the working tree is changed.

    python scripts/mutation_check.py                    # all of them (~15 minutes on 2 CPU cores)
    python scripts/mutation_check.py --only bank knn    # those whose name contains a word
    python scripts/mutation_check.py --list

Prints a Markdown table: feature, break, tests run, caught (the failed count). Exit status 1 when a break
was not caught. Runs with ``nice`` so that it stays out of the way of other work.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str  # the feature
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments
    what: str  # the break, in words


MUTATIONS: tuple[Mutation, ...] = (
    Mutation("memory bank wrap", "sslhub/losses/memory_bank.py", "if ptr + n >= cap:", "if ptr + n > cap:",
             ("tests/test_losses.py", "-k", "memory_bank or ntxent"), "`>=` -> `>`: the bank wraps one batch late"),
    Mutation("load fast path", "sslhub/checkpoints/build.py",
             "    if model is not None:\n        return model\n",
             "    if model is not None:\n        pass\n",
             ("tests/test_skeleton.py",), "the assembled module is thrown away, the ordinary path builds another"),
    Mutation("recipe range rules", "sslhub/recipes/schema.py",
             "    if key.rule and isinstance(value, (int, float)) and not isinstance(value, bool):",
             "    if False:",
             ("tests/test_recipe_validation.py", "tests/test_cli.py", "-k", "set or schema or nullable or bad_values"),
             "no range rule is checked (positive, non_negative, probability, at_least_1, finite)"),
    Mutation("resume validates config.yaml", "sslhub/training/run_dir.py",
             "    try:  # config.yaml is a file a user may edit: its values get the checks of a recipe file\n"
             "        validate_recipe(r)",
             "    try:\n        pass",
             ("tests/test_recipe_validation.py", "-k", "saved_config"), "a saved config.yaml is not validated"),
    Mutation("atomic writes", "sslhub/_files.py", "        yield tmp\n        _commit(tmp, dst)",
             "        yield dst", ("tests/test_faults.py", "-k", "kill_9_while_writing"),
             "bytes go straight into the destination"),
    Mutation("stale temporary files", "sslhub/_files.py", "    return dead or now - mtime > max_age_s",
             "    return False", ("tests/test_faults.py", "-k", "stale or killed_mid or publish_staging"),
             "temporary files of killed writers are never removed"),
    Mutation("kNN monitor/eval", "sslhub/evaluation/knn.py",
             "weight = (sim_weight.to(torch.promote_types(sim_weight.dtype, torch.float32)) / knn_t).exp()",
             "weight = (sim_weight.to(torch.promote_types(sim_weight.dtype, torch.float32))).exp()",
             ("tests/test_evaluation.py", "-k", "knn"), "the vote ignores the temperature"),
    Mutation("download sha256", "sslhub/hub/download.py", "    elif sha256 is not None and digest != sha256:",
             "    elif False:", ("tests/test_download.py", "-k", "sha256 or wrong_file or verifies or card_name"),
             "a download is not checked against its sha256"),
    Mutation("download pin", "sslhub/hub/download.py", "    if pin is not None and digest != pin:", "    if False:",
             ("tests/test_faults.py", "-k", "first_download or changed"),
             "a file that changed on the server since the first download is cached"),
    Mutation("URL redaction", "sslhub/hub/download.py",
             '    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", "")) + ("?<query redacted>" if p.query '
             'else "")', "    return url", ("tests/test_download.py", "-k", "redact or s3"),
             "signed URLs are logged with their query"),
    Mutation("no code from a file runs", "sslhub/checkpoints/io.py",
             'return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)',
             'return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)',
             ("tests/test_checkpoints.py", "-k", "malicious or numpy"), "torch.load(weights_only=False)"),
    Mutation("Worker checkpoint backbone", "sslhub/checkpoints/remap.py",
             '        if not keep_num_ftrs:\n            sub = {k: v for k, v in sub.items() if not k.startswith("7.")}',
             '        if False:\n            sub = {k: v for k, v in sub.items() if not k.startswith("7.")}',
             ("tests/test_checkpoints.py", "-k", "worker"), "the num_ftrs conv stays in the feature extractor"),
    Mutation("non-finite loss stops a run", "sslhub/training/trainer.py",
             "self.bad = torch.where((self.bad < 0) & ~torch.isfinite(value), step, self.bad)",
             "self.bad = torch.where((self.bad < 0) & torch.zeros_like(value, dtype=torch.bool), step, self.bad)",
             ("tests/test_training.py", "-k", "nan or non_finite"), "a NaN loss is not noticed"),
    Mutation("lr batch-size scaling", "sslhub/training/trainer.py", 'lr *= {"linear": batch_size / ref,',
             'lr *= {"linear": 1.0,', ("tests/test_optimizer_schedule.py",), "linear scaling is dropped"),
    Mutation("lr warmup", "sslhub/training/trainer.py", "        if step < warm:\n", "        if False:\n",
             ("tests/test_optimizer_schedule.py",), "no warmup"),
    Mutation("resume RNG state", "sslhub/training/trainer.py", '        _set_rng_state(state["rng"])\n',
             "        pass\n", ("tests/test_training.py", "-k", "resume and 0-auto"),
             "a resumed run does not restore the random state"),
    Mutation("MoCo loss", "sslhub/losses/contrastive.py",
             "logits = torch.cat([sim_pos, sim_neg], dim=1) / self.temperature",
             "logits = torch.cat([sim_pos, sim_neg], dim=1) / (2 * self.temperature)",
             ("tests/test_losses.py", "-k", "memory_bank or ntxent"), "the bank branch uses twice the temperature"),
    Mutation("Detectron2 export", "sslhub/export/detectron2.py", '"STRIDE_IN_1X1": False', '"STRIDE_IN_1X1": True',
             ("tests/test_export.py", "-k", "detectron2"), "MSRA blocks (stride in the 1x1 conv) in the config"),
    Mutation("finetune layer decay", "sslhub/evaluation/finetuning.py",
             "groups = backbone_param_groups(backbone, lr * backbone_lr_scale, weight_decay, layer_decay)",
             "groups = backbone_param_groups(backbone, lr * backbone_lr_scale, weight_decay, None)",
             ("tests/test_evaluation.py", "-k", "layer_decay"), "finetune ignores layer_decay"),
)  # fmt: skip


def _copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dst / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / os.fsdecode(name))


def apply(m: Mutation, root: Path) -> str:
    """Apply ``m`` in ``root``; return the original text of the file."""
    path = root / m.file
    text = path.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"{m.name}: the text to replace occurs {text.count(m.old)} times in {m.file}, not once")
    path.write_text(text.replace(m.old, m.new))
    return text


def run(m: Mutation, root: Path, timeout: float) -> tuple[bool, str, float]:
    """(caught, pytest's summary line, seconds)."""
    original = apply(m, root)
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    try:
        p = subprocess.run(["nice", "-n", "10", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            *m.tests], cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
        lines = p.stdout.strip().splitlines()
        summary = lines[-1] if lines else p.stderr.strip()[-200:]
        caught = p.returncode == 1 and re.search(r"\d+ (failed|error)", summary) is not None
    except subprocess.TimeoutExpired:
        summary, caught = f"timed out after {timeout:.0f} s", False
    finally:
        (root / m.file).write_text(original)
    return caught, summary, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="WORD", help="run the mutations whose name contains a word")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutation's tests (default 900)")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(w.lower() in m.name.lower() for w in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.what} ({m.file}); tests: {' '.join(m.tests)}")
        return 0
    if not chosen:
        print(f"no mutation matches {args.only}", file=sys.stderr)
        return 2
    missed = 0
    with tempfile.TemporaryDirectory(prefix="sslhub-mutation-") as tmp:
        root = Path(tmp)
        _copy_tree(root)
        print("| feature | break | tests | caught |\n|---|---|---|---|", flush=True)
        for m in chosen:
            caught, summary, secs = run(m, root, args.timeout)
            missed += not caught
            print(f"| {m.name} | {m.what} | `{' '.join(m.tests)}` | {'yes' if caught else 'NO'}: {summary} "
                  f"({secs:.0f} s) |", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
