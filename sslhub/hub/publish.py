"""Publishing a backbone to the Hugging Face Hub: ``model.safetensors`` + ``config.json`` + ``README.md`` in one commit.

* ``model.safetensors`` holds the backbone only, in its native key layout (timm keys for timm models; torchvision
  ResNets, whose keys are timm's ``resnetXX`` keys; ResNetGenerator keys as sslhub writes them), with the sslhub
  header that :func:`sslhub.load_pretrained` reads (``backbone_prefix=""``), so it loads with no flags.
* ``config.json`` is what ``timm.create_model("hf-hub:org/name", pretrained=True)`` reads (``architecture``,
  ``num_classes: 0``, ``num_features``, ``model_args``, ``pretrained_cfg`` restricted to timm's ``PretrainedCfg``
  fields), plus a top-level ``sslhub`` block (architecture spec, method, hashes, metrics).
* ``README.md`` is a ``huggingface_hub`` ``ModelCard`` (``library_name: sslhub``, ``pipeline_tag:
  image-feature-extraction``, ``model-index`` from measured metrics). Its sha256 is recorded in
  ``config.json``; a README whose hash no longer matches (edited by someone, or not written by sslhub) is never
  replaced unless asked to (``overwrite_readme``) and can be left alone (``keep_readme``).

The upload uses ``HfApi.create_repo`` and one ``HfApi.create_commit`` whose ``parent_commit`` is the commit the
README check looked at, so a concurrent edit makes the commit fail instead of being overwritten. The token comes
from ``huggingface_hub`` (``HF_TOKEN`` or ``hf auth login``); sslhub only checks that there is one and never
passes, writes or logs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from sslhub._files import staging_dir
from sslhub._version import __version__
from sslhub.hub.hf import CONFIG_NAME, WEIGHTS_NAME, HfHubError
from sslhub.hub.render import build_config, render_card, timm_pretrained_cfg
from sslhub.training.run_results import (  # re-exported: publish's API before run results had their own home
    RunResultsError,
    find_checkpoint,
    load_metrics,
    run_dir_metrics,
    validate_metrics,
)

logger = logging.getLogger(__name__)

__all__ = [
    "README_NAME",
    "PublishError",
    "PublishResult",
    "build_config",
    "find_checkpoint",
    "load_metrics",
    "run_dir_metrics",
    "publish",
    "readme_is_ours",
    "render_card",
    "stage_files",
]

README_NAME = "README.md"

class PublishError(HfHubError):
    """Publishing cannot proceed (README conflict, missing token, bad metrics...). The message says what to do."""


@dataclass
class PublishResult:
    """What :func:`publish` did."""

    repo_id: str
    files: list[str]
    """Names of the files written (dry run) or committed: ``model.safetensors``, ``config.json``, ``README.md``."""
    readme: str
    """``"written"``, or ``"kept"`` (an existing README was left as it is)."""
    out_dir: Path | None = None
    """The ``dry_run`` folder; None for an upload."""
    commit_oid: str | None = None
    commit_url: str | None = None
    changed: bool = True
    """False when the repo already held exactly these files (no commit was made)."""
    config: dict[str, Any] = field(default_factory=dict)


def _safetensors_header(state: Any, num_features: int, method: str | None) -> dict[str, Any]:
    """The header :func:`sslhub.loading.load_backbone_state` reads (same fields as ``sslhub convert``)."""
    spec, meta = state.spec, state.metadata
    return {
        "format": "sslhub",
        "sslhub_version": __version__,
        "layout": meta.get("layout") or "sslhub",
        "family": spec.family,
        "arch": spec.arch,
        "width": f"{spec.width:g}" if spec.width is not None else None,
        "num_ftrs": str(spec.num_ftrs) if spec.num_ftrs else None,
        "img_size": str(spec.img_size) if spec.img_size else None,
        "timm_kwargs": json.dumps(spec.timm_kwargs),
        "backbone_prefix": "",  # the file holds the backbone alone
        "method": method,
        "num_features": str(num_features),
        "source_name": meta.get("source_name"),
        "source_sha256": meta.get("source_sha256"),
    }


def _canonicalize_safetensors(path: Path) -> None:
    """Rewrite the header with its metadata keys sorted, in place (atomically).

    safetensors writes its metadata map in a random order, so two writes of the same tensors differ in bytes.
    Published files should depend on their content only: the same sha256 in the card, and no new LFS object or
    commit when nothing changed. Tensor entries keep their offsets; the data section is copied unchanged.
    """
    import shutil

    from sslhub.checkpoints.io import atomic_path

    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None)
        ordered: dict[str, Any] = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
        ordered.update(sorted(header.items(), key=lambda kv: (kv[1]["data_offsets"], kv[0])))
        text = json.dumps(ordered, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes for aligned tensors
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as out:
                out.write(len(text).to_bytes(8, "little"))
                out.write(text)
                shutil.copyfileobj(f, out)


def _load_state(source: Path | str, arch: str | None, width: float | None, prefix: str | None) -> Any:
    from sslhub.loading import load_backbone_state

    state = load_backbone_state(source, arch=arch, width=width, prefix=prefix, dtype=None)
    if state.spec.family == "resnet_generator" and state.spec.num_ftrs:
        # Keep the Worker's num_ftrs conv: features="embedding" then works on the published file too.
        state = load_backbone_state(source, arch=arch, width=width, prefix=prefix, keep_num_ftrs=True, dtype=None)
    return state


def stage_files(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    repo_id: str,
    arch: str | None = None,
    width: float | None = None,
    prefix: str | None = None,
    method: str | None = None,
    metrics: Sequence[Mapping[str, Any]] | None = None,
    license: str | None = None,
    datasets: Sequence[str] = (),
    tags: Sequence[str] = (),
    write_readme: bool = True,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write ``model.safetensors``, ``config.json`` and (unless ``write_readme=False``) ``README.md`` to ``out_dir``.

    Every file is written atomically. Returns the paths written and the config dict. ``source`` is a checkpoint
    file (any format :func:`sslhub.load_pretrained` reads) or a run folder (see :func:`find_checkpoint`); a run
    folder's ``metrics.json`` is used when ``metrics`` is None.
    """
    from sslhub.backbones import create_backbone
    from sslhub.checkpoints.io import atomic_path, save_safetensors, sha256_file

    src = Path(source) if Path(str(source)).exists() else None
    if src is not None and src.is_dir():
        if metrics is None:
            metrics = run_dir_metrics(src)
        src = find_checkpoint(src)
    metrics = validate_metrics(list(metrics or []), "metrics")
    out_dir = Path(out_dir)
    outputs = {name: out_dir / name for name in (WEIGHTS_NAME, CONFIG_NAME, README_NAME)}
    if src is not None:
        for p in outputs.values():
            if p.exists() and p.resolve() == src.resolve():
                raise PublishError(f"{p} is the checkpoint being published; choose another output folder")

    state = _load_state(src if src is not None else str(source), arch, width, prefix)
    if src is not None and not state.metadata.get("source_sha256"):
        # Provenance of the file the backbone was cut from (the published file is a different, smaller one);
        # an sslhub file that already names its own origin keeps that.
        state.metadata["source_name"] = src.name
        state.metadata["source_sha256"] = sha256_file(src)
    method = method or state.metadata.get("method")
    module = create_backbone(meta=True, **state.spec.kwargs(keep_num_ftrs=False))
    num_features = int(module.num_features)
    module_cfg = dict(getattr(module, "pretrained_cfg", {}) or {})

    save_safetensors(state.state_dict, outputs[WEIGHTS_NAME], _safetensors_header(state, num_features, method))
    _canonicalize_safetensors(outputs[WEIGHTS_NAME])
    weights_sha256 = sha256_file(outputs[WEIGHTS_NAME])
    pretrained_cfg = timm_pretrained_cfg(state.spec, module_cfg, state.metadata, license)
    readme = render_card(
        repo_id=repo_id,
        spec=state.spec,
        method=method,
        num_features=num_features,
        pretrained_cfg=pretrained_cfg,
        weights_sha256=weights_sha256,
        n_tensors=len(state.state_dict),
        metrics=metrics,
        license=license,
        datasets=datasets,
        tags=tags,
        source_name=state.metadata.get("source_name"),
        source_sha256=state.metadata.get("source_sha256"),
    )
    readme_bytes = readme.encode("utf-8")
    config = build_config(
        state,
        num_features=num_features,
        module_cfg=module_cfg,
        weights_sha256=weights_sha256,
        # A README that sslhub did not write this time is not ours to vouch for.
        readme_sha256=_sha256_bytes(readme_bytes) if write_readme else None,
        metrics=metrics,
        license=license,
        method=method,
    )
    written = {WEIGHTS_NAME: outputs[WEIGHTS_NAME]}
    if write_readme:
        with atomic_path(outputs[README_NAME]) as tmp:
            tmp.write_bytes(readme_bytes)
        written[README_NAME] = outputs[README_NAME]
    _write_config(outputs[CONFIG_NAME], config)
    written[CONFIG_NAME] = outputs[CONFIG_NAME]
    return written, config


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def readme_is_ours(readme: bytes, config_text: str | bytes | None) -> bool:
    """True if ``readme`` is exactly what sslhub wrote with that ``config.json`` (its ``readme_sha256``)."""
    if config_text is None:
        return False
    try:
        recorded = json.loads(config_text).get("sslhub", {}).get("readme_sha256")
    except (ValueError, AttributeError):
        return False
    return isinstance(recorded, str) and recorded == _sha256_bytes(readme)


