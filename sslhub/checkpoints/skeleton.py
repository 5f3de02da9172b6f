"""Build a backbone around loaded tensors without constructing (or initialising) it from scratch.

Constructing a ResNet-50 runs ~540 ``nn.Module.__init__`` calls, and ``load_state_dict`` walks the tree once
more; together they cost twice as much as reading the weights. Instead, the module tree is built once per
architecture without random init and stripped of its tensors (a *skeleton*, cached), and each load makes a
structural copy of it (new module objects with their own attribute dicts, nothing constructed) and puts the
loaded tensors straight into the copies' ``_parameters`` / ``_buffers`` after checking names and shapes, which is
what ``load_state_dict(strict=True, assign=True)`` would check.

Only skeletons whose state lives entirely in persistent parameters and buffers qualify (no plain tensor
attributes, no non-persistent buffers, no hooks); :func:`assemble` returns ``None`` for the others and the
caller takes the ordinary path.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["assemble", "clear_cache"]

_MAX_SKELETONS = 16
_lock = threading.Lock()
_cache: OrderedDict[str, _Skeleton | None] = OrderedDict()
# BatchNorm's override only fills in num_batches_tracked for pre-2019 files; with exact key sets it is a no-op.
_PLAIN_LOADERS = (nn.Module._load_from_state_dict, nn.modules.batchnorm._NormBase._load_from_state_dict)


@dataclass(frozen=True)
class _Node:
    module: nn.Module  # a module of the skeleton
    containers: tuple[str, ...]  # its attributes holding dicts/lists/sets, copied per load
    children: tuple[tuple[str, int | None], ...]  # (name in _modules, index into the node list)


@dataclass(frozen=True)
class _Slot:
    node: int  # index of the owning module in the node list
    attr: str
    is_param: bool
    shape: torch.Size
    requires_grad: bool


@dataclass(frozen=True)
class _Skeleton:
    nodes: tuple[_Node, ...]  # depth-first, root first
    slots: dict[str, _Slot]  # state-dict key -> where it goes


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
          "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")  # fmt: skip


def _plan(root: nn.Module) -> _Skeleton | None:
    """Flatten the tree and map every state-dict key to its owner, or ``None`` when it cannot be copied this way."""
    index: dict[int, int] = {}
    mods: list[nn.Module] = []
    for mod in root.modules():  # depth-first, each module once
        index[id(mod)] = len(mods)
        mods.append(mod)
    nodes: list[_Node] = []
    slots: dict[str, _Slot] = {}
    seen: set[int] = set()
    for name, mod in root.named_modules(remove_duplicate=False):
        i = index[id(mod)]
        d = mod.__dict__
        if any(isinstance(v, torch.Tensor) for v in d.values()):
            return None  # tensor state outside _parameters/_buffers would be shared between copies
        if getattr(mod, "_non_persistent_buffers_set", None):
            return None  # not in state dicts, so the loaded tensors cannot fill them
        if any(d.get(h) for h in _HOOKS) or type(mod)._load_from_state_dict not in _PLAIN_LOADERS:
            return None  # hooks or custom loading logic (e.g. key remapping) must run
        if i == len(nodes):  # first visit
            containers = tuple(k for k, v in d.items() if k != "_modules" and isinstance(v, (dict, list, set)))
            children = tuple((n, None if c is None else index[id(c)]) for n, c in mod._modules.items())
            nodes.append(_Node(mod, containers, children))
        pre = f"{name}." if name else ""
        for attr, t, is_param in [*((a, p, True) for a, p in mod._parameters.items()),
                                  *((a, b, False) for a, b in mod._buffers.items())]:  # fmt: skip
            if t is None:
                continue
            if id(t) in seen:
                return None  # tied weights: two keys, one tensor; separate assignment would untie them
            seen.add(id(t))
            slots[pre + attr] = _Slot(i, attr, is_param, t.shape, is_param and t.requires_grad)
    return _Skeleton(tuple(nodes), slots)


def _skeleton(kwargs: Mapping[str, Any]) -> _Skeleton | None:
    key = json.dumps(kwargs, sort_keys=True, default=repr)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    from sslhub.backbones import create_backbone

    # create_backbone(meta=True) skips random init the cheapest way for the family (see sslhub.backbones).
    skel = _plan(create_backbone(meta=True, **kwargs))
    if skel is not None:
        for slot in skel.slots.values():  # only shapes are kept: drop the (uninitialised) storage
            owner = skel.nodes[slot.node].module
            (owner._parameters if slot.is_param else owner._buffers)[slot.attr] = None
    with _lock:
        _cache[key] = skel
        while len(_cache) > _MAX_SKELETONS:
            _cache.popitem(last=False)
    return skel


def clear_cache() -> None:
    """Forget the cached skeletons (small: module objects and shapes, no tensors)."""
    with _lock:
        _cache.clear()


def assemble(kwargs: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module | None:
    """The eval-mode backbone ``create_backbone(**kwargs)`` holding exactly ``state_dict``'s tensors (no copies).

    Returns ``None`` when the architecture does not qualify for the fast path or when ``state_dict`` does not
    fit it (missing/unexpected keys, shapes); the caller then loads the ordinary way and reports the mismatch.
    """
    skel = _skeleton(kwargs)
    if skel is None or len(state_dict) != len(skel.slots):
        return None
    for key, t in state_dict.items():
        slot = skel.slots.get(key)
        if slot is None or t.shape != slot.shape:
            return None
    # New module objects with the skeleton's attributes; containers copied so that no copy shares mutable state.
    new = [object.__new__(type(n.module)) for n in skel.nodes]
    for obj, node in zip(new, skel.nodes):
        d = node.module.__dict__.copy()
        for k in node.containers:  # torch's own (parameters, buffers, hooks) are flat; others (configs) may nest
            d[k] = d[k].copy() if k.startswith("_") else copy.deepcopy(d[k])
        d["_modules"] = {n: None if j is None else new[j] for n, j in node.children}
        d["training"] = False
        obj.__dict__.update(d)
    for key, t in state_dict.items():
        slot = skel.slots[key]
        if slot.is_param:
            new[slot.node]._parameters[slot.attr] = nn.Parameter(t, requires_grad=slot.requires_grad)
        else:
            new[slot.node]._buffers[slot.attr] = t
    return new[0]
