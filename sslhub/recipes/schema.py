"""What a recipe may contain: one typed spec per section, checked on every ``--set`` and on every resolved recipe.

A recipe is a dict of sections. Fixed sections (``optimizer``, ``schedule``, ``knn``, ...) and top-level scalars
(``epochs``, ``batch_size``, ...) are described here by :class:`Key` entries, one place per section
(:data:`SECTIONS`; add a new section such as ``compile:`` with one entry there, or with :func:`register_section`).
Open sections are checked against the code that consumes them, so a new method or transform needs no edit here:

* ``model``: the keyword arguments of the method class (``sslhub.methods.METHODS[recipe["method"]]``);
* ``transform.args``: the keyword arguments of the transform class ``transform.name`` (``sslhub.transforms``);
* ``backbone``: ``arch``, ``width``/``num_ftrs`` (Lightly ResNetGenerator), ``img_size``; ViT and timm
  backbones also take the keyword arguments their builder forwards (``patch_size``, ``global_pool``, ...).

A key that the spec does not list is still accepted when the recipe itself defines it (its type is then the
type of the recipe's value), so that a YAML key added next to new trainer code can be overridden at once; the
test suite checks that every shipped recipe is fully described by this spec.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from sslhub.suggest import similar

__all__ = ["SECTIONS", "TOP_LEVEL", "Key", "RecipeError", "check_override", "register_section", "validate_recipe"]


class RecipeError(ValueError):
    """A recipe key or value that cannot work; the message names the key and what to do."""


@dataclass(frozen=True)
class Key:
    """One recipe field: accepted types (after YAML parsing), a range rule and a one-line help."""

    types: tuple[type, ...]
    rule: str | None = None
    """``"positive"`` (> 0), ``"non_negative"`` (>= 0), ``"probability"`` ([0, 1]), ``"at_least_1"``, or None."""
    nullable: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


INT, NUM, STR, BOOL = (int,), (int, float), (str,), (bool,)
LIST = (list, tuple)

TOP_LEVEL: dict[str, Key] = {
    "name": Key(STR, help="recipe name (set by the registry)"),
    "method": Key(STR, help="key of sslhub.methods.METHODS"),
    "paper": Key(STR, nullable=True),
    "measured": Key(STR, nullable=True, help="what this recipe was measured at (shown by `sslhub recipes --table`)"),
    "input_size": Key(INT, "positive", help="training crop size in pixels"),
    "load_size": Key(INT, "positive", help="decode size before cropping (default input_size)"),
    "epochs": Key(INT, "at_least_1"),
    "batch_size": Key(INT, "positive", help="images per step per process"),
    "sync_batchnorm": Key(BOOL),
    "seed": Key(INT, "non_negative"),
    "monitor_every": Key(INT, "non_negative", help="kNN/std monitor every N epochs (0: off)"),
    "monitor_random_init": Key(BOOL, help="measure the kNN of the untrained network once, before epoch 1"),
    "amp": Key(BOOL, nullable=True, help="mixed precision (default: on for CUDA, off on the CPU)"),
}

SECTIONS: dict[str, dict[str, Key]] = {
    "optimizer": {
        "name": Key(STR, choices=("sgd", "adamw", "lars", "lamb")),
        "lr": Key(NUM, "positive", help="base learning rate at reference_batch_size"),
        "lr_scaling": Key(STR, choices=("linear", "sqrt", "none")),
        "reference_batch_size": Key(INT, "positive"),
        "momentum": Key(NUM, "probability"),
        "weight_decay": Key(NUM, "non_negative"),
        "weight_decay_end": Key(NUM, "non_negative", nullable=True),
        "betas": Key(LIST),
        "clip_grad": Key(NUM, "positive", nullable=True),
        "exclude_norm_bias": Key(BOOL, help="no weight decay (and no LARS scaling) for norms and biases"),
        "trust_coefficient": Key(NUM, "positive", help="LARS trust coefficient"),
        "clip_lr": Key(BOOL, help="LARS: cap the layer rate at the global one (solo-learn)"),
        "eps": Key(NUM, "positive"),
    },
    # the trainer's opt-in fast path (sslhub.training.fast); every key defaults to off
    "fast": {
        "channels_last": Key(BOOL, help="NHWC memory format for the model and the batches"),
        "bf16": Key(BOOL, help="bfloat16 autocast, no GradScaler"),
        "compile": Key((bool, str), help="torch.compile the model step: true (inductor on CUDA) or a backend name"),
        "compile_mode": Key(STR, nullable=True, help="torch.compile mode"),
        "fused_optimizer": Key(BOOL, help="fused (CUDA) or foreach optimizer kernels"),
    },
    "schedule": {
        "warmup_epochs": Key(NUM, "non_negative", help="linear warmup, clipped to half the run"),
        "min_lr_ratio": Key(NUM, "probability", help="cosine floor as a fraction of the peak lr"),
    },
    "knn": {"k": Key(INT, "positive"), "t": Key(NUM, "positive")},
    "worker": {"num_ftrs": Key(INT, "positive", help="the Lightly Worker's 1x1 conv width (ResNetGenerator)")},
    "transform": {"name": Key(STR, help="class in sslhub.transforms"), "args": Key((dict,), nullable=True)},
}

# backbone keys every family understands; other keys are checked against the family (see _backbone_keys)
BACKBONE: dict[str, Key] = {
    "arch": Key(STR, help="resnet-18 (Lightly), resnet18 (torchvision), vit_b_16 (torchvision) or a timm name"),
    "width": Key(NUM, "positive", nullable=True, help="Lightly ResNetGenerator width"),
    "num_ftrs": Key(INT, "positive", nullable=True),
    "img_size": Key(INT, "positive", nullable=True),
}
_TV_VIT = {k: Key(INT, "positive") for k in ("patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim")}
_TIMM_ONLY_VIT = ("dynamic_img_size", "init_values", "reg_tokens")

# transform arguments that are probabilities or fractions, by name (Lightly's names)
_PROBABILITY_ARGS = ("random_gray_scale", "gaussian_blur", "solarization", "min_scale", "mask_ratio")
_PROBABILITY_MODEL = ("mask_ratio", "momentum_start", "momentum_end", "center_momentum")


# sections that ``null`` switches off (``worker: null``: train the plain model, no Lightly Worker checkpoint)
_NULLABLE_SECTIONS = ("worker",)


def register_section(name: str, keys: Mapping[str, Key]) -> None:
    """Describe a new fixed section (e.g. ``register_section("compile", {"mode": Key(STR)})``)."""
    SECTIONS[name] = dict(keys)


# ---------------------------------------------------------------------------------------------- signatures


def _params(fn: Callable[..., Any], skip: Iterable[str] = ()) -> tuple[dict[str, inspect.Parameter], bool]:
    """Keyword parameters of ``fn`` and whether it also takes ``**kwargs``."""
    sig = inspect.signature(fn)
    skip = set(skip) | {"self"}
    params = {n: p for n, p in sig.parameters.items() if n not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return params, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def _key_from_param(p: inspect.Parameter) -> Key | None:
    """The type a parameter's default implies (bool / int / number / str), or None (any value)."""
    d = p.default
    if d is inspect.Parameter.empty or d is None:
        return None
    if isinstance(d, bool):
        return Key(BOOL, nullable=True)
    if isinstance(d, int):
        return Key(INT, nullable=True)
    if isinstance(d, float):
        return Key(NUM, nullable=True)
    if isinstance(d, str):
        return Key(STR, nullable=True)
    return None


