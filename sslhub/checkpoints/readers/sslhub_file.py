"""sslhub's own ``.safetensors`` files (``sslhub convert``, ``sslhub publish``, training runs' ``model.safetensors``).

The header (``__metadata__``) says everything: ``format: sslhub``, ``arch``, ``family``, ``width``, ``num_ftrs``,
``img_size``, ``timm_kwargs``, ``backbone_prefix``, ``layout`` (the layout the tensors were converted from, whose key
remap still applies: tensors are stored as the source file had them), ``method`` and ``out_dim``. Nothing is
inferred from the tensors. With ``prefix=`` another copy is asked for: the tensor readers after this one pick it.
"""

from __future__ import annotations

from sslhub.checkpoints.anchors import components, find_backbones, spec_from_header
from sslhub.checkpoints.readers.base import Reader
from sslhub.checkpoints.spec import Checkpoint, Detected


class SslhubFile(Reader):
    name = "sslhub"
    upstream = ""  # sslhub's own format: not another project's layout
    evaluation_copy = "the backbone_prefix its header records"

    def recognise(self, ckpt: Checkpoint, where: str, *, prefix: str | None, arch: str | None) -> Detected | None:
        spec = spec_from_header(ckpt.meta) if prefix is None else None
        if spec is None:
            return None
        meta = ckpt.meta
        chosen = meta.get("backbone_prefix", "")
        found = find_backbones(ckpt.tensors)  # other copies and heads, when the whole file was read (sslhub info)
        groups = components(ckpt.tensors, chosen, found.get(chosen)) if chosen in found else []
        return Detected(
            layout=meta.get("layout", "sslhub"),
            prefix=chosen,
            spec=spec,
            method=meta.get("method") or None,
            out_dim=int(meta["out_dim"]) if meta.get("out_dim") else None,
            components=groups,
            candidates=found,
            reader=self.name,
            why=f"safetensors header format='sslhub', arch={spec.arch!r}",
        )
