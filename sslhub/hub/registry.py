"""The registry of pretrained weights: every model card shipped with sslhub (plus user card folders).

Cards are read from, in this order:

1. the folders in ``$SSLHUB_CARDS`` (``os.pathsep``-separated), for private or local zoos;
2. ``sslhub/_data/model_cards`` inside an installed wheel;
3. ``<repo>/model_cards`` in a source checkout (editable installs).

A name may appear only once across all folders.

Naming scheme (one for recipes and registry): ``<method>-<backbone>[-<variant>].<publisher>-<data>``.

* ``<method>`` is the recipe method name (``simclr``, ``moco`` = MoCo v2 as in the recipes, ``byol``, ``dino``...);
  a method the recipes do not train keeps its paper name (``mocov3``). Other spellings of a recipe method
  (``mocov2``, see :data:`sslhub.suggest.METHOD_ALIASES`) resolve to it: ``mocov2-resnet50.lightly-in1k`` finds
  ``moco-resnet50.lightly-in1k``.
* ``<backbone>`` is the recipe backbone name: ``resnet-18`` is Lightly's ResNetGenerator, ``resnet18`` torchvision's
  ResNet (as ``sslhub.create_backbone``); ViTs use timm's short form ``vits16``/``vitb16`` (patch size last).
* ``<variant>``: what else tells two files apart (``w0.125`` ResNetGenerator width, ``d16`` Worker ``num_ftrs``).
* ``<publisher>-<data>``: who trained it on what (``lightly-in1k``, ``lightly-zoo``, ``fb-in1k``).

Renamed cards keep their old name as a deprecated alias (:data:`DEPRECATED_NAMES`) that still resolves.

A name without its ``.<publisher>-<data>`` tag resolves to the default tag, as in timm (``dino-vits16`` is
``dino-vits16.fb-in1k``): the only tag when there is one; else the original authors' release (a publisher other
than ``lightly``), else the first tag in natural order (:func:`default_name`).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import re
from pathlib import Path

from sslhub.hub.cards import Card, CardError, load_card
from sslhub.suggest import did_you_mean, natural_sorted, resolve_method_alias

logger = logging.getLogger(__name__)

__all__ = ["DEPRECATED_NAMES", "canonical_name", "card_dirs", "default_name", "entrypoint_name", "get_card",
           "list_pretrained", "registry"]

# Names before the one naming scheme (module docstring) -> current names. They resolve with a warning.
DEPRECATED_NAMES = {
    "mocov2-resnet50.lightly-in1k": "moco-resnet50.lightly-in1k",
    "simclr-resnet18-d16.lightly-zoo": "simclr-resnet-18-d16.lightly-zoo",
    "simclr-resnet18-d32.lightly-zoo": "simclr-resnet-18-d32.lightly-zoo",
    "simclr-resnet34-d16.lightly-zoo": "simclr-resnet-34-d16.lightly-zoo",
    "simclr-resnet34-d32.lightly-zoo": "simclr-resnet-34-d32.lightly-zoo",
    "simclr-resnet9-w0.0625-d16.lightly-zoo": "simclr-resnet-9-w0.0625-d16.lightly-zoo",
    "simclr-resnet9-w0.125-d16.lightly-zoo": "simclr-resnet-9-w0.125-d16.lightly-zoo",
}

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
    current = canonical_name(name)
    if current in cards:
        if "." not in name:
            logger.info("%s is %s (its default tag)", name, current)
        elif name in DEPRECATED_NAMES:
            logger.warning("%s is the old name of %s; use the new name (the old one will be removed)", name, current)
        return cards[current]
    raise ValueError(f"{name!r} is not a registered pretrained weight.{did_you_mean(name, cards, n=3)} See "
                     f"`sslhub list` for all {len(cards)} names.")


def default_name(model: str) -> str | None:
    """The full registry name for ``model`` without its tag (``dino-vits16`` -> ``dino-vits16.fb-in1k``), or None
    when no card has that model name. See the module docstring for which tag is the default."""
    tagged = [n for n in registry() if n.partition(".")[0] == model]
    if not tagged:
        return None
    upstream = [n for n in tagged if not n.partition(".")[2].startswith("lightly-")]
    return natural_sorted(upstream or tagged)[0]


def canonical_name(name: str) -> str:
    """The registry name ``name`` stands for: deprecated names, method aliases (``mocov2-...``) and names without
    a tag (:func:`default_name`) resolved."""
    if name in DEPRECATED_NAMES:
        return DEPRECATED_NAMES[name]
    if name in registry():
        return name
    method, sep, rest = name.partition("-")
    aliased = resolve_method_alias(method)
    name = f"{aliased}{sep}{rest}" if sep and aliased != method.lower() else name
    if "." not in name:
        return default_name(name) or name
    return name


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
        if method and card.method != resolve_method_alias(method):
            continue
        if arch:
            # "resnet-9" in "simclr-resnet-9-w0.0625-d16.lightly-zoo", "resnet50" in "simclr-resnet50.lightly-in1k"
            base = name.rsplit(".", 1)[0]
            base = base[len(card.method) + 1:] if base.startswith(card.method + "-") else base.partition("-")[2]
            arch_slug = m.group(0) if (m := re.match(r"resnet-\d+|[a-z0-9_]+", base)) else base
            if not (_match(arch, card.architecture, substring=False) or _match(arch, arch_slug, substring=False)):
                continue
        out.append(name)
    return natural_sorted(out)


def entrypoint_name(card_name: str) -> str:
    """The ``torch.hub`` entrypoint of a card: non-alphanumerics become ``_`` (``simclr_resnet50_lightly_in1k``)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", card_name).strip("_").lower()