def _method_keys(recipe: Mapping[str, Any]) -> tuple[dict[str, Key | None], bool, str]:
    from sslhub.methods import METHODS

    method = recipe.get("method")
    if method not in METHODS:
        raise RecipeError(f"method={method!r} is not a training method.{_hint(str(method), METHODS)} "
                          f"Available: {', '.join(sorted(METHODS))}")
    params, open_ = _params(METHODS[method], skip=("backbone", "num_features", "gather_distributed"))
    keys: dict[str, Key | None] = {n: _key_from_param(p) for n, p in params.items()}
    for n in _PROBABILITY_MODEL:
        if n in keys and keys[n] is not None:
            keys[n] = Key(NUM, "probability")
    return keys, open_, f"the arguments of {METHODS[method].__name__} (sslhub.methods, method {method!r})"


def _transform_keys(recipe: Mapping[str, Any]) -> tuple[dict[str, Key | None], bool, str]:
    import sslhub.transforms as T

    name = (recipe.get("transform") or {}).get("name")
    cls = getattr(T, str(name), None) if name else None
    if cls is None or not inspect.isclass(cls):
        names = [n for n in dir(T) if n.endswith("Transform")]
        raise RecipeError(f"transform.name={name!r} is not a transform in sslhub.transforms.{_hint(str(name), names)}")
    params, open_ = _params(cls)
    keys: dict[str, Key | None] = {n: _key_from_param(p) for n, p in params.items()}
    for n in list(keys):
        if (n.endswith("_prob") or n in _PROBABILITY_ARGS) and keys[n] is not None and keys[n].types != BOOL:
            keys[n] = Key(NUM, "probability")
    for i in (1, 2):  # per-view arguments of two-view transforms (see sslhub.training.trainer._build_transform)
        if f"view_{i}_transform" in params:
            keys[f"view_{i}"] = Key((dict,), nullable=True)
    return keys, open_, f"the arguments of {cls.__name__} (sslhub.transforms)"


