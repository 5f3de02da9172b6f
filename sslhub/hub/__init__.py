"""The hub: model cards, the registry of pretrained weights, and verified fetching of weight files.

* :func:`resolve_source` turns a registry name, an ``http(s)://`` URL (presigned S3/GCS read-URLs included),
  ``hf-hub:org/name[@rev]`` or a path into a local file; :func:`sslhub.load_pretrained` calls it.
* :func:`list_pretrained` / :func:`resolve_card` read the model cards (``model_cards/*.yaml``).
* :func:`fetch_url` is the cached, resumable, sha256-verified downloader (``SSLHUB_HOME``, ``SSLHUB_OFFLINE``).

Importing this package loads neither requests nor torch; they are imported when a download starts.
"""

from sslhub.hub.cards import Card, CardError, CardFile, LoadHints, Metric
from sslhub.hub.download import (
    DownloadError,
    HashMismatchError,
    OfflineError,
    cache_path,
    fetch_url,
    is_offline,
    redact_url,
    sslhub_home,
)
from sslhub.hub.registry import DEPRECATED_NAMES, canonical_name, entrypoint_name, get_card, list_pretrained, registry
from sslhub.hub.resolve import ACCEPTED_FORMS, fetch_card, resolve_card, resolve_source

__all__ = [
    "ACCEPTED_FORMS",
    "Card",
    "CardError",
    "CardFile",
    "DownloadError",
    "HashMismatchError",
    "LoadHints",
    "Metric",
    "OfflineError",
    "DEPRECATED_NAMES",
    "canonical_name",
    "cache_path",
    "entrypoint_name",
    "fetch_card",
    "fetch_url",
    "get_card",
    "is_offline",
    "list_pretrained",
    "redact_url",
    "registry",
    "resolve_card",
    "resolve_source",
    "sslhub_home",
]
