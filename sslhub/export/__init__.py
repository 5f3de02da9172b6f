"""Export backbones to torchvision, timm and Detectron2 layouts: ``sslhub.export(src, to, out)``.

See :func:`sslhub.export.api.export`. Targets:

* ``torchvision``: state dict for ``torchvision.models.resnetXX()`` / ``vit_b_16()`` (only the classifier missing),
  or ``VisionTransformer(image_size=..., patch_size=..., ...)`` for ViT sizes without a named builder (plain timm
  ViTs such as ViT-Tiny, torchvision ViTs built with other sizes); also loads into
  ``fasterrcnn_resnet50_fpn(...).backbone.body`` for ResNet-50.
* ``timm``: state dict for ``timm.create_model(arch, num_classes=0)`` (safetensors or ``.pth`` by suffix).
* ``detectron2``: ``.pkl`` for ``DetectionCheckpointer`` and ``<out>.yaml`` with the config the weights need.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from sslhub.export.api import EXPORT_TARGETS, ExportError, ExportResult, export, export_checkpoint

__all__ = ["EXPORT_TARGETS", "ExportError", "ExportResult", "export", "export_checkpoint"]


class _CallableModule(types.ModuleType):
    """Lets ``sslhub.export(...)`` work whichever of the module or the function the name ends up bound to.

    Importing this package (``from sslhub.export import ...``) makes Python bind the *module* to the attribute
    ``sslhub.export``, hiding the lazily exported *function* of the same name; calling the module forwards to it.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
