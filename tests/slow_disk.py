"""Run the sslhub command line on a slow disk, for kill tests: ``python slow_disk.py FRACTION PAUSE_S ARGS...``.

Every file that safetensors (``save_file``) or ``torch.save`` writes to a path gets the same bytes as without this
module, but in two parts: the first ``FRACTION`` of them (flushed to disk), a pause of ``PAUSE_S`` seconds, then
the rest. A test that kills the process as soon as a file holds bytes then always lands mid-write, where a user's
``kill -9`` (or a power cut) hits a large write; small files (an embedding of a few images) are written in
microseconds otherwise, and a randomised kill almost never catches them.
"""

from __future__ import annotations

import io
import os
import sys
import time


def install(fraction: float, pause_s: float) -> None:
    import safetensors.torch as st
    import torch

    torch_save = torch.save

    def write_slowly(data: bytes, filename: str | os.PathLike) -> None:
        cut = min(len(data) - 1, max(1, int(len(data) * fraction)))
        with open(filename, "wb") as f:
            f.write(data[:cut])
            f.flush()
            os.fsync(f.fileno())
            time.sleep(pause_s)
            f.write(data[cut:])

    def save_file(tensors, filename, metadata=None):  # safetensors.torch.save_file
        write_slowly(st.save(tensors, metadata=metadata), filename)

    def save(obj, f, *args, **kwargs):  # torch.save
        if not isinstance(f, (str, os.PathLike)):
            return torch_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        torch_save(obj, buf, *args, **kwargs)
        write_slowly(buf.getvalue(), f)

    st.save_file = save_file
    torch.save = save


if __name__ == "__main__":
    install(float(sys.argv[1]), float(sys.argv[2]))
    from sslhub.cli import main

    sys.exit(main(sys.argv[3:]))
