"""Model cards: one YAML file per published weight, parsed into a typed, validated :class:`Card`.

A card says what a weight is (method, architecture, width), how it was trained (data, epochs, batch size), how
good it is (kNN / linear / finetune top-1 with dataset, protocol and who reported it), where its file lives (URL,
mirrors, size, sha256), under which license, from which paper, and in which checkpoint layout the file is stored.

The JSON Schema ``model_cards/schema.json`` is the published contract for card files (CI validates every card
against it with ``jsonschema``); :func:`parse_card` performs the same checks without third-party validators so
that loading a card never needs more than PyYAML. Unknown values are written explicitly as ``unknown`` (for
example ``sha256: unknown``): a missing field is an error, a declared unknown is not.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sslhub.errors import SslhubError

__all__ = [
    "LAYOUTS",
    "METRIC_TASKS",
    "UNKNOWN",
    "Card",
    "CardError",
    "CardFile",
    "LoadHints",
    "Metric",
    "Source",
    "Training",
    "load_card",
    "parse_card",
]

UNKNOWN = "unknown"
METRIC_TASKS = ("knn", "linear", "finetune")
# Lightly and sslhub layouts, plain torchvision/timm state dicts, then the upstream projects' own on-disk forms
# (one reader each under sslhub/checkpoints/); a card names the form its file is published in.
LAYOUTS = ("lightly-worker", "lightly-zoo", "lightly-benchmark", "lightly-train", "sslhub", "torchvision", "timm",
           "moco-v2", "moco-v3", "simsiam", "swav", "barlowtwins", "vicreg", "dino", "dinov2", "mae", "solo-learn",
           "mmpretrain", "vissl")
LAYOUTS += ("dinov3", "dinov3-convnext", "ijepa", "msn")  # issue 20: DINOv3 release files, I-JEPA, MSN
FILE_ROLES = ("weights", "log")

NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9_.]+)+\.[a-z0-9][a-z0-9_-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
URL_RE = re.compile(r"^(https?://[^\s]+|hf-hub:[^\s]+)$")


class CardError(SslhubError, ValueError):
    """A model card that does not follow the schema. The message names the file and the field."""


@dataclass(frozen=True)
class Metric:
    """One reported evaluation result (top-1 accuracy in percent)."""

    task: str  # "knn" | "linear" | "finetune"
    top1: float
    dataset: str
    protocol: str
    reported_by: str
    reference: str | None = None  # where the number was published


@dataclass(frozen=True)
class Training:
    """How the weight was trained; ``None`` means the card declares the value ``unknown``."""

    data: str
    epochs: int | None
    batch_size: int | None
    image_size: int | None = None
    recipe: str | None = None


@dataclass(frozen=True)
class CardFile:
    """A file of a card. ``sha256``/``size`` are ``None`` when the card declares them ``unknown``."""

    url: str
    filename: str
    size: int | None
    sha256: str | None
    role: str = "weights"
    mirrors: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        """True when downloads of this file are checked against a known sha256."""
        return self.sha256 is not None


@dataclass(frozen=True)
class Source:
    """The layout of the published file and the code that wrote it."""

    layout: str
    prefix: str | None = None  # key prefix of the evaluation backbone inside the file
    code: str | None = None
    zoo_key: str | None = None  # key in ``lightly.models.zoo.ZOO`` for Lightly zoo files


@dataclass(frozen=True)
class LoadHints:
    """Arguments that :func:`sslhub.load_pretrained` should apply when loading this card's weights."""

    arch: str | None = None
    width: float | None = None
    prefix: str | None = None
    # Architecture facts the untrained model needs and the name does not give (MoCo v3's ViT-S has 12 heads, timm's
    # vit_small 6). Loading reads them from the checkpoint's reader; ``create_backbone`` (hubconf's
    # ``pretrained=False``) takes them from here.
    timm_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        """The hints as keyword arguments for ``load_pretrained`` (only those that are set)."""
        return {k: v for k, v in (("arch", self.arch), ("width", self.width), ("prefix", self.prefix)) if v is not None}