def _backbone_keys(recipe: Mapping[str, Any]) -> tuple[dict[str, Key | None], bool, str]:
    from sslhub.backbones import family_of

    arch = (recipe.get("backbone") or {}).get("arch")
    keys: dict[str, Key | None] = dict(BACKBONE)
    family = family_of(arch) if isinstance(arch, str) else None
    if family == "torchvision_vit":
        keys.update(_TV_VIT)
        # timm-only options of a timm base recipe: its torchvision variants unset them with null (the trainer drops
        # None values before building the backbone); any other value is an error
        for name in _TIMM_ONLY_VIT:
            keys[name] = Key((type(None),), nullable=True, help="a timm ViT option; torchvision ViTs take only null")
    # timm models take any keyword their model class accepts (forwarded to timm.create_model)
    return keys, family == "timm", f"the backbone keys for arch {arch!r}"


_OPEN = {"model": _method_keys, "backbone": _backbone_keys}


# ---------------------------------------------------------------------------------------------- checks


def _hint(name: str, candidates: Iterable[str]) -> str:
    close = similar(name, candidates, n=3, cutoff=0.6)
    return f" Did you mean {', '.join(close)}?" if close else ""


def _all_paths(recipe: Mapping[str, Any], head: str | None = None) -> list[str]:
    """Every dotted key path a ``--set`` may name for this recipe (for suggestions). The open sections (which
    import the method and transform classes, hence torch) are listed only when ``head`` names them."""
    paths = [k for k in TOP_LEVEL] + [f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys]
    for section, fn in _OPEN.items():
        if head in (None, section):
            try:
                paths += [f"{section}.{k}" for k in fn(recipe)[0]]
            except RecipeError:
                pass
    if head in (None, "transform"):
        try:
            paths += [f"transform.args.{k}" for k in _transform_keys(recipe)[0]]
        except RecipeError:
            pass
    paths += _flatten(recipe)
    return list(dict.fromkeys(p for p in paths if not p.startswith("variants")))


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        path = f"{prefix}{k}"
        out.append(path)
        if isinstance(v, Mapping):
            out += _flatten(v, path + ".")
    return out


def _type_name(types: tuple[type, ...]) -> str:
    if types == NUM:
        return "a number"
    return {int: "an integer", str: "a string", bool: "true or false", dict: "a mapping {...}",
            list: "a list [...]", tuple: "a list [...]", type(None): "null"}.get(types[0], types[0].__name__)  # fmt: skip


def _check_value(path: str, value: Any, key: Key | None, raw: str | None = None) -> None:
    if key is None:
        return
    shown = raw if raw is not None else repr(value)
    path = f"--set {path}" if raw is not None else path
    if value is None:
        if key.nullable:
            return
        raise RecipeError(f"{path}={shown}: a value is required ({_type_name(key.types)})")
    ok = isinstance(value, key.types) and not (isinstance(value, bool) and bool not in key.types)
    if not ok:
        raise RecipeError(f"{path}={shown}: expected {_type_name(key.types)}, got {type(value).__name__} "
                          f"{value!r}" + (f" ({key.help})" if key.help else ""))  # fmt: skip
    if key.choices and value not in key.choices:
        raise RecipeError(f"{path}={shown}: use one of {', '.join(key.choices)}.{_hint(str(value), key.choices)}")
    if key.rule and isinstance(value, (int, float)) and not isinstance(value, bool):
        bad = {
            "positive": not (value > 0),
            "non_negative": not (value >= 0),
            "probability": not (0 <= value <= 1),
            "at_least_1": not (value >= 1),
        }[key.rule] or (isinstance(value, float) and not math.isfinite(value))
        if bad:
            want = {"positive": "> 0", "non_negative": ">= 0", "probability": "in [0, 1]", "at_least_1": ">= 1"}
            raise RecipeError(f"{path}={shown}: must be {want[key.rule]}")


def _inferred(value: Any) -> Key | None:
    """The type of an existing recipe value, for keys the spec does not list."""
    if isinstance(value, bool):
        return Key(BOOL, nullable=True)
    if isinstance(value, int):
        return Key(INT, nullable=True)
    if isinstance(value, float):
        return Key(NUM, nullable=True)
    if isinstance(value, str):
        return Key(STR, nullable=True)
    return None