def _readme_decision(
    existing: bytes | None, config_text: str | bytes | None, where: str, overwrite: bool, keep: bool
) -> bool:
    """Whether to write README.md; raises when an edited README would be replaced without consent."""
    if existing is None or overwrite:
        return True
    if keep:
        return False
    if readme_is_ours(existing, config_text):
        return True
    raise PublishError(
        f"{where} has a README.md that sslhub did not write or that was edited after the last publish; it is "
        "not replaced silently. Pass --overwrite-readme (overwrite_readme=True) to replace it, or --keep-readme "
        "(keep_readme=True) to publish the weights and config and leave the README as it is."
    )


def _read_optional(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def publish(
    source: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: str | os.PathLike | None = None,
    overwrite_readme: bool = False,
    keep_readme: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    arch: str | None = None,
    width: float | None = None,
    prefix: str | None = None,
    method: str | None = None,
    metrics: Sequence[Mapping[str, Any]] | str | os.PathLike | None = None,
    license: str | None = None,
    datasets: Iterable[str] = (),
    tags: Iterable[str] = (),
) -> PublishResult:
    """Publish a backbone to the Hugging Face Hub as one commit (or, with ``dry_run``, write the files only).

    Args:
        source: a checkpoint (any format :func:`sslhub.load_pretrained` reads, or a registry name / URL /
            ``hf-hub:`` id) or a training run folder (see :func:`find_checkpoint`; its ``metrics.json`` is used).
        repo_id: ``"org/name"``; the repo is created if needed.
        private: create the repo private (an existing repo keeps its visibility).
        dry_run: write the three files to this folder and upload nothing.
        overwrite_readme: replace a README.md that sslhub did not write or that was edited since.
        keep_readme: leave an existing README.md as it is (weights and config are still published).
        revision: branch to commit to (default ``main``).
        commit_message: default ``"Publish <method> <arch> backbone (sslhub <version>)"``.
        arch: as for :func:`sslhub.load_pretrained`, when the checkpoint cannot tell.
        width: likewise.
        prefix: likewise.
        method: SSL method name for the card (default: detected from the checkpoint).
        metrics: measured metrics (see :func:`load_metrics`), or a path to such a JSON file.
        license: model card license (also goes into ``pretrained_cfg``).
        datasets: model card training datasets.
        tags: extra model card tags.

    Returns:
        A :class:`PublishResult`.

    Raises:
        PublishError: README conflict, no token, bad metrics, ...; huggingface_hub's HTTP errors pass through.
    """
    try:
        return _publish(source, repo_id, private=private, dry_run=dry_run, overwrite_readme=overwrite_readme,
                        keep_readme=keep_readme, revision=revision, commit_message=commit_message, arch=arch,
                        width=width, prefix=prefix, method=method, metrics=metrics, license=license,
                        datasets=datasets, tags=tags)  # fmt: skip
    except RunResultsError as e:  # the run folder's or the metrics' problem, reported as publish's
        if isinstance(e, PublishError):
            raise
        raise PublishError(str(e)) from None


def _publish(
    source: str | os.PathLike,
    repo_id: str,
    *,
    private: bool,
    dry_run: str | os.PathLike | None,
    overwrite_readme: bool,
    keep_readme: bool,
    revision: str | None,
    commit_message: str | None,
    arch: str | None,
    width: float | None,
    prefix: str | None,
    method: str | None,
    metrics: Sequence[Mapping[str, Any]] | str | os.PathLike | None,
    license: str | None,
    datasets: Iterable[str],
    tags: Iterable[str],
) -> PublishResult:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"--repo-id {repo_id!r} is not a valid Hugging Face repo id ({e}); use 'org/name'") from None
    if "/" not in repo_id:
        raise PublishError(f"--repo-id {repo_id!r}: use 'org/name' (the user or organisation, then the repo name)")
    if overwrite_readme and keep_readme:
        raise PublishError("overwrite_readme and keep_readme contradict each other; pass at most one")
    if metrics is not None and not isinstance(metrics, (list, tuple)):
        metrics = load_metrics(metrics)  # a path
    elif metrics is not None:  # checked as a file's would be (finite numbers: the card and config.json are JSON)
        metrics = validate_metrics(list(metrics), "metrics")
    stage_kwargs: dict[str, Any] = dict(
        repo_id=repo_id, arch=arch, width=width, prefix=prefix, method=method, metrics=metrics,
        license=license, datasets=list(datasets), tags=list(tags),
    )  # fmt: skip

    if dry_run is not None:
        out = Path(dry_run)
        existing = _read_optional(out / README_NAME)
        config_text = _read_optional(out / CONFIG_NAME)
        write_readme = _readme_decision(existing, config_text, str(out), overwrite_readme, keep_readme)
        files, config = stage_files(source, out, write_readme=write_readme, **stage_kwargs)
        logger.debug("dry run: wrote %s to %s (nothing uploaded)", ", ".join(files), out)
        return PublishResult(repo_id, list(files), "written" if write_readme else "kept", out_dir=out, config=config)

    return _upload(source, repo_id, private=private, revision=revision, commit_message=commit_message,
                   overwrite_readme=overwrite_readme, keep_readme=keep_readme, stage_kwargs=stage_kwargs)  # fmt: skip


