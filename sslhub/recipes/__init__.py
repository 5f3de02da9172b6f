"""Recipe registry: method + backbone + hyperparameters, stored as YAML (``training/recipes/<method>.yaml``).

A file describes one method and the backbones it supports; recipe names are ``<method>-<backbone>[-<variant>]``
(``simclr-resnet-18`` = Lightly ResNetGenerator, ``simclr-resnet18`` = torchvision, ``simclr-resnet-18-mini`` a
variant). The registry of pretrained weights uses the same method and backbone names
(``<method>-<backbone>[-<variant>].<publisher>-<data>``, see :mod:`sslhub.hub.registry`). Any field can be
overridden with ``key.sub=value`` strings (values parsed as YAML); keys, types and ranges are checked against
:mod:`sslhub.recipes.schema`, and a typo gets the nearest key.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from sslhub.recipes.schema import RecipeError, check_override, validate_recipe
from sslhub.suggest import did_you_mean, natural_sorted

__all__ = ["RecipeError", "all_recipes", "apply_overrides", "get_recipe", "list_recipes", "recipe_dirs", "validate_recipe"]


def recipe_dirs() -> list[Path]:
    """Where recipe YAML files are looked up: the installed package data, then the source tree."""
    here = Path(__file__).resolve().parent.parent
    dirs = [here / "_data" / "recipes", here.parent / "training" / "recipes"]
    return [d for d in dirs if d.is_dir()]


@lru_cache(maxsize=1)
def _templates() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for d in recipe_dirs():
        for f in sorted(d.glob("*.yaml")):
            data = yaml.safe_load(f.read_text())
            if not isinstance(data, dict) or "method" not in data:
                raise ValueError(f"{f}: not a recipe (needs a 'method' field)")
            out.setdefault(f.stem, data)
    return out


def all_recipes() -> dict[str, dict[str, Any]]:
    """Every recipe by name: each template's method x backbone, plus its named variants (fresh copies)."""
    recipes: dict[str, dict[str, Any]] = {}
    for tpl in _templates().values():
        for bb in tpl.get("backbones", []):
            r = copy.deepcopy({k: v for k, v in tpl.items() if k not in ("backbones", "variants")})
            r["backbone"] = {"arch": bb, **(r.get("backbone") or {})}
            r["name"] = f"{tpl['method']}-{bb}"
            recipes[r["name"]] = r
        for name, extra in (tpl.get("variants") or {}).items():
            r = copy.deepcopy({k: v for k, v in tpl.items() if k not in ("backbones", "variants")})
            _merge(r, extra)
            r["name"] = name
            recipes[name] = r
    return recipes


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def list_recipes(pattern: str | None = None) -> list[str]:
    """Recipe names in natural order, optionally filtered with a shell-style wildcard (``"simclr-*"``); a plain
    word matches as a substring (``"mini"``), as in ``sslhub list``."""
    names = natural_sorted(all_recipes())
    if pattern is not None and not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def apply_overrides(recipe: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``recipe`` with ``key.sub=value`` overrides applied (values parsed as YAML).

    Each key path, type and range is checked against :mod:`sslhub.recipes.schema` before it is applied.

    Raises:
        RecipeError: (a ``ValueError``) a malformed override, an unknown key (the message suggests the nearest
            keys), or a value of the wrong type or out of range; the message names the key.
    """
    r = copy.deepcopy(recipe)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r} must look like KEY=VALUE (e.g. optimizer.lr=0.1)")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise RecipeError(f"--set {key}={raw}: the value is not valid YAML") from None
        number = _yaml12_number(value)
        if number is not None:  # `1e-3`: a string in YAML 1.1 (no dot), a number in YAML 1.2, JSON and Python
            try:
                check_override(r, key, number, raw)
                value = number
            except RecipeError as as_number:
                try:
                    check_override(r, key, value, raw)  # the key takes a string after all
                except RecipeError:
                    raise as_number from None
        check_override(r, key, value, raw)
        node = r
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return r


_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def _yaml12_number(value: Any) -> float | None:
    """The float that a YAML 1.2 / JSON reader sees in a string YAML 1.1 left as text (``1e-3``, ``5E4``)."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


def get_recipe(name: str, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The resolved recipe ``name`` (a fresh dict), with ``overrides`` applied."""
    recipes = all_recipes()
    if name not in recipes:
        raise RecipeError(f"unknown recipe {name!r}.{did_you_mean(name, recipes)} See `sslhub recipes` for all "
                          f"{len(recipes)} names.")
    r = apply_overrides(recipes[name], overrides)
    try:
        validate_recipe(r)
    except RecipeError as e:  # a bad value in the recipe's YAML file (the overrides were checked one by one)
        text = str(e).removeprefix(f"{name}: ")
        raise RecipeError(f"recipe {name!r} ({_source_file(r.get('method'))}): {text}") from None
    return r


def _source_file(method: Any) -> str:
    """The YAML file that defines ``method``'s recipes (for error messages)."""
    for d in recipe_dirs():
        for f in sorted(d.glob("*.yaml")):
            if f.stem in _templates() and _templates()[f.stem].get("method") == method:
                return str(f)
    return "a recipe file in " + " or ".join(str(d) for d in recipe_dirs())
