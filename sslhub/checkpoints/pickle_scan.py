"""Read the structure of a torch pickle without unpickling it, to explain a refusal.

``torch.load(weights_only=True)`` refuses files that pickle code or classes (VICReg's optimizer state holds the
function ``__main__.exclude_bias_and_norm``; mmengine stores ``HistoryBuffer`` objects in ``message_hub``). This
module walks the pickle's opcodes with :func:`pickletools.genops` and a symbolic stack, where every global is a
name and every call a placeholder: nothing is imported or called. From that it reports which globals are not
plain data, under which top-level key, and which (nested) dict holds the tensors, so that the refusal can say
exactly what to extract.
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["PickleScan", "refusal_message", "scan"]

# Modules whose globals a plain checkpoint uses (tensor rebuilds, storages, OrderedDict, numpy scalars, Namespace).
_PLAIN_MODULES = ("torch", "collections", "numpy", "argparse", "_codecs", "builtins", "copyreg")
_MAX_DEPTH = 4  # how deep to look for the dict of tensors (VISSL: classy_state_dict.base_model.model.trunk)


@dataclass
class PickleScan:
    """What a pickle holds, read symbolically."""

    top_keys: list[str] = field(default_factory=list)
    code: dict[str, list[str]] = field(default_factory=dict)  # top-level key -> non-data globals under it
    tensors_at: str | None = None  # access path of the largest dict of tensors, e.g. "['model']"
    tensors_key: str | None = None  # its dotted name, e.g. "model" or "classy_state_dict.base_model.model.trunk"
    num_tensors: int = 0


class _Global:
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


class _Obj:
    def __init__(self, func: Any, args: Any) -> None:
        self.func, self.args, self.state = func, args, None

    @property
    def is_tensor(self) -> bool:
        f = self.func
        return isinstance(f, _Global) and f.module == "torch._utils" and f.name.startswith("_rebuild_")


class _Dict:
    def __init__(self) -> None:
        self.items: list[tuple[Any, Any]] = []


_MARK = object()


def _pickle_stream(path: str | os.PathLike) -> io.BytesIO:
    """The pickle holding the object: ``<archive>/data.pkl`` of the zip format, or the 4th pickle of the legacy one."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("data.pkl"))
            return io.BytesIO(z.read(name))
    with open(path, "rb") as fh:  # legacy: magic, protocol, sys_info, then the object; tensor bytes follow it
        f = io.BytesIO(fh.read(64 << 20))
    for _ in range(3):
        for op, _arg, _pos in pickletools.genops(f):
            if op.name == "STOP":
                break
    return io.BytesIO(f.read())


def _run(stream: io.BytesIO) -> Any:
    stack: list[Any] = []
    memo: dict[Any, Any] = {}

    def to_mark() -> list[Any]:
        i = len(stack) - 1 - next(i for i, x in enumerate(reversed(stack)) if x is _MARK)
        items = stack[i + 1 :]
        del stack[i:]
        return items

    for op, arg, _pos in pickletools.genops(stream):
        n = op.name
        if n in ("PROTO", "FRAME"):
            continue
        if n == "STOP":
            break
        if n == "MARK":
            stack.append(_MARK)
        elif n in ("EMPTY_DICT",):
            stack.append(_Dict())
        elif n in ("EMPTY_LIST",):
            stack.append([])
        elif n in ("EMPTY_TUPLE",):
            stack.append(())
        elif n == "EMPTY_SET":
            stack.append([])
        elif n in ("TUPLE", "FROZENSET"):
            stack.append(tuple(to_mark()))
        elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
            k = int(n[-1])
            items = tuple(stack[-k:])
            del stack[-k:]
            stack.append(items)
        elif n == "LIST":
            stack.append(to_mark())
        elif n == "DICT":
            items = to_mark()
            d = _Dict()
            d.items = list(zip(items[::2], items[1::2]))
            stack.append(d)
        elif n == "APPEND":
            v = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(v)
        elif n in ("APPENDS", "ADDITEMS"):
            items = to_mark()
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif n == "SETITEM":
            v, k = stack.pop(), stack.pop()
            if isinstance(stack[-1], _Dict):
                stack[-1].items.append((k, v))
        elif n == "SETITEMS":
            items = to_mark()
            if isinstance(stack[-1], _Dict):
                stack[-1].items.extend(zip(items[::2], items[1::2]))
        elif n in ("GLOBAL", "INST"):
            module, name = str(arg).split(" ", 1) if " " in str(arg) else (str(arg), "")
            g = _Global(module, name)
            stack.append(_Obj(g, tuple(to_mark())) if n == "INST" else g)
        elif n == "STACK_GLOBAL":
            name, module = stack.pop(), stack.pop()
            stack.append(_Global(str(module), str(name)))
        elif n == "OBJ":
            items = to_mark()
            stack.append(_Obj(items[0], tuple(items[1:])) if items else None)
        elif n == "REDUCE" or n == "NEWOBJ":
            args, func = stack.pop(), stack.pop()
            if isinstance(func, _Global) and func.qualname == "collections.OrderedDict":
                stack.append(_Dict())  # state dicts: filled by the SETITEMS that follow
            else:
                stack.append(_Obj(func, args))
        elif n == "NEWOBJ_EX":
            _kw, args, func = stack.pop(), stack.pop(), stack.pop()
            stack.append(_Obj(func, args))
        elif n == "BUILD":
            state = stack.pop()
            if isinstance(stack[-1], _Obj):
                stack[-1].state = state
        elif n in ("BINPERSID",):
            stack[-1] = ("persistent", stack[-1])
        elif n == "PERSID":
            stack.append(("persistent", arg))
        elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif n == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif n in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif n == "POP":
            stack.pop()
        elif n == "POP_MARK":
            to_mark()
        elif n == "DUP":
            stack.append(stack[-1])
        elif n in ("EXT1", "EXT2", "EXT4"):
            stack.append(_Global("copyreg-extension", str(arg)))
        else:  # constants: ints, floats, strings, bytes, None, booleans
            stack.append(arg if n not in ("NONE", "NEWTRUE", "NEWFALSE") else {"NONE": None, "NEWTRUE": True,
                                                                                  "NEWFALSE": False}[n])  # fmt: skip
    return stack[-1] if stack else None


