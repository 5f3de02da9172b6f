"""Experiment loggers of a training run: TensorBoard, MLflow and Weights & Biases (``sslhub train --logger``).

Each logger gets what ``metrics.jsonl`` gets (every scalar of every epoch row, at the row's optimizer step), the
resolved recipe (as text / params / config), an augmentation preview grid at the start and ``curves.png`` at the end.
Every backend is an optional extra: ``pip install 'sslhub[tensorboard]'`` / ``[mlflow]`` / ``[wandb]``.

Where each writes:

* ``tensorboard``: ``<run>/tensorboard/`` (event files; ``tensorboard --logdir <run>/tensorboard``). A resumed run
  purges the events after its checkpoint's step, so the curves have no duplicate tail.
* ``mlflow``: the server or store of ``MLFLOW_TRACKING_URI`` when set, else a local SQLite store ``<run>/mlflow.db``
  with artifacts in ``<run>/mlartifacts/`` (``mlflow ui --backend-store-uri sqlite:///<run>/mlflow.db``). Experiment
  ``MLFLOW_EXPERIMENT_NAME`` (default ``sslhub``), run name = the run folder's name. A resumed run continues its
  MLflow run (found by the run-folder tag).
* ``wandb``: ``wandb.init`` with project ``WANDB_PROJECT`` (default ``sslhub``), files under ``<run>/wandb/``;
  ``WANDB_MODE=offline`` works without an account (``wandb sync`` uploads later). A resumed run continues its W&B
  run (its id is kept in ``<run>/wandb/sslhub_run_id``).

Credentials stay where the backends keep them (environment, netrc); sslhub writes none into the run folder or logs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import secrets
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sslhub.errors import SslhubError

logger = logging.getLogger(__name__)

__all__ = ["LOGGERS", "ExperimentLoggers", "LoggerError", "default_loggers", "resolve_loggers", "start_loggers"]

LOGGERS = ("tensorboard", "mlflow", "wandb")
_MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
# run-folder entries each logger writes (run_dir.RUN_FILES lists them, so --force replaces them too)
LOGGER_FILES = ("tensorboard", "mlflow.db", "mlartifacts", "wandb")


class LoggerError(SslhubError, ValueError):
    """An experiment logger that was asked for but cannot run (unknown name, backend not installed)."""


def _installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULES[name]) is not None


def default_loggers() -> list[str]:
    """TensorBoard when it is installed, else none."""
    return ["tensorboard"] if _installed("tensorboard") else []


def resolve_loggers(names: Iterable[str] | None) -> list[str]:
    """The loggers to run: ``None`` -> :func:`default_loggers`; ``"none"`` -> none; else the names, checked.

    Raises:
        LoggerError: an unknown name, or a backend that is not installed (with the pip command that installs it).
    """
    if names is None:
        return default_loggers()
    chosen: list[str] = []
    for name in names:
        for part in str(name).split(","):
            part = part.strip().lower()
            if not part or part in chosen:
                continue
            if part == "none":
                return []
            if part not in LOGGERS:
                raise LoggerError(f"--logger {part!r}: choose from {', '.join(LOGGERS)} or none")
            if not _installed(part):
                raise LoggerError(f"--logger {part}: the {_MODULES[part]} package is not installed; "
                                  f"pip install 'sslhub[{part}]' (or leave --logger {part} out)")  # fmt: skip
            chosen.append(part)
    return chosen


def _redact(text: str) -> str:
    """Credentials in URLs (``scheme://user:token@host``) never reach a message."""
    return re.sub(r"://[^/@\s]+@", "://***@", text)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _scalars(row: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class _TensorBoard:
    def __init__(self, out: Path, recipe: Mapping[str, Any], resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run drops the events a killed run wrote after its checkpoint (the rows up to it stay)
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=purge)
        if resume_step is None:
            import yaml

            self.writer.add_text("recipe", "```\n" + yaml.safe_dump(dict(recipe), sort_keys=False) + "```", 0)

    def metrics(self, row: Mapping[str, Any], step: int) -> None:
        for k, v in _scalars(row).items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def image(self, tag: str, image: Any, step: int) -> None:
        import numpy as np

        self.writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")
        self.writer.flush()

    def close(self, ok: bool) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, out: Path, recipe: Mapping[str, Any], resume_step: int | None) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "sslhub"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            exp_id = exp.experiment_id
        elif "MLFLOW_TRACKING_URI" in os.environ:  # the server chooses where artifacts go
            exp_id = self.client.create_experiment(name)
        else:
            exp_id = self.client.create_experiment(name, artifact_location=(out / "mlartifacts").resolve().as_uri())
        tag = str(out.resolve())
        found = []
        if resume_step is not None:
            found = self.client.search_runs([exp_id], filter_string=f"tags.`sslhub.run_dir` = '{tag}'",
                                            max_results=1, order_by=["attributes.start_time DESC"])  # fmt: skip
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(exp_id, run_name=out.name, tags={"sslhub.run_dir": tag, "sslhub.recipe":
                                                                          str(recipe.get("name", ""))})  # fmt: skip
            self.run_id = run.info.run_id
            params = [Param(k, json.dumps(v) if not isinstance(v, str) else v)
                      for k, v in sorted(_flat(recipe).items())]  # fmt: skip
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=params[i : i + 100])

    def metrics(self, row: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in _scalars(row).items()])

    def image(self, tag: str, image: Any, step: int) -> None:
        self.client.log_image(self.run_id, image.convert("RGB"), f"{tag}.png")

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")