def _lookup(recipe: Mapping[str, Any], parts: list[str]) -> tuple[bool, Key | None, str]:
    """(known, spec, where) for a key path; ``where`` describes what the key is checked against."""
    head = parts[0]
    existing: Any = recipe
    for p in parts:
        existing = existing.get(p, _MISSING) if isinstance(existing, Mapping) else _MISSING
    in_recipe = existing is not _MISSING
    if len(parts) == 1:
        if head in TOP_LEVEL:
            return True, TOP_LEVEL[head], "recipe"
        if head in SECTIONS or head in _OPEN:
            return True, Key((dict,), nullable=head in _NULLABLE_SECTIONS), "recipe"
        return in_recipe, _inferred(existing) if in_recipe else None, "the recipe's top-level keys"
    if head == "transform" and len(parts) >= 3 and parts[1] == "args":
        if len(parts) > 3 and parts[2] in ("view_1", "view_2"):
            return True, None, "view arguments"
        keys, open_, where = _transform_keys(recipe)
        name = parts[2]
        return (name in keys or open_ or in_recipe), keys.get(name), where
    if head in _OPEN and len(parts) == 2:
        keys, open_, where = _OPEN[head](recipe)
        name = parts[1]
        spec = keys.get(name) if name in keys else (_inferred(existing) if in_recipe else None)
        return (name in keys or open_ or in_recipe), spec, where
    if head in SECTIONS and len(parts) == 2:
        keys = SECTIONS[head]
        if parts[1] in keys:
            return True, keys[parts[1]], f"the {head} section"
        return in_recipe, _inferred(existing) if in_recipe else None, f"the {head} section"
    return in_recipe, _inferred(existing) if in_recipe else None, "the recipe"


_MISSING = object()


def check_override(recipe: Mapping[str, Any], key: str, value: Any, raw: str | None = None) -> None:
    """Check one ``key=value`` override against the spec and the recipe it applies to.

    Raises:
        RecipeError: unknown key (with the nearest known keys), wrong type or out-of-range value.
    """
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise RecipeError(f"--set {key}={raw}: empty part in the key path")
    known, spec, where = _lookup(recipe, parts)
    if not known:
        shown = raw if raw is not None else repr(value)
        head = parts[0] if len(parts) > 1 else ""
        raise RecipeError(
            f"--set {key}={shown}: {key!r} is not a recipe key "
            f"(checked against {where}).{_hint(key, _all_paths(recipe, head))} See `sslhub recipes --show "
            f"{recipe.get('name', 'NAME')}` for the keys of this recipe."
        )
    _check_value(key, value, spec, raw)


def validate_recipe(recipe: Mapping[str, Any], strict: bool = False) -> None:
    """Check every value of a resolved recipe against the spec (types and ranges).

    Args:
        strict: also reject keys the spec does not describe (the test suite runs this on every shipped recipe).

    Raises:
        RecipeError: the first bad value, named by its key path.
    """
    where = recipe.get("name", "recipe")
    for k, v in recipe.items():
        if k in ("backbones", "variants") or (v is None and k in _NULLABLE_SECTIONS):
            continue
        if (k in SECTIONS or k in _OPEN or k == "transform") and not isinstance(v, Mapping):
            raise RecipeError(f"{k}={v!r}: expected a mapping {{...}} (the {k} section)")
        if isinstance(v, Mapping) and k in ("model", "backbone", "transform", *SECTIONS):
            for kk, vv in v.items():
                if k == "transform" and kk == "args":
                    keys, open_, what = _transform_keys(recipe)
                    for a, av in (vv or {}).items():
                        if a not in keys and not open_:
                            raise RecipeError(f"{where}: transform.args.{a} is not one of {what}."
                                              f"{_hint(a, keys)}")  # fmt: skip
                        _check_value(f"transform.args.{a}", av, keys.get(a))
                    continue
                known, spec, what = _lookup(recipe, [k, kk])
                if strict and not (k in SECTIONS and kk in SECTIONS[k]) and k not in _OPEN:
                    raise RecipeError(f"{where}: {k}.{kk} is not described in sslhub/recipes/schema.py ({what})")
                if k in _OPEN:
                    keys, open_, what = _OPEN[k](recipe)
                    if kk not in keys and not open_:
                        raise RecipeError(f"{where}: {k}.{kk} is not one of {what}.{_hint(kk, keys)}")
                    spec = keys.get(kk)
                _check_value(f"{k}.{kk}", vv, spec)
        elif k in TOP_LEVEL:
            _check_value(k, v, TOP_LEVEL[k])
        elif strict:
            raise RecipeError(f"{where}: top-level key {k!r} is not described in sslhub/recipes/schema.py")