def _walk(x: Any, seen: set[int]) -> Iterator[Any]:
    """Every node under ``x`` (globals and objects included), each once."""
    if id(x) in seen:
        return
    seen.add(id(x))
    yield x
    if isinstance(x, _Dict):
        for k, v in x.items:
            yield from _walk(k, seen)
            yield from _walk(v, seen)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _walk(v, seen)
    elif isinstance(x, _Obj):
        for part in (x.func, x.args, x.state):
            yield from _walk(part, seen)


def _code_globals(x: Any) -> list[str]:
    names = {n.qualname for n in _walk(x, set()) if isinstance(n, _Global)}
    return sorted(n for n in names if not n.startswith(tuple(m + "." for m in _PLAIN_MODULES)))


def _tensor_dicts(x: Any, path: tuple[str, ...], depth: int) -> Iterator[tuple[tuple[str, ...], int]]:
    if not isinstance(x, _Dict) or depth > _MAX_DEPTH:
        return
    n = sum(1 for _k, v in x.items if isinstance(v, _Obj) and v.is_tensor)
    if n:
        yield path, n
    for k, v in x.items:
        if isinstance(k, str):
            yield from _tensor_dicts(v, (*path, k), depth + 1)


def scan(path: str | os.PathLike) -> PickleScan:
    """Read ``path``'s pickle symbolically (nothing is imported or executed)."""
    root = _run(_pickle_stream(path))
    out = PickleScan()
    if isinstance(root, _Dict):
        out.top_keys = [str(k) for k, _v in root.items]
        for k, v in root.items:
            code = _code_globals(v)
            if code:
                out.code[str(k)] = code
    best = max(_tensor_dicts(root, (), 0), key=lambda pn: pn[1], default=None)
    if best is not None:
        keys, out.num_tensors = best
        out.tensors_at = "".join(f"[{k!r}]" for k in keys)
        out.tensors_key = ".".join(keys) or "<root>"
    return out


def refusal_message(path: str | os.PathLike, detail: str = "") -> str:
    """Why ``path`` is refused and the one-liner that extracts its tensors (in a trusted environment)."""
    try:
        s = scan(path)
    except Exception:  # a pickle this reader does not follow: fall back to torch's own detail
        s = None
    what = detail or "unsupported global"
    if s is not None and s.code:
        what = "; ".join(f"{', '.join(g[:3])} under {k!r}" for k, g in s.code.items())
    msg = (
        f"{path} contains pickled Python objects that are not weights (code or classes: {what}). sslhub never "
        "unpickles them (torch.load(weights_only=True)). "
    )
    at = s.tensors_at if s is not None and s.tensors_at else "['state_dict']"
    if s is not None and s.tensors_key:
        msg += f"The weights are under {s.tensors_key!r} ({s.num_tensors} tensors). "
    name = os.fspath(path)
    msg += (
        "If you trust the file's origin, extract them in a trusted environment and load the result:\n"
        f"  python -c \"import torch, safetensors.torch as st; c = torch.load({name!r}, map_location='cpu', "
        f"weights_only=False); st.save_file({{k: v.clone().contiguous() for k, v in c{at}.items()}}, "
        "'model.safetensors')\""
    )
    return msg