@dataclass(frozen=True)
class Card:
    """A parsed model card. See ``model_cards/schema.json`` for the meaning of each field."""

    name: str
    method: str
    architecture: str
    width: float | None
    num_ftrs: int | None
    num_features: int | None
    summary: str
    training: Training
    metrics: tuple[Metric, ...]
    files: tuple[CardFile, ...]
    source: Source
    load: LoadHints
    license: str
    paper: str | None
    notes: str | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def weights(self) -> CardFile:
        """The weights file (exactly one file per card has ``role: weights``)."""
        return next(f for f in self.files if f.role == "weights")

    @property
    def tag(self) -> str:
        """The part of the name after the last dot (``lightly-in1k`` in ``simclr-resnet50.lightly-in1k``)."""
        return self.name.rsplit(".", 1)[1]

    def metric(self, task: str) -> Metric | None:
        """The first metric for ``task`` (``knn``, ``linear`` or ``finetune``), or None."""
        return next((m for m in self.metrics if m.task == task), None)

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``load_pretrained``: the card's ``load`` hints, else its architecture/width."""
        kw = self.load.kwargs()
        kw.setdefault("arch", self.architecture)
        if self.width is not None:
            kw.setdefault("width", self.width)
        return kw


# ----------------------------------------------------------------------------------------------------------------
# parsing and validation (mirrors schema.json; the schema test checks that both accept and reject the same cards)