class _WandB:
    def __init__(self, out: Path, recipe: Mapping[str, Any], resume_step: int | None) -> None:
        import wandb

        folder = out / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "sslhub_run_id"
        run_id = id_file.read_text().strip() if resume_step is not None and id_file.is_file() else None
        if run_id is None:
            run_id = secrets.token_hex(4)  # W&B ids: lowercase letters and digits
            id_file.write_text(run_id + "\n")
        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "sslhub", name=out.name, dir=str(out),
                              id=run_id, resume="allow", config=dict(recipe), reinit="create_new")  # fmt: skip

    def metrics(self, row: Mapping[str, Any], step: int) -> None:
        self.run.log(_scalars(row), step=step)

    def image(self, tag: str, image: Any, step: int) -> None:
        self.run.log({tag: self.wandb.Image(image.convert("RGB"))}, step=step)

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


_BACKENDS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}


class ExperimentLoggers:
    """The run's loggers. A logger that fails while logging is warned about and dropped; training goes on.

    Args:
        names: loggers to start (see :func:`resolve_loggers`).
        out: the run folder.
        recipe: the resolved recipe (params / config).
        resume_step: the checkpoint's optimizer step when the run is resumed (None for a new run).

    Closed by :meth:`close`; loggers not closed (the run raised) are closed as failed when this object is
    collected or the process exits.
    """

    def __init__(self, names: Sequence[str], out: str | os.PathLike, recipe: Mapping[str, Any],
                 resume_step: int | None = None) -> None:  # fmt: skip
        self.out = Path(out)
        self.backends: dict[str, Any] = {}
        for name in names:
            try:
                self.backends[name] = _BACKENDS[name](self.out, recipe, resume_step)
            except Exception as e:  # the service or store is not usable: say so before any training is done
                ExperimentLoggers._close_all(self.backends, False)
                raise LoggerError(f"--logger {name} could not start: {type(e).__name__}: {_redact(str(e))}") from None
            logger.info("logging to %s (%s)", name, self._where(name))
        # runs when this object goes (the run raised and its frame is gone) or at exit, whichever comes first
        self._finalizer = weakref.finalize(self, ExperimentLoggers._close_all, dict(self.backends), False)

    def _where(self, name: str) -> str:
        if name == "tensorboard":
            return f"tensorboard --logdir {self.out / 'tensorboard'}"
        if name == "mlflow":
            return "MLFLOW_TRACKING_URI" if "MLFLOW_TRACKING_URI" in os.environ else f"{self.out / 'mlflow.db'}"
        return f"{self.out / 'wandb'}"

    def __bool__(self) -> bool:
        return bool(self.backends)

    def _each(self, what: str, *args: Any) -> None:
        for name, backend in list(self.backends.items()):
            try:
                getattr(backend, what)(*args)
            except Exception as e:  # a logging service down must not stop training
                logger.warning("%s logger failed (%s: %s); it is switched off for this run", name, type(e).__name__,
                               _redact(str(e)))  # fmt: skip
                self.backends.pop(name)

    def log_metrics(self, row: Mapping[str, Any], step: int) -> None:
        """Every number of a ``metrics.jsonl`` row, at optimizer step ``step``."""
        self._each("metrics", row, step)

    def log_image(self, tag: str, image: Any, step: int) -> None:
        """A PIL image (or a path to one)."""
        if not self.backends:
            return
        if isinstance(image, (str, os.PathLike)):
            from PIL import Image

            with Image.open(image) as im:
                image = im.convert("RGB")
        self._each("image", tag, image, step)

    def close(self, ok: bool = True) -> None:
        """Flush and close every logger (``ok=False`` marks the run failed where the backend records it)."""
        self._finalizer.detach()
        ExperimentLoggers._close_all(self.backends, ok)
        self.backends = {}

    @staticmethod
    def _close_all(backends: Mapping[str, Any], ok: bool) -> None:
        for name, backend in backends.items():
            try:
                backend.close(ok)
            except Exception as e:
                logger.warning("closing the %s logger failed: %s", name, e)


def start_loggers(names: Sequence[str], out: Path, recipe: Mapping[str, Any], data: str | os.PathLike, *,
                  resume_step: int | None, rank: int = 0) -> ExperimentLoggers:  # fmt: skip
    """Start the loggers of a run (none on ranks other than 0) and, for a new run, log its augmentation preview."""
    log = ExperimentLoggers(names if rank == 0 else [], out, recipe, resume_step)
    if log and resume_step is None:
        import torch

        from sslhub.plots.preview import preview_image

        try:
            with torch.random.fork_rng(devices=[]):  # the preview draws; the training stream must not see it
                image = preview_image(dict(recipe), data, n=8)
        except Exception as e:  # a preview is a convenience: never stop the run for it
            logger.warning("augmentation preview not logged: %s", e)
        else:
            log.log_image("preview", image, 0)
    return log
