"""The run directory of ``sslhub train``: one run per folder, resumed from its own saved config.

* A folder that already holds a run is refused unless the run is resumed (``resume``) or replaced (``force``:
  the run's files are deleted first, other files in the folder are left alone). Two runs never share a
  ``metrics.jsonl`` or a checkpoint.
* ``resume`` reads the recipe from the run's ``config.yaml``: the original ``--set`` flags are not needed again.
  Overrides given on resume are checked against it. Allowed changes (:data:`RESUME_COMPATIBLE`) are those that
  leave the steps already taken valid: more ``epochs`` (the cosine schedule then stretches over the new length from
  the current step, as in Lightning), the monitor (``monitor_every``, ``knn.*``). Anything else (optimizer, batch
  size, backbone, transform, seed, ...) would make the resumed run a different run, and is refused with a message
  naming the key.
* A folder is locked while a process trains into it (``.sslhub-run.lock``: the owner's pid and host). A second
  ``train`` into it is refused; the lock of a process of this host that no longer runs (``kill -9``) is taken over
  with a warning.
* ``resume`` never starts a run over: with no ``checkpoints/last.ckpt`` to continue from it is refused (exit 2).
  ``force`` deletes only the files sslhub writes (:data:`RUN_FILES`, ``checkpoints/last.ckpt`` and sslhub's temporary
  files), and only after the new run's arguments were checked and its lock taken.
* ``metrics.jsonl`` rows travel inside ``checkpoints/last.ckpt``; on resume the file is rewritten from the
  checkpoint, so a killed and resumed run has exactly the rows of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from sslhub._files import TMP_TAG, pid_alive, atomic_path
from sslhub.errors import SslhubError
from sslhub.recipes import RecipeError, _yaml12_number, apply_overrides, get_recipe, validate_recipe

logger = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "RESUME_COMPATIBLE", "RUN_FILES", "RunDirError", "existing_run", "nothing_to_resume",
           "prepare_run_dir", "recipe_for_run", "remove_run_files", "restore_metrics", "resumed_max_steps",
           "run_lock"]  # fmt: skip

RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoints/last.ckpt", "model.safetensors", "checkpoint.ckpt",
             "curves.png", "tensorboard", "mlflow.db", "mlartifacts", "wandb")  # the last four: experiment loggers
LOCK_NAME = ".sslhub-run.lock"
# Recipe keys (dotted prefixes) that a resumed run may change.
RESUME_COMPATIBLE = ("epochs", "monitor_every", "knn")


class RunDirError(SslhubError, ValueError):
    """The run directory does not fit the request (a run is there already, or a resume conflicts with it)."""


def existing_run(out: str | Path) -> list[str]:
    """The run files present in ``out`` (empty when it holds no run)."""
    out = Path(out)
    return [name for name in RUN_FILES if (out / name).exists()]


def prepare_run_dir(out: str | Path, *, resume: bool, force: bool, delete: bool = True) -> None:
    """Refuse to train into a folder that holds a run, unless it is resumed or replaced (``force``).

    With ``force`` (and ``delete``, i.e. on the process that owns the folder) the run's files are removed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file; pass a folder for the run")
    if resume and force:
        raise RunDirError("--resume and --force contradict each other: resume continues the run, force replaces it")
    busy = _in_use(out / LOCK_NAME)
    if busy:
        raise busy
    present = existing_run(out)
    if not present or resume:
        return
    if not force:
        raise RunDirError(
            f"{out} already holds a run ({', '.join(present)}). Pass --resume to continue it, --force to replace it "
            "(its run files are deleted), or choose another --out"
        )
    if delete:
        remove_run_files(out)


def remove_run_files(out: str | Path) -> list[str]:
    """Delete the files of the run in ``out`` that sslhub wrote (never other files); return their names."""
    out = Path(out)
    present = existing_run(out)
    if present:
        logger.warning("--force: deleting the previous run in %s (%s)", out, ", ".join(present))
    for name in present:
        path = out / name
        if path.is_dir() and not path.is_symlink():  # an experiment logger's folder: sslhub's (loggers.py)
            shutil.rmtree(path, ignore_errors=True)
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    ckpts = out / "checkpoints"
    for folder in (out, ckpts):  # temporary files of killed writers of this run (their own pattern only)
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if TMP_TAG in entry.name and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
    with contextlib.suppress(OSError):  # only when nothing else is in it
        ckpts.rmdir()
    return present