class _Ctx:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field_path: str, msg: str) -> CardError:
        return CardError(f"{self.where}: field {field_path!r}: {msg} (see model_cards/schema.json)")

    def obj(self, d: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
        if not isinstance(d, Mapping):
            raise self.fail(path or "<card>", f"expected a mapping, got {type(d).__name__}")
        missing = [k for k in required if k not in d]
        if missing:
            raise self.fail(path or "<card>", f"missing required key(s) {missing}; write 'unknown' where a value "
                            "is not known")
        extra = sorted(set(d) - set(required) - set(optional))
        if extra:
            raise self.fail(path or "<card>", f"unknown key(s) {extra}; allowed: {sorted(required + optional)}")
        return d

    def string(self, v: Any, path: str, *, pattern: re.Pattern[str] | None = None, nullable: bool = False) -> Any:
        if v is None and nullable:
            return None
        if not isinstance(v, str) or not v.strip():
            raise self.fail(path, f"expected a non-empty string, got {v!r} (quote it if YAML read it as a number)")
        if pattern is not None and not pattern.match(v):
            raise self.fail(path, f"{v!r} does not match {pattern.pattern}")
        return v

    def enum(self, v: Any, path: str, choices: tuple[str, ...]) -> str:
        if v not in choices:
            raise self.fail(path, f"{v!r} is not one of {list(choices)}")
        return v

    def int_or_unknown(self, v: Any, path: str, *, nullable: bool = False) -> int | None:
        if v == UNKNOWN or (v is None and nullable):
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise self.fail(path, f"expected a positive integer or 'unknown', got {v!r}")
        return v

    def number(self, v: Any, path: str, *, nullable: bool = False, lo: float = 0.0, hi: float | None = None) -> Any:
        if v is None and nullable:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= lo or (hi is not None and v > hi):
            bounds = f"in ({lo}, {hi}]" if hi is not None else f"> {lo}"
            raise self.fail(path, f"expected a number {bounds}, got {v!r}")
        return float(v)


_TOP_REQUIRED = ("name", "method", "architecture", "width", "summary", "training", "metrics", "files", "source",
                 "license", "paper")
_TOP_OPTIONAL = ("num_ftrs", "num_features", "load", "notes")


def parse_card(data: Any, *, where: str = "<card>") -> Card:
    """Validate a card's YAML data and return a :class:`Card`.

    Raises:
        CardError: a required key is missing, a key is unknown, or a value has the wrong type or format.
    """
    c = _Ctx(where)
    d = c.obj(data, "", _TOP_REQUIRED, _TOP_OPTIONAL)
    name = c.string(d["name"], "name", pattern=NAME_RE)
    method = c.string(d["method"], "method", pattern=re.compile(r"^[a-z0-9_]+$"))
    if not name.startswith(method + "-"):
        raise c.fail("name", f"{name!r} must start with the method {method!r} followed by '-' (method-arch.tag)")

    t = c.obj(d["training"], "training", ("data", "epochs", "batch_size"), ("image_size", "recipe"))
    training = Training(
        data=c.string(t["data"], "training.data"),
        epochs=c.int_or_unknown(t["epochs"], "training.epochs"),
        batch_size=c.int_or_unknown(t["batch_size"], "training.batch_size"),
        image_size=c.int_or_unknown(t.get("image_size"), "training.image_size", nullable=True),
        recipe=c.string(t.get("recipe"), "training.recipe", nullable=True),
    )

    if not isinstance(d["metrics"], list):
        raise c.fail("metrics", "expected a list (use [] when nothing was measured)")
    metrics = []
    for i, m in enumerate(d["metrics"]):
        p = f"metrics[{i}]"
        m = c.obj(m, p, ("task", "top1", "dataset", "protocol", "reported_by"), ("reference",))
        metrics.append(Metric(
            task=c.enum(m["task"], f"{p}.task", METRIC_TASKS),
            top1=c.number(m["top1"], f"{p}.top1", lo=0.0, hi=100.0),
            dataset=c.string(m["dataset"], f"{p}.dataset"),
            protocol=c.string(m["protocol"], f"{p}.protocol"),
            reported_by=c.string(m["reported_by"], f"{p}.reported_by"),
            reference=c.string(m.get("reference"), f"{p}.reference", nullable=True),
        ))

    if not isinstance(d["files"], list) or not d["files"]:
        raise c.fail("files", "expected a non-empty list of files")
    files = []
    for i, f in enumerate(d["files"]):
        p = f"files[{i}]"
        f = c.obj(f, p, ("url", "filename", "size", "sha256"), ("role", "mirrors"))
        sha = c.string(f["sha256"], f"{p}.sha256")
        if sha != UNKNOWN and not SHA256_RE.match(sha):
            raise c.fail(f"{p}.sha256", f"{sha!r} is neither 64 lowercase hex digits nor 'unknown'")
        filename = c.string(f["filename"], f"{p}.filename", pattern=re.compile(r"^[^/\\]+$"))
        if filename in (".", ".."):
            raise c.fail(f"{p}.filename", "must be a plain file name")
        mirrors = f.get("mirrors", [])
        if not isinstance(mirrors, list):
            raise c.fail(f"{p}.mirrors", "expected a list of URLs")
        files.append(CardFile(
            url=c.string(f["url"], f"{p}.url", pattern=URL_RE),
            filename=filename,
            size=c.int_or_unknown(f["size"], f"{p}.size"),
            sha256=None if sha == UNKNOWN else sha,
            role=c.enum(f.get("role", "weights"), f"{p}.role", FILE_ROLES),
            mirrors=tuple(c.string(u, f"{p}.mirrors[{j}]", pattern=URL_RE) for j, u in enumerate(mirrors)),
        ))
    n_weights = sum(f.role == "weights" for f in files)
    if n_weights != 1:
        raise c.fail("files", f"exactly one file must have role 'weights' (found {n_weights})")

    s = c.obj(d["source"], "source", ("layout",), ("prefix", "code", "zoo_key"))
    source = Source(
        layout=c.enum(s["layout"], "source.layout", LAYOUTS),
        prefix=c.string(s.get("prefix"), "source.prefix", nullable=True),
        code=c.string(s.get("code"), "source.code", nullable=True),
        zoo_key=c.string(s.get("zoo_key"), "source.zoo_key", nullable=True),
    )

    hints = c.obj(d.get("load") or {}, "load", (), ("arch", "width", "prefix", "timm_kwargs"))
    timm_kw = hints.get("timm_kwargs") or {}
    if not isinstance(timm_kw, Mapping):
        raise c.fail("load.timm_kwargs", f"expected a mapping of timm.create_model arguments, got {timm_kw!r}")
    for k, v in timm_kw.items():
        if not isinstance(v, (bool, int, float, str)):
            raise c.fail(f"load.timm_kwargs.{k}", f"expected a number, string or boolean, got {v!r}")
    load = LoadHints(
        arch=c.string(hints.get("arch"), "load.arch", nullable=True),
        width=c.number(hints.get("width"), "load.width", nullable=True),
        prefix=c.string(hints.get("prefix"), "load.prefix", nullable=True),
        timm_kwargs=dict(timm_kw),
    )

    return Card(
        name=name,
        method=method,
        architecture=c.string(d["architecture"], "architecture"),
        width=c.number(d["width"], "width", nullable=True),
        num_ftrs=c.int_or_unknown(d.get("num_ftrs"), "num_ftrs", nullable=True),
        num_features=c.int_or_unknown(d.get("num_features"), "num_features", nullable=True),
        summary=c.string(d["summary"], "summary"),
        training=training,
        metrics=tuple(metrics),
        files=tuple(files),
        source=source,
        load=load,
        license=c.string(d["license"], "license"),
        paper=c.string(d["paper"], "paper", nullable=True),
        notes=c.string(d.get("notes"), "notes", nullable=True),
        path=None,
    )


def load_card(path: str | Path) -> Card:
    """Read and validate one card file; its name must equal the file name without ``.yaml``."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise CardError(f"{path}: not valid YAML ({e})") from None
    card = parse_card(data, where=str(path))
    if card.name != path.stem:
        raise CardError(f"{path}: the card is named {card.name!r}; rename the file to {card.name}.yaml")
    return dataclasses.replace(card, path=path)
