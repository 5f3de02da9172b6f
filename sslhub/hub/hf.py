"""Fetching published backbones from the Hugging Face Hub through ``huggingface_hub``.

Everything goes through :func:`huggingface_hub.hf_hub_download`, so its cache (``HF_HOME`` / ``HF_HUB_CACHE``),
its offline mode (``HF_HUB_OFFLINE=1``), its endpoint (``HF_ENDPOINT``) and its token (``HF_TOKEN`` or the one
saved by ``hf auth login``) apply unchanged; nothing here talks HTTP itself. ``SSLHUB_OFFLINE=1`` additionally
restricts these fetches to that cache; ``HF_HUB_OFFLINE=1`` also keeps sslhub's own downloads offline.

Only ``model.safetensors`` (or, for large ``transformers`` repos, ``model.safetensors.index.json`` and the shards it
lists) is read: a repo that holds only ``pytorch_model.bin`` is refused rather than unpickled.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sslhub.errors import SslhubError

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "HfHubError", "hf_hub_resolve", "parse_hf_hub_id"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"  # sharded weights (large transformers repos)



class HfHubError(SslhubError, ValueError):
    """A Hugging Face Hub repo or file that cannot be fetched. The message names the repo and what to do."""


def _offline() -> str | None:
    # read on every call: huggingface_hub reads HF_HUB_OFFLINE once, at import
    from sslhub.hub.download import offline_variable

    return offline_variable()


def parse_hf_hub_id(source: str) -> tuple[str, str | None]:
    """Split ``"hf-hub:org/name@rev"`` (or ``"org/name@rev"``) into ``("org/name", "rev")``; rev may be None."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    s = source[len("hf-hub:") :] if source.startswith("hf-hub:") else source
    repo_id, _, revision = s.partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HfHubError(
            f"{source!r} is not a Hugging Face Hub id; use 'hf-hub:org/name' or 'hf-hub:org/name@rev' ({e})"
        ) from None
    return repo_id, (revision or None)


def _describe(repo_id: str, revision: str | None) -> str:
    return f"hf-hub:{repo_id}" + (f"@{revision}" if revision else "")


def hf_hub_resolve(repo_id: str, revision: str | None = None) -> Path:
    """Download (or find in the Hugging Face cache) a published backbone and return its ``model.safetensors``
    (for a sharded repo: its ``model.safetensors.index.json``, with every shard fetched beside it).

    ``config.json`` of the same commit is fetched too when the repo has one, so it lies next to the returned
    file (``.../snapshots/<commit>/config.json``).

    Args:
        repo_id: ``"org/name"``.
        revision: branch, tag or commit hash (default: the repo's default branch).

    Raises:
        HfHubError: the repo, revision or weights file does not exist or is not reachable, or the repo offers
            only pickled weights; offline and not cached.
    """
    from huggingface_hub import hf_hub_download
    # huggingface_hub.utils re-exports them in every supported version (huggingface_hub.errors has all of them
    # only from 0.25 on)
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _describe(repo_id, revision)
    local_only = _offline()
    try:
        weights = Path(hf_hub_download(repo_id, WEIGHTS_NAME, revision=revision, local_files_only=bool(local_only)))
    except HFValidationError as e:
        raise HfHubError(f"{where}: not a valid Hugging Face Hub repo id or revision ({e})") from None
    except GatedRepoError:
        raise HfHubError(
            f"{where} is gated: accept its terms on the Hub, then log in (`hf auth login`) or set HF_TOKEN"
        ) from None
    except RevisionNotFoundError:
        raise HfHubError(
            f"{where}: revision {revision!r} does not exist; pass an existing branch, tag or commit"
        ) from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError, its base class
        why = f"{local_only} is set" if local_only else "the Hub could not be reached"
        raise HfHubError(
            f"{where}: {WEIGHTS_NAME} is not in the Hugging Face cache "
            f"({os.environ.get('HF_HUB_CACHE') or 'HF_HOME/hub'}) and {why}. Fetch it once while online "
            f"(`sslhub fetch {where}`), or unset the offline variables."
        ) from None
    except (EntryNotFoundError, RepositoryNotFoundError):
        weights = _sharded(repo_id, revision, local_only)  # big transformers repos: an index and its shards
        if weights is None:
            # Mirrors answer "repository not found" for a missing file too: list the repo to tell which it is.
            raise HfHubError(_missing_message(repo_id, revision)) from None
    # The snapshot folder is named after the commit: fetch config.json from that same commit, even if the
    # branch moved in between.
    commit = weights.parent.name
    try:
        hf_hub_download(repo_id, CONFIG_NAME, revision=commit, local_files_only=bool(local_only))
    except (EntryNotFoundError, RepositoryNotFoundError, LocalEntryNotFoundError) as e:
        # sslhub's weights carry their own metadata (config.json is for timm and humans); a transformers or timm
        # repo without it loads only where the tensors alone say the architecture.
        logger.debug("%s: no %s next to the weights (%s)", where, CONFIG_NAME, type(e).__name__)
    logger.debug("%s resolved to %s", where, weights)
    return weights


def _sharded(repo_id: str, revision: str | None, local_only: bool) -> Path | None:
    """``model.safetensors.index.json`` and every shard it lists (same commit), or None if the repo has no index."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        index = Path(hf_hub_download(repo_id, INDEX_NAME, revision=revision, local_files_only=local_only))
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (EntryNotFoundError, RepositoryNotFoundError, LocalEntryNotFoundError, OSError, ValueError, KeyError,
            TypeError, AttributeError):  # fmt: skip
        return None  # no (readable) index either: the caller reports the missing weights
    where = _describe(repo_id, revision)
    for name in shards:
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise HfHubError(f"{where}: {INDEX_NAME} lists {name!r}, which is not a safetensors file beside it")
        try:
            hf_hub_download(repo_id, name, revision=index.parent.name, local_files_only=local_only)
        except (EntryNotFoundError, RepositoryNotFoundError, LocalEntryNotFoundError) as e:
            raise HfHubError(f"{where}: shard {name} listed in {INDEX_NAME} cannot be fetched ({type(e).__name__})") from None
    return index


def _missing_message(repo_id: str, revision: str | None) -> str:
    from huggingface_hub import HfApi

    where = _describe(repo_id, revision)
    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # noqa: BLE001 - any failure here means the repo itself is not reachable
        return (
            f"{where}: repository not found. Check the name; a private repo needs a token "
            "(`hf auth login` or HF_TOKEN)."
        )
    pickled = [f for f in files if f.endswith((".bin", ".pth", ".pt", ".ckpt", ".pkl"))]
    found = f" (it has {', '.join(pickled[:5])})" if pickled else ""
    return (
        f"{where} has no {WEIGHTS_NAME}{found}. sslhub reads only safetensors from the Hub and never unpickles "
        "pytorch_model.bin / .pth files from it. If you trust the repo, download its weights yourself and convert "
        "them (`sslhub convert FILE model.safetensors`), or ask the owner to publish safetensors "
        "(`sslhub publish` does)."
    )
