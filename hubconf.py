"""torch.hub entrypoints: one per registered pretrained weight (model card), named after the card.

    >>> import torch
    >>> torch.hub.list("<owner>/sslhub")       # GitHub only: torch.hub.list has no source="local"
    >>> model = torch.hub.load("/path/to/sslhub", "simclr_resnet50_lightly_in1k", source="local", pretrained=True)

For a local checkout, ``sslhub list`` prints the registry names and ``sslhub.hub.entrypoint_name(name)`` the
entrypoint of each.

``simclr-resnet50.lightly-in1k`` becomes ``simclr_resnet50_lightly_in1k`` (every non-alphanumeric run becomes ``_``).
``pretrained=True`` downloads through sslhub's verified fetch (cache in ``$SSLHUB_HOME``, sha256 checked against the
card before the file is used, ``SSLHUB_OFFLINE=1`` honoured) and returns ``sslhub.load_pretrained``'s eval-mode
backbone; keyword arguments go to ``load_pretrained`` (``features``, ``device``, ...), plus ``progress``.
``pretrained=False`` builds the untrained backbone with ``sslhub.backbones.create_backbone``; keyword arguments go
there (``img_size``, ...), except ``features="embedding"`` which keeps a Lightly Worker's ``num_ftrs`` conv. Both
return the model in eval mode, as ``load_pretrained`` does (call ``.train()`` to fine-tune).
"""

# Every public callable here is listed by torch.hub.list(), so helpers and imports are underscore-named.
from typing import Any as _Any
from typing import Callable as _Callable

import sslhub.hub as _hub

dependencies = ["torch", "torchvision", "numpy", "PIL", "timm", "safetensors", "huggingface_hub", "requests", "yaml",
                "filelock", "tqdm"]


def _docstring(card: "_hub.Card") -> str:
    lines = [card.summary, ""]
    for m in card.metrics:
        lines.append(f"{m.task} top-1 {m.top1:.1f}% on {m.dataset} (reported by {m.reported_by})")
    f = card.weights
    lines += [
        f"Weights: {f.url} (sha256 {f.sha256 or 'unknown: downloads are unverified'})",
        f"Training data: {card.training.data}; license: {card.license}; paper: {card.paper or '-'}",
        f"Model card: sslhub card {card.name}",
        "",
        "Args:",
        "    pretrained: load the published weights (True) or build the untrained backbone (False).",
        "    **kwargs: for sslhub.load_pretrained (features, device, ...) or, untrained, create_backbone.",
    ]
    return "\n".join(lines)


def _make_entrypoint(card_name: str) -> _Callable[..., _Any]:
    def entrypoint(pretrained: bool = True, **kwargs: _Any) -> _Any:
        card = _hub.resolve_card(card_name)
        load_kw = card.load_kwargs()
        features = kwargs.pop("features", "backbone")
        if not pretrained:
            from sslhub.backbones import create_backbone

            num_ftrs = card.num_ftrs if features == "embedding" else None
            device = kwargs.pop("device", None)
            model = create_backbone(load_kw["arch"], width=load_kw.get("width"), num_ftrs=num_ftrs,
                                    **{**card.load.timm_kwargs, **kwargs})  # fmt: skip
            model.eval()  # the same mode as load_pretrained's, whatever pretrained says
            return model.to(device) if device is not None else model
        from sslhub.loading import load_pretrained

        path = _hub.fetch_card(card, progress=kwargs.pop("progress", True))
        return load_pretrained(path, features=features, **{**load_kw, **kwargs})

    card = _hub.resolve_card(card_name)
    entrypoint.__name__ = entrypoint.__qualname__ = _hub.entrypoint_name(card_name)
    entrypoint.__doc__ = _docstring(card)
    return entrypoint


def _register() -> None:
    for name in _hub.list_pretrained():
        globals()[_hub.entrypoint_name(name)] = _make_entrypoint(name)
    for old, new in _hub.DEPRECATED_NAMES.items():  # renamed cards: the old entrypoints keep working
        if new in _hub.registry():
            globals().setdefault(_hub.entrypoint_name(old), _make_entrypoint(new))


_register()
