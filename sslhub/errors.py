"""The errors sslhub raises for problems the user can fix (a bad file, option or environment).

Every such error carries a message that names the file or option and says what to do; the command line prints it
as one paragraph with exit code 2 and no traceback (``sslhub.cli.errors``). Anything else that escapes is a bug and
keeps its traceback. Torch-free, so that every layer (downloads, the CLI) can import it.
"""

from __future__ import annotations

import errno
import os

__all__ = ["DiskFullError", "SslhubError", "disk_full_errno", "write_failed"]


class SslhubError(Exception):
    """Base class of the errors whose message is meant for the user (no traceback on the command line)."""


class DiskFullError(SslhubError, OSError):
    """Writing an output failed for lack of space (ENOSPC, EDQUOT) or the file size limit (EFBIG, ``ulimit -f``).

    The temporary file was removed and the destination is untouched."""

    def __str__(self) -> str:
        return str(self.strerror)


_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def disk_full_errno(e: BaseException) -> int | None:
    """The errno if ``e`` (or what it wraps) is a disk-full / file-too-large error, else ``None``.

    Also reads the messages of writers that do not raise ``OSError``: ``torch.save`` (``RuntimeError: [enforce
    fail at inline_container.cc] ... file write failed``) and safetensors (``SafetensorError: ... Os { code: 28``).
    """
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL:
            return e.errno
        text = str(e)
        if "inline_container.cc" in text and ("file write failed" in text or "unexpected pos" in text):
            # torch's zip writer does not keep the errno; a failed write of a local file is a full disk or quota
            return errno.ENOSPC
        for code in _FULL:
            if f"code: {code}," in text or os.strerror(code) in text:
                return code
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return None


def write_failed(dst: os.PathLike | str, code: int) -> DiskFullError:
    """The :class:`DiskFullError` for a failed write of ``dst``."""
    why = " (the file size limit, ulimit -f, was reached)" if code == errno.EFBIG else ""
    return DiskFullError(
        code,
        f"no space left on device writing {os.fspath(dst)}{why}; nothing was written: the temporary file was "
        "removed and any existing file of that name is unchanged. Free some space, or write to another folder",
        os.fspath(dst),
    )
