"""Old import path of layout recognition, kept working: the rules now live in one reader each
(:mod:`sslhub.checkpoints.readers`), the tensor anchors in :mod:`sslhub.checkpoints.anchors`, and the loop over the
registry in :mod:`sslhub.checkpoints.recognise`."""

from __future__ import annotations

from sslhub.checkpoints.anchors import strip_prefix
from sslhub.checkpoints.read import unwrap_checkpoint
from sslhub.checkpoints.recognise import detect
from sslhub.checkpoints.remap import backbone_tensors
from sslhub.checkpoints.spec import BackboneSpec, Detected

__all__ = ["BackboneSpec", "Detected", "backbone_tensors", "detect", "strip_prefix", "unwrap_checkpoint"]