def nothing_to_resume(out: str | Path) -> RunDirError:
    """The error for ``--resume`` on a folder without ``checkpoints/last.ckpt``: a run is never started over."""
    out = Path(out)
    present = existing_run(out)
    if "model.safetensors" in present:
        what = (f"{out} holds a finished run (model.safetensors) but no checkpoints/last.ckpt to continue from, so it "
                "cannot be resumed")
    elif present:
        what = f"{out} has no checkpoints/last.ckpt yet (the run stopped before its first checkpoint)"
    else:
        what = f"{out} holds no run to resume"
    return RunDirError(f"--resume: {what}; nothing was changed. Pass --force instead of --resume to train it again "
                       "from the start (its run files are deleted), or choose another --out")


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        return {}


def _in_use(path: Path) -> RunDirError | None:
    """The error to raise when the lock file ``path`` belongs to a live process (or one on another host)."""
    owner = _read_lock(path)
    pid, host = owner.get("pid"), owner.get("host")
    here = host == socket.gethostname() and isinstance(pid, int)
    if not owner or (here and (pid == os.getpid() or not pid_alive(pid))):  # none, ours, or of a dead process
        return None
    return RunDirError(
        f"{path.parent} is in use: another sslhub train (pid {pid} on {host}, since {owner.get('since', '?')}) is "
        f"training into it ({path}). Wait for it to finish, or choose another --out. If that process no longer runs "
        f"(e.g. on another host), delete {path}"
    )


@contextlib.contextmanager
def run_lock(out: str | Path) -> Any:
    """Hold ``out/.sslhub-run.lock`` while training into ``out``.

    The lock file is created exclusively (``O_EXCL``, which also works on NFS v3+) and holds the owner's pid and
    host. A lock of a process of this host that no longer runs is taken over with a warning; any other is refused.

    Raises:
        RunDirError: another live process trains into ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_lock(path)
            pid, host = owner.get("pid"), owner.get("host")
            with contextlib.suppress(OSError):
                if not owner and time.time() - path.stat().st_mtime < 5:  # being written right now
                    time.sleep(0.2)
                    continue
            busy = _in_use(path)
            if busy:
                raise busy from None
            logger.warning("%s: taking over the lock of pid %s on %s, which no longer runs (killed?)", out, pid, host)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        break
    else:
        raise RunDirError(f"{out}: cannot take the run lock {path}; another process keeps changing it")
    try:
        yield path
    finally:
        if _read_lock(path).get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}." if isinstance(v, dict) and v else f"{prefix}{k}"))
    return out


def _compatible(key: str) -> bool:
    return any(key == c or key.startswith(c + ".") for c in RESUME_COMPATIBLE)


def saved_config(out: str | Path) -> dict[str, Any] | None:
    """The run's ``config.yaml``, or ``None`` when there is none."""
    path = Path(out) / "config.yaml"
    if not path.is_file():
        return None
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RunDirError(f"{path} cannot be read ({e}); it is needed to resume. Restore it, or start a new run") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("recipe"), dict):
        raise RunDirError(f"{path} holds no recipe; it is needed to resume. Restore it, or start a new run")
    # a hand-edited config.yaml is checked as --set values are, with the same messages, before anything runs
    try:
        cfg["recipe"] = apply_overrides(cfg["recipe"], _as_overrides(cfg["recipe"]))
        validate_recipe(cfg["recipe"])
    except RecipeError as e:
        raise RunDirError(f"{path}: {str(e).removeprefix('--set ')}. Fix the value in {path.name} (it is what "
                          "--resume trains), or start a new run") from None
    steps = cfg.get("max_steps_per_epoch")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise RunDirError(f"{path}: max_steps_per_epoch={steps!r}: expected an integer >= 1 or null. Fix the value "
                          f"in {path.name}, or start a new run")
    return cfg


