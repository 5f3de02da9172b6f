"""The registry of pretrained weights: every model card shipped with sslhub (plus user card folders).

Cards are read from, in this order:

1. the folders in ``$SSLHUB_CARDS`` (``os.pathsep``-separated), for private or local zoos;
2. ``sslhub/_data/model_cards`` inside an installed wheel;
3. ``<repo>/model_cards`` in a source checkout (editable installs).

A name may appear only once across all folders.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
import re
from pathlib import Path

from sslhub.hub.cards import Card, CardError, load_card

__all__ = ["card_dirs", "entrypoint_name", "get_card", "list_pretrained", "registry"]

ENV_CARDS = "SSLHUB_CARDS"


def card_dirs() -> list[Path]:
    """The folders that hold model cards, in search order (only those that exist)."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV_CARDS, "").split(os.pathsep) if p.strip()]
    pkg = Path(__file__).resolve().parent.parent
    dirs += [pkg / "_data" / "model_cards", pkg.parent / "model_cards"]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


@functools.lru_cache(maxsize=8)
def _load(dirs: tuple[Path, ...]) -> dict[str, Card]:
    cards: dict[str, Card] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            card = load_card(path)
            if card.name in cards:
                raise CardError(f"{path}: the name {card.name!r} is already used by {cards[card.name].path}; card "
                                "names must be unique across all card folders")
            cards[card.name] = card
    return cards


def registry() -> dict[str, Card]:
    """All cards by name (read once per set of card folders, then cached)."""
    return dict(_load(tuple(card_dirs())))


def get_card(name: str) -> Card:
    """The card called ``name``.

    Raises:
        ValueError: no such card; the message lists close names.
    """
    cards = registry()
    if name in cards:
        return cards[name]
    close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"{name!r} is not a registered pretrained weight.{hint} See `sslhub list` for all "
                     f"{len(cards)} names.")


def _match(pattern: str, value: str, *, substring: bool) -> bool:
    if substring and not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"  # a plain word matches as a substring
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def list_pretrained(pattern: str | None = None, method: str | None = None, arch: str | None = None) -> list[str]:
    """Names of the registered pretrained weights, sorted.

    Args:
        pattern: shell-style wildcard on the name (``"*resnet50*"``); a plain word matches as a substring.
        method: only this method (``"simclr"``, case-insensitive).
        arch: only this architecture, exact or shell-style wildcard, on the card's ``architecture``
            (``"resnet-18"``, ``"vit_*"``) or on the architecture part of the name (``"resnet18"``, ``"vitb16"``).

    Example:
        >>> import sslhub
        >>> sslhub.list_pretrained("*in1k", method="simclr")
        ['simclr-resnet50.lightly-in1k']
    """
    out = []
    for name, card in registry().items():
        if pattern and not _match(pattern, name, substring=True):
            continue
        if method and card.method != method.lower():
            continue
        if arch:
            arch_slug = name.rsplit(".", 1)[0].split("-")[1]  # "resnet9" in "simclr-resnet9-w0.0625-d16.lightly-zoo"
            if not (_match(arch, card.architecture, substring=False) or _match(arch, arch_slug, substring=False)):
                continue
        out.append(name)
    return sorted(out)


def entrypoint_name(card_name: str) -> str:
    """The ``torch.hub`` entrypoint of a card: non-alphanumerics become ``_`` (``simclr_resnet50_lightly_in1k``)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", card_name).strip("_").lower()
