"""File helpers shared by every layer; torch-free, so the download path and the CLI stay light to import.

Every output sslhub writes goes through :func:`atomic_path`: the bytes go to a temporary file in the destination
folder, which is flushed to disk and renamed onto the destination only when complete. A crash (even ``kill -9``)
leaves the destination absent or whole, never half-written. Temporary files are named
``.<name>.sslhub-tmp-<host>-<pid>-<random>`` so that the next write into the same folder (by any command) finds the
ones a killed process left and removes them: those of a process of this host that no longer runs, and any older
than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from sslhub.errors import SslhubError, disk_full_errno, write_failed

logger = logging.getLogger(__name__)

__all__ = ["STALE_AFTER_S", "TMP_TAG", "OutputPathError", "atomic_path", "check_output_path", "clean_stale_temps",
           "is_special_file", "pid_alive", "sha256_file", "staging_dir", "write_json_atomic"]

TMP_TAG = ".sslhub-tmp-"
# A writer on another host (a shared folder) or in another pid namespace cannot be asked whether it still runs;
# its temporary file is only removed once it is this old.
STALE_AFTER_S = 6 * 3600
_TMP_RE = re.compile(r"^\..+\.sslhub-tmp-([0-9a-f]{4})-(\d+)-[0-9a-f]{8}$")
_STAGE_RE = re.compile(r"^sslhub-stage-[a-z]+-([0-9a-f]{4})-(\d+)-[0-9a-f]{8}$")


class OutputPathError(SslhubError, ValueError):
    """An output path that cannot take the output (a folder where a file is expected, an existing file without
    ``--force``)."""


def is_special_file(path: str | os.PathLike) -> bool:
    """True for a named pipe, a device or a socket (``/dev/stdout``, ``/dev/null``, a FIFO): written into, never
    replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_output_path(dst: str | os.PathLike, force: bool, *, option: str = "--force") -> None:
    """Check, before the work, that ``dst`` can take an output: not a folder, and an existing regular file only
    with ``force``. Pipes and devices are fine (they are written into)."""
    dst = Path(dst)
    if dst.is_dir():
        raise OutputPathError(f"{dst} is a folder; give a file name for the output (e.g. {dst / ('out' + (dst.suffix or '.safetensors'))})")
    if dst.exists() and not is_special_file(dst) and not force:
        raise OutputPathError(f"{dst} already exists; pass {option} to replace it")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]


def temp_path(dst: str | os.PathLike) -> Path:
    """A fresh temporary name next to ``dst`` in the pattern :func:`clean_stale_temps` recognises."""
    dst = Path(dst)
    return dst.with_name(f".{dst.name}{TMP_TAG}{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host is alive (a lock or temp file it owns is not stale)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary files that killed sslhub processes left in ``folder``; return what was removed.

    A temporary file is stale when the process that made it (same host) no longer runs, or when it is older than
    ``max_age_s``. Files of running writers and every other file are left alone. Never raises.
    """
    removed: list[Path] = []
    host, now = _host_tag(), time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if not m:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                continue
            if _is_stale(m, st.st_mtime, host, now, max_age_s):
                if stat.S_ISDIR(st.st_mode):  # a private folder for a writer with its own temp names
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run in %s", len(removed), folder)
    return removed


def _is_stale(name_match: re.Match[str], mtime: float, host: str, now: float, max_age_s: float) -> bool:
    dead = name_match.group(1) == host and not pid_alive(int(name_match.group(2)))
    return dead or now - mtime > max_age_s


@contextlib.contextmanager
def staging_dir(what: str, *, parent: str | os.PathLike | None = None,
                max_age_s: float = STALE_AFTER_S) -> Iterator[Path]:  # fmt: skip
    """A private folder under the temp dir (or ``parent``) for files staged before an upload; removed on exit.

    Named ``sslhub-stage-<what>-<host>-<pid>-<random>``, so that a process killed while staging (``kill -9`` skips
    every ``finally``) leaves a folder the next call removes: one of a process of this host that no longer runs,
    or one older than ``max_age_s``.
    """
    root = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    host, now = _host_tag(), time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            m = _STAGE_RE.match(entry.name)
            try:
                if m and entry.is_dir(follow_symlinks=False) and _is_stale(m, entry.stat(follow_symlinks=False).st_mtime,
                                                                           host, now, max_age_s):  # fmt: skip
                    shutil.rmtree(entry.path, ignore_errors=True)
                    logger.info("removed %s, left by an interrupted sslhub run", entry.path)
            except OSError:
                continue
    path = root / f"sslhub-stage-{what}-{host}-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def private_dir_for(dst: str | os.PathLike) -> Iterator[Path]:
    """A folder next to ``dst``, named like sslhub's temporary files, for a writer that makes temporary files of its
    own (safetensors' ``save_file`` writes a ``.tmpXXXXXX`` next to its target, then renames it): a ``kill -9``
    leaves the folder, which :func:`clean_stale_temps` removes like any stale temporary file. Removed on exit."""
    path = temp_path(dst)
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask() sets it, which races with other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_mode(dst: str | os.PathLike) -> int:
    """The mode an output gets: that of the file it replaces, else what the umask gives a new file."""
    try:
        return stat.S_IMODE(os.stat(dst).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _commit(tmp: Path, dst: Path) -> None:
    os.chmod(tmp, output_mode(dst))
    fd = os.open(tmp, os.O_RDONLY)
    try:  # on disk before the rename, so that a power cut cannot leave an empty file under the final name
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dst)


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dst``; rename it onto ``dst`` only if the block succeeds.

    A named pipe or a device (``/dev/stdout``) is written into, never replaced: the bytes are staged in a private
    temporary folder and copied into it once complete. A folder at ``dst`` raises :class:`OutputPathError`.

    The temporary file exists (empty) when the block starts. On any failure it is removed and ``dst`` is left as
    it was; a full disk or the file size limit raises :class:`sslhub.errors.DiskFullError` naming ``dst``, whatever
    the writer raised (``OSError``, torch's zip writer, safetensors). The output gets the mode of the file it
    replaces, else ``0o666 & ~umask`` as a file made by ``open()`` would.
    """
    dst = Path(dst)
    if is_special_file(dst):  # a pipe or a device: stage the bytes privately, then write them into it
        with staging_dir("out") as stage:
            tmp = stage / dst.name
            tmp.touch(0o600)
            yield tmp
            with open(tmp, "rb") as src, open(dst, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        return
    if dst.is_dir():
        raise OutputPathError(f"{dst} is a folder; give a file name for the output")
    dst.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(dst.parent)
    tmp = temp_path(dst)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield tmp
        _commit(tmp, dst)
    except Exception as e:
        code = disk_full_errno(e)
        _unlink_quiet(tmp)
        if code is not None:
            raise write_failed(dst, code) from None
        raise
    finally:
        _unlink_quiet(tmp)


def _unlink_quiet(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:  # pragma: no cover - e.g. the folder became read-only meanwhile
        logger.warning("could not remove the temporary file %s: %s", path, e)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (sorted keys), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