def _as_overrides(recipe: dict[str, Any]) -> list[str]:
    """The number-like strings of a recipe (``lr: 1e-3`` as YAML 1.1 reads it) as --set items, so that they are
    read as --set reads them."""
    out = []
    for key, value in _flatten(recipe).items():
        if isinstance(value, str) and _yaml12_number(value) is not None:
            out.append(f"{key}={value}")
    return out


def recipe_for_run(recipe: str | dict[str, Any], out: str | Path, *, overrides: Iterable[str] = (),
                   epochs: int | None = None, resume: bool = False) -> dict[str, Any]:  # fmt: skip
    """The resolved recipe a run trains: from ``recipe`` and ``overrides``, or on ``resume`` from the run's
    ``config.yaml`` with the (compatible) overrides applied.

    Raises:
        RunDirError: on resume, a different recipe name or an override that conflicts with the saved config.
    """
    overrides = list(overrides)
    cfg = saved_config(out) if resume else None
    if cfg is None:
        r = get_recipe(recipe, overrides) if isinstance(recipe, str) else apply_overrides(recipe, overrides)
        if not isinstance(recipe, str):
            validate_recipe(r)  # a recipe dict gets the checks a recipe file gets
        if epochs is not None:
            r["epochs"] = int(epochs)
        return r
    saved = cfg["recipe"]
    name = recipe if isinstance(recipe, str) else recipe.get("name")
    if name is not None and name != saved.get("name"):
        raise RunDirError(
            f"--resume: {out} is a run of {saved.get('name')!r}, not {name!r}. Resume it with its own recipe name, "
            "or start a new run in another --out"
        )
    r = apply_overrides(saved if isinstance(recipe, str) else recipe, overrides)
    try:  # config.yaml is a file a user may edit: its values get the checks of a recipe file
        validate_recipe(r)
    except RecipeError as e:
        raise RunDirError(f"--resume: {Path(out) / 'config.yaml'}: {e}. Fix the value in the file, or start a new "
                          "run (another --out, or --force)") from None
    if epochs is not None:
        r["epochs"] = int(epochs)
    old, new = _flatten(saved), _flatten(r)
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key) and not _compatible(key):
            raise RunDirError(
                f"--resume: {key}={json.dumps(new.get(key))} conflicts with the run's config.yaml ({key}: "
                f"{json.dumps(old.get(key))}); a resumed run keeps its recipe (only {', '.join(RESUME_COMPATIBLE)} "
                "may change). Drop the --set, or start a new run (another --out, or --force) to change it"
            )
    return r


def resumed_max_steps(out: str | Path, given: int | None) -> int | None:
    """The steps-per-epoch cap of a resumed run: the saved one (it shapes the LR schedule); a different one given on
    resume is refused."""
    cfg = saved_config(out)
    if cfg is None or "max_steps_per_epoch" not in cfg:  # no run yet, or one from before the cap was saved
        return given
    saved = cfg["max_steps_per_epoch"]
    if given is not None and given != saved:
        raise RunDirError(f"--resume: --max-steps {given} conflicts with the run's config.yaml (max_steps_per_epoch: "
                          f"{saved}); drop it, or start a new run")
    return saved


def restore_metrics(metrics_file: Path, rows: list[dict[str, Any]] | None, done_epochs: int) -> list[dict[str, Any]]:
    """Make ``metrics.jsonl`` hold exactly the rows of the epochs the checkpoint has (``rows``, as it saved them),
    dropping those a killed run wrote after its last checkpoint; return the rows kept."""
    if rows is None:  # a checkpoint from before rows travelled in it: keep the file's rows up to its epoch
        by_epoch: dict[int, dict[str, Any]] = {}
        if metrics_file.is_file():
            for line in metrics_file.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut by the kill
                    continue
                if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] <= done_epochs:
                    by_epoch[row["epoch"]] = row
        rows = [by_epoch[e] for e in sorted(by_epoch)]
    rows = [r for r in rows if int(r.get("epoch", 0)) <= done_epochs]
    with atomic_path(metrics_file) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows
