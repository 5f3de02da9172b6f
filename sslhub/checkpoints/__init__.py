"""The checkpoint layer: local files in, backbones out (stages 2-5 of :func:`sslhub.load_pretrained`).

:mod:`~sslhub.checkpoints.read` (file -> tensors, safely), :mod:`~sslhub.checkpoints.recognise` (the one registry
of readers, :mod:`~sslhub.checkpoints.readers`), :mod:`~sslhub.checkpoints.remap` and
:mod:`~sslhub.checkpoints.build`; plus conversion and inspection of local files. Nothing here imports the hub or
any layer above it: :mod:`sslhub.loading` resolves registry names, URLs and ``hf-hub:`` ids first.
"""