def _remote_file(api: Any, repo_id: str, filename: str, commit: str, siblings: set[str]) -> bytes | None:
    if filename not in siblings:
        return None
    return Path(api.hf_hub_download(repo_id, filename, revision=commit)).read_bytes()


def _write_config(path: Path, config: Mapping[str, Any]) -> None:
    from sslhub.checkpoints.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(config, indent=2, allow_nan=False) + "\n")


def _hub_error(e: Exception, repo_id: str, branch: str) -> PublishError:
    """A huggingface_hub HTTP error as a message that says what to do (its text never holds the token)."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    where = f"hf-hub:{repo_id}@{branch}"
    if status == 412:
        return PublishError(f"{where} changed while publishing (someone committed meanwhile); run publish again")
    if status in (401, 403):
        return PublishError(f"{where}: the Hub refused the token ({first}); use a token with write access to {repo_id}")
    return PublishError(f"{where}: the Hub answered {status or 'an error'}: {first}")


def _upload(
    source: str | os.PathLike,
    repo_id: str,
    *,
    private: bool,
    revision: str | None,
    commit_message: str | None,
    overwrite_readme: bool,
    keep_readme: bool,
    stage_kwargs: dict[str, Any],
) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.utils import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if not get_token():
        raise PublishError(
            "no Hugging Face token found: log in with `hf auth login` or set HF_TOKEN to a token with write access "
            f"to {repo_id}"
        )
    api = HfApi()  # token, endpoint and cache come from huggingface_hub's own configuration
    branch = revision or "main"
    with staging_dir("publish") as tmp:
        # Read and convert the checkpoint before touching the Hub: a bad input creates no repo.
        files, config = stage_files(source, tmp, write_readme=True, **stage_kwargs)
        try:
            try:
                info = api.repo_info(repo_id, revision=branch, files_metadata=False)
            except RepositoryNotFoundError:
                logger.info("creating %s repo %s", "private" if private else "public", repo_id)
                api.create_repo(repo_id, private=private, exist_ok=True)
                info = api.repo_info(repo_id, revision=branch, files_metadata=False)
            else:
                if private and not info.private:
                    logger.warning("%s exists and is public; --private applies only when creating a repo", repo_id)
            head = info.sha
            siblings = {s.rfilename for s in (info.siblings or [])}
            remote_readme = _remote_file(api, repo_id, README_NAME, head, siblings)
            remote_config = _remote_file(api, repo_id, CONFIG_NAME, head, siblings) if remote_readme else None
            where = f"hf-hub:{repo_id}@{branch}"
            write_readme = _readme_decision(remote_readme, remote_config, where, overwrite_readme, keep_readme)
            if not write_readme:
                # The person's README stays; the config must not vouch for it as sslhub's.
                del files[README_NAME]
                config["sslhub"]["readme_sha256"] = None
                _write_config(files[CONFIG_NAME], config)
            meta = config["sslhub"]
            default = f"Publish {meta['method'] or 'SSL'} {meta['arch']} backbone (sslhub {__version__})"
            message = commit_message or default
            ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
            logger.info("uploading %s to %s (branch %s) as one commit", ", ".join(files), repo_id, branch)
            commit = api.create_commit(
                repo_id,
                ops,
                commit_message=message,
                revision=branch,
                parent_commit=head,  # fail rather than overwrite a commit made since the README check
            )
        except RevisionNotFoundError:
            raise PublishError(
                f"hf-hub:{repo_id} has no branch {branch!r}; create it first (HfApi().create_branch) or omit --revision"
            ) from None
        except HfHubHTTPError as e:
            raise _hub_error(e, repo_id, branch) from None
    changed = commit.oid != head  # huggingface_hub skips a commit that would change nothing
    if changed:
        logger.info("published %s: %s", repo_id, commit.commit_url)
    else:
        logger.info("%s already holds exactly these files; no new commit", repo_id)
    return PublishResult(
        repo_id,
        list(files),
        "written" if write_readme else "kept",
        commit_oid=commit.oid,
        commit_url=commit.commit_url,
        changed=changed,
        config=config,
    )
