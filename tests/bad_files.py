"""A corpus of files that are not what their name says, for the fault tests.

``bad_file_corpus(folder, good)`` writes each bad file next to nothing else and returns ``{name: (path, pattern)}``
where ``pattern`` is a regex the error message must match (besides naming the file).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 94371201\n"
)
S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Request has expired</Message>'
    "<RequestId>4442587FB7D0A2F9</RequestId></Error>"
)
HTML_PAGE = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form>password</form></body></html>\n"


class _Evil:
    """Pickles to a call of ``os.system``: loading it with plain pickle would run a command."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def _torch_zip_with(pickled: bytes, template: Path) -> bytes:
    """A torch.save zip archive whose data.pkl is ``pickled`` (the rest copied from a real archive)."""
    out = io.BytesIO()
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = pickled if info.filename.endswith("/data.pkl") else src.read(info.filename)
            dst.writestr(info, data)
    return out.getvalue()


def bad_file_corpus(folder: Path, good_ckpt: Path, good_st: Path) -> dict[str, tuple[Path, str]]:
    """Write the bad files into ``folder``; ``good_ckpt`` (torch.save zip) and ``good_st`` (safetensors) are real
    checkpoints that truncated and tampered variants are made from."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt, st = good_ckpt.read_bytes(), good_st.read_bytes()
    files: dict[str, tuple[bytes, str]] = {
        "empty.ckpt": (b"", r"is empty \(0 bytes\)"),
        "text.ckpt": (b"hello, these are not weights\n", r"is a text file, not a checkpoint"),
        "html.ckpt": (HTML_PAGE.encode(), r"is an HTML page"),
        "html.safetensors": (HTML_PAGE.encode(), r"is an HTML page"),
        "lfs.ckpt": (LFS_POINTER.encode(), r"Git LFS pointer.*git lfs pull"),
        "lfs.safetensors": (LFS_POINTER.encode(), r"Git LFS pointer.*git lfs pull"),
        "s3error.pth": (S3_ERROR.encode(), r"XML document \(AccessDenied: Request has expired\)"),
        "json.ckpt": (b'{"state_dict": {}}', r"is a JSON file"),
        "random.ckpt": (bytes(range(256)) * 8, r"match no known format"),
        "huge_header.safetensors": ((1 << 40).to_bytes(8, "little") + b'{"a": 1}', r"declares a safetensors header"),
        "tiny.safetensors": (b"\x05\x00\x00", r"too short .* to be a safetensors file"),
        "header_longer_than_file.safetensors": ((4000).to_bytes(8, "little") + b'{"x":', r"it is truncated"),
        "corrupt_header.safetensors": ((10).to_bytes(8, "little") + b'{"x": ]]]]', r"not valid JSON"),
        "malicious_pickle.ckpt": (_torch_zip_with(pickle.dumps(_Evil(), protocol=2), good_ckpt),
                                  r"pickled Python objects that are not weights"),
        "malicious_legacy.pth": (pickle.dumps(_Evil(), protocol=2), r"pickled Python objects|not a readable PyTorch"),
        "gzip.ckpt": (b"\x1f\x8b\x08\x00" + bytes(40), r"gzip-compressed"),
    }
    n = 6
    for i in range(1, n + 1):  # truncated at several offsets, from inside the header to the last byte
        cut = max(1, len(ckpt) * i // (n + 1))
        files[f"truncated_{i}.ckpt"] = (ckpt[:cut], r"truncated|not a readable PyTorch checkpoint")
        cut = max(1, len(st) * i // (n + 1)) if i > 1 else 12
        files[f"truncated_{i}.safetensors"] = (st[:cut], r"truncated")
    files["truncated_last_byte.safetensors"] = (st[:-1], r"truncated")
    files["truncated_last_byte.ckpt"] = (ckpt[:-1], r"truncated")
    out = {}
    for name, (data, pattern) in files.items():
        p = folder / name
        p.write_bytes(data)
        out[name] = (p, pattern)
    return out
