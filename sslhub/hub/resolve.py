"""Turn a source string into a local weights file: registry name, http(s) URL, ``hf-hub:`` id or path."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from sslhub.hub.cards import Card
from sslhub._files import sha256_file
from sslhub.hub.download import HashMismatchError, fetch_url, redact_url
from sslhub.hub.registry import get_card
from sslhub.suggest import no_such_file, similar_files

logger = logging.getLogger(__name__)

__all__ = ["ACCEPTED_FORMS", "fetch_card", "resolve_card", "resolve_source"]

ACCEPTED_FORMS = (
    "a registry name such as 'simclr-resnet50.lightly-in1k' (see `sslhub list`), an http(s):// URL (presigned "
    "S3/GCS read-URLs included), 'hf-hub:org/name[@revision]', or the path of an existing file"
)


def resolve_card(name: str) -> Card:
    """The model card of a registry name (its ``load`` hints tell ``load_pretrained`` how to read the file).

    Raises:
        ValueError: the name is not registered (the message suggests close names).
    """
    return get_card(name)


def _hf(source: str) -> Path:
    from sslhub.hub.hf import hf_hub_resolve, parse_hf_hub_id  # huggingface_hub only when needed

    repo_id, revision = parse_hf_hub_id(source)
    return Path(hf_hub_resolve(repo_id, revision))


def fetch_card(card: Card, *, progress: bool = True, force: bool = False, verify: bool = False) -> Path:
    """Download (or find in the cache) the weights file of ``card``, verified against its sha256 and size.

    Cards with ``sha256: unknown`` download with an "UNVERIFIED" warning; the first download's digest is recorded
    and later uses are checked against it (:func:`sslhub.hub.download.fetch_url`). ``hf-hub:`` URLs go through
    huggingface_hub (its cache and offline mode), then the file is checked against the card's sha256, if any.
    ``verify`` re-hashes a cached file.
    """
    f = card.weights
    if f.url.startswith("hf-hub:"):
        path = _hf(f.url)
        if f.sha256 is not None:
            digest = sha256_file(path)
            if digest != f.sha256:
                raise HashMismatchError(f"{card.name}: {path} has sha256 {digest}, but the card says {f.sha256}; "
                                        "the Hub file is not the published one. Do not use it.")
        else:
            logger.warning("UNVERIFIED: %s has no known sha256 in its card; %s was not checked", card.name, path)
        return path
    return fetch_url(f.url, sha256=f.sha256, size=f.size, filename=f.filename, mirrors=f.mirrors, label=card.name,
                     progress=progress, force=force, verify=verify)


def resolve_source(source: str, *, progress: bool = True, force: bool = False, sha256: str | None = None,
                   verify: bool = False) -> Path:
    """Return a local file for ``source``, downloading it into the cache if needed.

    Args:
        source: registry name (card -> verified fetch), ``http(s)://`` URL (fetched exactly as given; the query
            string is never logged), ``hf-hub:org/name[@rev]`` (via huggingface_hub), or an existing path.
        progress: show download progress bars.
        force: download again even when cached (URLs and registry names).
        sha256: expected digest: pins a URL's or ``hf-hub:`` file, or a registry name whose card has none.
        verify: re-hash a cached download against its expected (or first-download) digest.

    Raises:
        ValueError: the source is none of the accepted forms (the message lists them); subclasses of it for
            download, hash and offline failures (:mod:`sslhub.hub.download`).
    """
    s = str(source).strip()
    if s.startswith(("http://", "https://")):
        return fetch_url(s, sha256=sha256, progress=progress, force=force, verify=verify)
    if s.startswith("hf-hub:"):
        path = _hf(s)
        if sha256 is not None and sha256_file(path) != sha256.lower():
            raise HashMismatchError(f"{s}: {path} does not have the expected sha256 {sha256}")
        return path
    if s.startswith(("s3://", "gs://")):
        raise ValueError(
            f"{redact_url(s)}: bucket URLs are not fetched directly (sslhub holds no cloud credentials). Pass a "
            "presigned read-URL instead, e.g. `aws s3 presign s3://bucket/key` or `gcloud storage sign-url gs://...`"
        )
    if s and Path(s).expanduser().exists():
        return Path(s).expanduser()
    if s and "/" not in s and os.sep not in s and "://" not in s:
        try:
            card = resolve_card(s)
        except ValueError as e:
            files = similar_files(s)  # or a file name with a typo
            also = f" Files here with a similar name: {', '.join(repr(f) for f in files)}." if files else ""
            raise ValueError(f"{e}{also} A source must be {ACCEPTED_FORMS}.") from None
        if sha256 is not None:
            if card.weights.sha256 not in (None, sha256.lower()):
                raise ValueError(f"{s}: sha256={sha256} contradicts the card's {card.weights.sha256}")
            files = tuple(dataclasses.replace(f, sha256=sha256.lower()) if f is card.weights else f for f in card.files)
            card = dataclasses.replace(card, files=files)
        return fetch_card(card, progress=progress, force=force, verify=verify)
    if "://" not in s:
        raise FileNotFoundError(f"{no_such_file(s)} A source must be {ACCEPTED_FORMS}.")
    raise ValueError(f"{redact_url(s)}: not a recognised source. A source must be {ACCEPTED_FORMS}.")
