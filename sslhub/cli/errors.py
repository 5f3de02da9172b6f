"""The command line's error policy, in one place.

An *expected* failure (a bad file, option, disk, network or environment: the user can fix it) is printed as one
paragraph naming the file or option and what to do, with exit code 2 and no traceback. Anything else is a bug in
sslhub and keeps its traceback. ``--debug`` (or ``SSLHUB_DEBUG=1``) adds the traceback to expected failures too.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback

from sslhub.errors import SslhubError

__all__ = ["EXIT_ERROR", "EXPECTED", "debug_enabled", "format_error", "report"]

EXIT_ERROR = 2
# The one list of expected failures. Library errors derive from SslhubError (most also from ValueError, which
# bad option values raise too); OSError covers files (ENOENT, EACCES, ENOSPC, ...) and the network (requests',
# huggingface_hub's and filelock's errors derive from it).
EXPECTED: tuple[type[BaseException], ...] = (SslhubError, ValueError, OSError)

_HINTS = {
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied; check the permissions of the file and its folder, or choose another path",
    errno.EPERM: "operation not permitted; check the permissions of the file and its folder, or choose another path",
    errno.EROFS: "read-only file system; write to another folder",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "is a folder; pass a file",
    errno.ENOSPC: "no space left on device; free some space or write to another folder",
    errno.EFBIG: "the file size limit (ulimit -f) was reached; raise it or write a smaller file",
    errno.ENAMETOOLONG: "file name too long",
    errno.EEXIST: "already exists",
}


def debug_enabled(flag: bool = False) -> bool:
    """``--debug`` or ``SSLHUB_DEBUG`` set to 1/true/yes/on."""
    return flag or os.environ.get("SSLHUB_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def format_error(e: BaseException) -> str:
    """One paragraph for an expected failure: the library's own message, or the file and errno of an OSError."""
    if isinstance(e, OSError) and not isinstance(e, SslhubError) and e.filename is not None:
        what = _HINTS.get(e.errno or 0, e.strerror or type(e).__name__)
        names = os.fspath(e.filename) + (f" -> {os.fspath(e.filename2)}" if e.filename2 is not None else "")
        return f"{names}: {what}"
    from sslhub.hub.download import redact_text  # no query string (a presigned URL's signature) reaches the user

    text = redact_text(str(e)).strip()
    if isinstance(e, KeyError) or not text:
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def report(e: BaseException, command: str | None, debug: bool) -> int:
    """Print an expected failure for the user (with the traceback under ``debug``); return the exit code."""
    if debug:
        traceback.print_exception(e)
    print(f"sslhub {command or ''}".rstrip() + f": error: {format_error(e)}", file=sys.stderr)
    return EXIT_ERROR
