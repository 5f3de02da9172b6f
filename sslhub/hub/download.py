"""Verified, resumable, cached HTTP(S) downloads of weight files.

* Cache: ``$SSLHUB_HOME/downloads/<host>/<key>/<filename>`` (default ``~/.cache/sslhub``). The key is derived from
  the URL *without* its query string, so a fresh presigned URL for the same object finds the cached file.
* Resume: an interrupted download leaves ``<file>.part``; the next attempt asks for the rest with ``Range`` and
  ``If-Range`` (the ETag, else Last-Modified, of the first response). A server whose file changed answers 200 with
  the whole new file, and the download starts over from it. Without a validator nothing is resumed.
* Verification: the sha256 (and size, where known) is checked *before* the file is renamed into the cache; a
  mismatch deletes the download and raises :class:`HashMismatchError`. Without a known sha256 the first download
  is trusted (trust on first use, as a lock file pins what it first saw): a warning says the file is unverified and
  prints its digest, and the digest, size and mtime are recorded next to the file (``<file>.sslhub.json``). Every
  later use compares size and mtime with that record (cheap) and re-hashes the file when they differ;
  ``verify=True`` (``sslhub fetch --verify``) always re-hashes. A cached file that does not match is never served:
  it is deleted and downloaded again, and the new download must match the recorded digest (pass its sha256
  explicitly to accept a file the publisher replaced). A cached file whose record is missing or damaged is never
  trusted again: it is deleted and downloaded again. A file of a format that shows its own end (safetensors,
  torch.save's zip) is checked to be whole, and an HTML page or a Git LFS pointer is never cached as weights.
* Concurrency: a file lock (``filelock``) per cached file; a second process waits and then uses the finished file.
* Failures: timeouts, connections cut mid-transfer and 408/429/5xx answers are retried with exponential backoff,
  resuming where the last attempt stopped. A refused connection and a host name that does not resolve (offline,
  wrong URL) fail at once: retrying them only makes the user wait. Timeouts are huggingface_hub's: 10 s to
  connect and 10 s without a byte (``SSLHUB_DOWNLOAD_TIMEOUT`` changes both, as ``HF_HUB_DOWNLOAD_TIMEOUT``
  does), so a stalled server is given up after at most (retries + 1) x 10 s plus the backoff (about 1.5 min with
  the defaults). A ``Retry-After`` up to 30 s is honoured; a longer one fails at once, saying when to try again.
* Bytes are stored as the server sent them (``Accept-Encoding: identity``; a ``Content-Encoding`` the server
  applies anyway is not undone, as pip does), so sizes and digests are those of the bytes sent. A file larger than
  the free space of the cache's disk is refused before the first byte.
* Offline: ``SSLHUB_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) uses the cache and fails clearly when the file is not
  there.
* Presigned S3/GCS read-URLs: only ``GET`` with the URL exactly as given (never ``HEAD``, which the signature does
  not cover), and the query string (the signature) never appears in logs or error messages: every error that
  can hold a URL (a bad port, a redirect to another scheme, requests' and urllib3's own messages) goes through
  :func:`redact_text`.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import re
import shutil
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sslhub._files import sha256_file, write_json_atomic
from sslhub._version import __version__
from sslhub.errors import SslhubError, disk_full_errno

logger = logging.getLogger(__name__)

__all__ = [
    "DownloadError",
    "HashMismatchError",
    "OfflineError",
    "cache_path",
    "fetch_url",
    "is_offline",
    "offline_variable",
    "redact_text",
    "redact_url",
    "sslhub_home",
]

ENV_HOME = "SSLHUB_HOME"
ENV_OFFLINE = "SSLHUB_OFFLINE"
ENV_HF_OFFLINE = "HF_HUB_OFFLINE"
_TRUE = ("1", "true", "yes", "on")
_RETRY_STATUS = (408, 425, 429, 500, 502, 503, 504)
# small network reads: urllib3 drops the bytes of a read that a cut connection interrupts, so keep them few
_NET_CHUNK = 1 << 16
_MAX_BACKOFF = 30.0
_MAX_RETRY_AFTER = 30.0  # a longer Retry-After fails at once (with the time to wait) instead of blocking the user
ENV_TIMEOUT = "SSLHUB_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 10.0  # huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT; pip's is 15 s


class DownloadError(SslhubError, ValueError):
    """A download that failed. The message names the URL (without its query string) and what to do."""


class HashMismatchError(DownloadError):
    """The downloaded bytes do not have the expected sha256 or size; the file was deleted."""


class OfflineError(DownloadError):
    """``SSLHUB_OFFLINE=1`` and the file is not in the cache."""


def sslhub_home() -> Path:
    """The cache root: ``$SSLHUB_HOME``, else ``$XDG_CACHE_HOME/sslhub``, else ``~/.cache/sslhub``."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sslhub"


def offline_variable() -> str | None:
    """The variable that makes sslhub offline: ``SSLHUB_OFFLINE``, or ``HF_HUB_OFFLINE`` (one switch for both
    hubs, as huggingface_hub users expect), when set to 1/true/yes/on; else None."""
    for var in (ENV_OFFLINE, ENV_HF_OFFLINE):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def is_offline() -> bool:
    """True when ``SSLHUB_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on."""
    return offline_variable() is not None


def redact_url(url: str) -> str:
    """The URL without credentials, query string and fragment (safe to log for presigned URLs)."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = p.port
    except ValueError:  # malformed port: show none rather than fail while reporting an error
        port = None
    netloc = host + (f":{port}" if port else "")
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", "")) + ("?<query redacted>" if p.query else "")


_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`): for messages of other libraries that quote the
    URL they failed on (requests, urllib3)."""
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)


def default_timeout() -> tuple[float, float]:
    """(connect, read) timeouts in seconds: ``$SSLHUB_DOWNLOAD_TIMEOUT`` for both, else 10 s (huggingface_hub's)."""
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT, DEFAULT_TIMEOUT
    try:
        value = float(raw)
        if not value > 0 or value == float("inf"):
            raise ValueError
    except ValueError:
        raise DownloadError(f"{ENV_TIMEOUT}={raw!r}: expected a number of seconds > 0, e.g. 30") from None
    return value, value


def _retry_after(value: str) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), ``None`` when absent or unreadable."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when is not None else None


def _url_key(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme.lower(), (p.netloc.rpartition("@")[2]).lower(), p.path, "", ""))


def _default_filename(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rpartition("/")[2])
    return _safe_filename(name or "download")


def _safe_filename(name: str) -> str:
    name = re.sub(r"[\x00-\x1f/\\]", "_", name).strip()
    if name in ("", ".", ".."):
        raise DownloadError(f"{name!r} is not a usable file name; pass filename=...")
    return name


def cache_path(url: str, filename: str | None = None) -> Path:
    """Where :func:`fetch_url` keeps the file for ``url`` (the query string does not change the location)."""
    key = _url_key(url)
    host = re.sub(r"[^A-Za-z0-9._-]", "_", urllib.parse.urlsplit(key).netloc) or "local"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return sslhub_home() / "downloads" / host / digest / _safe_filename(filename or _default_filename(url))


# ----------------------------------------------------------------------------------------------------------------
# small helpers (kept torch-free: this module is imported by the CLI and by every download process)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        return {}


def _unlink(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


class _RedactQueryFilter(logging.Filter):
    """Strips query strings from urllib3's debug lines (``"GET /key?X-Amz-Signature=... HTTP/1.1"``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                a.split("?", 1)[0] + "?<query redacted>" if isinstance(a, str) and "?" in a else a for a in record.args
            )
        if isinstance(record.msg, str) and "?" in record.msg and "://" in record.msg:
            record.msg = re.sub(r"\?[^\s\"']*", "?<query redacted>", record.msg)
        return True


_URLLIB3_FILTER = _RedactQueryFilter()


def _install_log_filter() -> None:
    for name in ("urllib3.connectionpool", "urllib3.util.retry"):
        lg = logging.getLogger(name)
        if _URLLIB3_FILTER not in lg.filters:
            lg.addFilter(_URLLIB3_FILTER)


# ----------------------------------------------------------------------------------------------------------------
# one attempt


class _Retryable(Exception):
    """An attempt failed in a way that a later attempt may fix (network, cut connection, 5xx/429)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class _Paths:
    final: Path

    @property
    def part(self) -> Path:
        return self.final.with_name(self.final.name + ".part")

    @property
    def part_meta(self) -> Path:
        return self.final.with_name(self.final.name + ".part.json")

    @property
    def meta(self) -> Path:
        return self.final.with_name(self.final.name + ".sslhub.json")

    @property
    def lock(self) -> Path:
        return self.final.with_name(self.final.name + ".lock")


def _server_error(resp: Any, shown: str) -> str:
    # S3/GCS put a short <Code>/<Message> in the XML body; nothing else of the body is shown (it may echo the
    # canonical request, which contains the query string).
    detail = ""
    try:
        body = resp.raw.read(4096, decode_content=True) or b""
        text = body.decode("utf-8", "replace")
        code = re.search(r"<Code>([^<]{1,100})</Code>", text)
        msg = re.search(r"<Message>([^<]{1,300})</Message>", text)
        if code:
            detail = f" ({code.group(1)}" + (f": {msg.group(1)}" if msg else "") + ")"
    except Exception:  # the body is only a hint
        pass
    hint = ""
    if resp.status_code in (401, 403):
        hint = " Presigned URLs expire: ask for a fresh one; private files need credentials in the URL."
    elif resp.status_code == 404:
        hint = " Check the URL (or the card's url) and that the object still exists."
    return f"HTTP {resp.status_code} {resp.reason or ''} for {shown}{detail}.{hint}"


def _unreachable(e: BaseException) -> str | None:
    """Why a connection attempt cannot succeed on retry (refused, name does not resolve), else ``None``."""
    import socket
    import ssl

    seen: set[int] = set()
    stack: list[Any] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, ConnectionRefusedError):
            return "connection refused (no server listens there)"
        if isinstance(x, socket.gaierror):
            return "the host name does not resolve (offline, or a wrong host)"
        if type(x).__name__ == "NameResolutionError":
            return "the host name does not resolve (offline, or a wrong host)"
        if isinstance(x, ssl.SSLCertVerificationError):
            return f"its TLS certificate cannot be verified ({x.verify_message or x}); check REQUESTS_CA_BUNDLE or the URL"
        reason = getattr(x, "reason", None)  # urllib3 errors keep the cause here; SSL errors keep a string
        stack += [x.__cause__, x.__context__, reason if isinstance(reason, BaseException) else None]
        stack += [a for a in getattr(x, "args", ()) if isinstance(a, BaseException)]
    return None


def _not_weights(paths: _Paths, shown: str, content_type: str) -> None:
    """Refuse a body that is an HTML page or a Git LFS pointer (a login page, a raw link to an LFS file)."""
    from sslhub.checkpoints.sniff import sniff

    kind = sniff(paths.part)
    if kind not in ("html", "lfs-pointer") and not (content_type.startswith("text/html") and kind == "text"):
        return
    _unlink(paths.part, paths.part_meta)
    what = "a Git LFS pointer (use the LFS media URL)" if kind == "lfs-pointer" else (
        "an HTML page (a login or error page, or an expired link?)")
    raise DownloadError(f"{shown}: the server sent {what} instead of the file; nothing was cached. Check the URL")


def _attempt(session: Any, url: str, paths: _Paths, *, timeout: Any, progress: bool, desc: str, shown: str) -> int:
    """Download (the rest of) ``url`` into ``paths.part``; return the number of bytes now in the part file."""
    import requests
    from tqdm.auto import tqdm

    part_meta = _read_json(paths.part_meta)
    offset = paths.part.stat().st_size if paths.part.exists() else 0
    validator = part_meta.get("etag") or part_meta.get("last_modified")
    if offset and not validator:
        logger.info("%s: partial download without ETag/Last-Modified cannot be resumed safely; starting over", shown)
        _unlink(paths.part, paths.part_meta)
        offset = 0

    headers = {"User-Agent": f"sslhub/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = validator
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True)
    except (requests.ConnectionError, requests.Timeout) as e:
        why = None if isinstance(e, requests.Timeout) else _unreachable(e)
        if why:
            host = urllib.parse.urlsplit(url).netloc.rpartition("@")[2]
            raise DownloadError(f"{shown}: cannot connect to {host}: {why}. Check the network and the URL; "
                                f"{ENV_OFFLINE}=1 uses cached files only") from None
        raise _Retryable(f"{type(e).__name__} while connecting") from None
    except (requests.RequestException, ValueError) as e:  # a bad port, a redirect to ftp:// ...: never retried
        raise DownloadError(f"{shown}: the request cannot be made: {redact_text(str(e))} ({type(e).__name__}). "
                            "Check the URL") from None

    with resp:
        status = resp.status_code
        if status == 416 and offset:
            total = _content_range_total(resp.headers.get("Content-Range", ""))
            if total == offset:  # the previous attempt had everything; it only was not verified yet
                return offset
            logger.info("%s: server rejects resuming at byte %d (file has %s bytes); starting over", shown, offset,
                        total)
            _unlink(paths.part, paths.part_meta)
            raise _Retryable("range not satisfiable", retry_after=0.0)
        if status in _RETRY_STATUS:
            wait = _retry_after(resp.headers.get("Retry-After", ""))
            if wait is not None and wait > _MAX_RETRY_AFTER:
                raise DownloadError(f"HTTP {status} for {shown}: the server asks to wait {wait:.0f} s before trying "
                                    f"again (Retry-After), more than the {_MAX_RETRY_AFTER:.0f} s sslhub waits. Try "
                                    "again later")
            raise _Retryable(f"HTTP {status}", retry_after=wait)
        if status >= 400:
            raise DownloadError(_server_error(resp, shown))
        if status == 206 and offset:
            start = _content_range_start(resp.headers.get("Content-Range", ""))
            if start != offset:
                logger.info("%s: server answered an unexpected range (%s); starting over", shown,
                            resp.headers.get("Content-Range"))
                _unlink(paths.part, paths.part_meta)
                raise _Retryable("unexpected Content-Range", retry_after=0.0)
            mode = "ab"
            logger.info("%s: resuming at byte %d", shown, offset)
        elif status == 200:
            if offset:
                logger.info("%s: the file on the server changed since the partial download (If-Range did not "
                            "match) or the server ignores ranges; downloading it again from the start", shown)
            offset, mode = 0, "wb"
            etag = resp.headers.get("ETag")
            write_json_atomic(paths.part_meta, {
                "url": shown,
                # weak ETags may not be used for ranges (RFC 9110 13.1.5); fall back to Last-Modified
                "etag": etag if etag and not etag.startswith("W/") else None,
                "last_modified": resp.headers.get("Last-Modified"),
            })
        else:
            raise DownloadError(f"unexpected HTTP {status} for {shown}; expected 200 or 206")

        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        if encoding != "identity":
            logger.warning("%s: the server sent the body with Content-Encoding: %s although sslhub asked for identity; "
                           "it is stored as sent, not decompressed (as pip does)", shown, encoding)
        if total is not None:
            _check_free_space(paths.part, total - offset, shown)
        written = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                   disable=None if progress else True, leave=False)
        try:
            with open(paths.part, mode) as f:
                # raw bytes as sent: requests' iter_content would undo a Content-Encoding (a 64 KB gzip body of
                # zeros becomes 64 MiB on disk, and Content-Length no longer matches)
                for block in resp.raw.stream(_NET_CHUNK, decode_content=False):
                    f.write(block)
                    written += len(block)
                    bar.update(len(block))
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            raise _Retryable(f"connection lost after {written} bytes ({type(e).__name__})") from None
        except _urllib3_errors() as e:  # raw.stream raises urllib3's own errors, not requests' wrappers
            kind = "timed out" if "Timeout" in type(e).__name__ else "connection lost"
            raise _Retryable(f"{kind} after {written} bytes ({type(e).__name__})") from None
        except OSError as e:
            if disk_full_errno(e) is None:
                raise
            raise DownloadError(
                f"no space left on device writing {paths.part} ({written} bytes so far are kept; the next fetch resumes "
                f"from there). Free some space, or set {ENV_HOME} to a folder on another disk"
            ) from None
        finally:
            bar.close()
        if total is not None and written != total:
            raise _Retryable(f"connection closed after {written} of {total} bytes")
        _not_weights(paths, shown, resp.headers.get("Content-Type", ""))
        from sslhub.checkpoints.sniff import is_complete

        whole = is_complete(paths.part)
        if whole is False:  # the server sent no length (or a wrong one): the format itself shows a missing end
            _unlink(paths.part, paths.part_meta)
            raise _Retryable(f"the file is truncated after {written} bytes (its own structure says so; the server "
                             f"sent {'no length' if total is None else 'a wrong length'})", retry_after=0.0)
        if total is None and whole is None:
            logger.warning("%s: the server sent no length and the file's format cannot show its end, so a cut "
                           "transfer would go unnoticed; check the digest below against the publisher's", shown)
        return written


def _urllib3_errors() -> tuple[type[BaseException], ...]:
    from urllib3 import exceptions as u

    return (u.ProtocolError, u.ReadTimeoutError, u.IncompleteRead, u.DecodeError, u.SSLError)


def _check_free_space(part: Path, need: int, shown: str) -> None:
    """Refuse up front a download larger than the free space of the cache's disk (the bytes would be lost at the
    end otherwise)."""
    try:
        free = shutil.disk_usage(part.parent).free
    except OSError:
        return
    if need > free:
        raise DownloadError(
            f"{shown}: the file needs {need / 2**20:.1f} MiB more but {part.parent} has {free / 2**20:.1f} MiB free; "
            f"nothing was downloaded. Free some space, or set {ENV_HOME} to a folder on another disk"
        )


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value.strip())
    return int(m.group(1)) if m else None


def _content_range_total(value: str) -> int | None:
    m = re.match(r"bytes [^/]*/(\d+)", value.strip())
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------------------------------------------
# public entry point


def _record(paths: _Paths, meta: dict[str, Any], **changes: Any) -> None:
    st = paths.final.stat()
    write_json_atomic(paths.meta, {**meta, **changes, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def _cached_ok(paths: _Paths, sha256: str | None, size: int | None, shown: str, *, verify: bool = False) -> bool:
    """True when the cached file may be served. A file that does not match what is expected of it (the given
    sha256/size, else the record of its first download) is deleted, so that it is never served."""
    if not paths.final.is_file():
        return False
    st = paths.final.stat()
    meta = _read_json(paths.meta)
    recorded = meta.get("sha256")
    if not (isinstance(recorded, str) and re.fullmatch(r"[0-9a-f]{64}", recorded)):
        meta, recorded = {}, None
        if sha256 is None:  # no record, or a damaged one: what the file should be is unknown, so it is not served
            logger.warning("%s: the record of cached %s (%s) is %s; the file is deleted and downloaded again", shown,
                           paths.final, paths.meta, "damaged" if paths.meta.exists() else "missing")
            _unlink(paths.final, paths.meta)
            return False
    expected = sha256 or recorded
    want_size = size if size is not None else (meta.get("size") if sha256 is None else None)
    if want_size is not None and st.st_size != want_size:
        logger.warning("%s: cached file %s has %d bytes, expected %d; it is deleted and downloaded again", shown,
                       paths.final, st.st_size, want_size)
        _unlink(paths.final)
        return False
    unchanged = meta.get("sha256") == expected and meta.get("size") == st.st_size and meta.get("mtime_ns") == st.st_mtime_ns
    if unchanged and not verify:
        return True
    digest = sha256_file(paths.final)  # the file changed since it was recorded, or a check was asked for
    if digest == expected:
        verified = bool(meta.get("verified")) or (sha256 is not None)
        _record(paths, meta, sha256=digest, verified=verified)
        logger.info("%s: sha256 %s of %s matches %s", shown, digest, paths.final,
                    "the expected one" if sha256 else f"its first download ({meta.get('downloaded', '?')})")
        return True
    logger.warning("%s: cached file %s has sha256 %s, expected %s (%s); it is deleted and downloaded again", shown,
                   paths.final, digest, expected, "given" if sha256 else "recorded at its first download")
    _unlink(paths.final)
    return False


def fetch_url(
    url: str,
    *,
    sha256: str | None = None,
    size: int | None = None,
    filename: str | None = None,
    mirrors: Iterable[str] = (),
    label: str | None = None,
    force: bool = False,
    verify: bool = False,
    progress: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float | tuple[float, float] | None = None,
) -> Path:
    """Download ``url`` into the sslhub cache (or find it there) and return the local path.

    Args:
        url: ``http(s)://`` URL, used exactly as given (presigned S3/GCS read-URLs work unchanged).
        sha256: expected hex digest. Checked before the file enters the cache; a mismatch deletes the download and
            raises :class:`HashMismatchError`. ``None``: the first download is trusted (a warning with its digest)
            and its digest recorded; later downloads of the URL must match that record.
        size: expected size in bytes (checked like ``sha256``), if known.
        filename: name of the cached file (default: the last URL path component).
        mirrors: other URLs with the same content, tried in order when ``url`` fails (not on a hash mismatch).
        label: what to call the file in messages (e.g. a registry name); default the URL without query.
        force: download again even if the file is cached (the cached file is replaced only once verified).
        verify: re-hash a cached file even when its size and mtime match the record.
        progress: show a tqdm progress bar (on terminals).
        retries: further attempts per URL after network errors, cut connections, 408/429/5xx.
        backoff: seconds before the first retry; doubled each time (at most 30 s).
        timeout: requests timeout (connect, read) in seconds; default ``$SSLHUB_DOWNLOAD_TIMEOUT``, else 10 s each
            (huggingface_hub's). A stalled server is given up after ``(retries + 1) * read`` seconds plus backoff.

    Raises:
        DownloadError: the server refused (4xx) or every attempt failed. ``OfflineError`` when ``SSLHUB_OFFLINE=1``
            and the file is not cached; ``HashMismatchError`` when the bytes are not the expected ones.
    """
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{redact_url(url)}: only http:// and https:// URLs can be downloaded")
    if sha256 is not None:
        sha256 = sha256.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    _install_log_filter()
    if timeout is None:
        timeout = default_timeout()
    shown = label or redact_url(url)
    paths = _Paths(cache_path(url, filename))

    if not force and _cached_ok(paths, sha256, size, shown, verify=verify):
        logger.debug("%s: using cached %s", shown, paths.final)
        return paths.final
    var = offline_variable()
    if var:
        raise OfflineError(
            f"{shown} is not in the sslhub cache ({paths.final}) and {var}=1 forbids downloading it. "
            f"Fetch it once while online (`sslhub fetch {label or 'URL'}`), or unset {var}."
        )

    from filelock import FileLock, Timeout

    try:
        paths.final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"cannot create the cache folder {paths.final.parent}: {e.strerror}. The cache root {sslhub_home()} (from "
            f"${ENV_HOME}, else ~/.cache/sslhub) must be a folder you can write: set {ENV_HOME} to one"
        ) from None
    lock = FileLock(str(paths.lock))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("%s: another process is downloading it; waiting for %s", shown, paths.lock)
        lock.acquire()
    try:
        # another process may have finished it while we waited for the lock
        if not force and _cached_ok(paths, sha256, size, shown, verify=verify):
            return paths.final
        pin = None if sha256 else _read_json(paths.meta).get("sha256")  # what the first download was
        if force:
            _unlink(paths.part, paths.part_meta)
        errors: list[str] = []
        for i, candidate in enumerate((url, *mirrors)):
            cshown = label + f" ({redact_url(candidate)})" if label else redact_url(candidate)
            if i:  # never splice one server's partial file onto another's bytes
                _unlink(paths.part, paths.part_meta)
            try:
                _download_with_retries(candidate, paths, cshown, progress=progress, retries=retries, backoff=backoff,
                                       timeout=timeout)
            except HashMismatchError:
                raise
            except DownloadError as e:
                errors.append(str(e))
                continue
            _verify_and_commit(paths, candidate, sha256=sha256, size=size, shown=cshown, pin=pin,
                               pinned_at=_read_json(paths.meta).get("downloaded"))
            return paths.final
        raise DownloadError("; ".join(errors) if len(errors) == 1 else "all URLs failed: " + " | ".join(errors))
    finally:
        lock.release()


def _download_with_retries(url: str, paths: _Paths, shown: str, *, progress: bool, retries: int, backoff: float,
                           timeout: Any) -> None:
    import requests

    desc = paths.final.name if len(paths.final.name) <= 40 else paths.final.name[:37] + "..."
    with requests.Session() as session:
        attempt = 0
        while True:
            try:
                _attempt(session, url, paths, timeout=timeout, progress=progress, desc=desc, shown=shown)
                return
            except _Retryable as e:
                if attempt >= retries:
                    have = paths.part.stat().st_size if paths.part.exists() else 0
                    raise DownloadError(
                        f"{shown}: download failed after {attempt + 1} attempt(s): {e}. "
                        + (f"{have} bytes are kept in {paths.part} and the next fetch resumes from there."
                           if have else "Check the network and the URL, then try again.")
                    ) from None
                delay = e.retry_after if e.retry_after is not None else min(backoff * 2**attempt, _MAX_BACKOFF)
                attempt += 1
                logger.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", shown, e, delay, attempt + 1,
                               retries + 1)
                time.sleep(delay)


def _verify_and_commit(paths: _Paths, url: str, *, sha256: str | None, size: int | None, shown: str,
                       pin: str | None = None, pinned_at: str | None = None) -> None:
    got_size = paths.part.stat().st_size
    digest = sha256_file(paths.part)
    problem = None
    if size is not None and got_size != size:
        problem = f"size {got_size} bytes, expected {size}"
    elif sha256 is not None and digest != sha256:
        problem = f"sha256 {digest}, expected {sha256}"
    if problem:
        _unlink(paths.part, paths.part_meta)
        raise HashMismatchError(
            f"{shown}: the downloaded file has {problem}; it was deleted and nothing was cached. The server may "
            "serve a different or corrupted file: do not use it. If the publisher replaced the file on purpose, "
            "the card/checksum must be updated."
        )
    if pin is not None and digest != pin:
        _unlink(paths.part, paths.part_meta)
        raise HashMismatchError(
            f"{shown}: the server now sends a file with sha256 {digest}, but the first download ({pinned_at or '?'}) "
            f"had {pin}; it was deleted and nothing was cached. If the publisher replaced the file on purpose, accept "
            f"the new one explicitly: `sslhub fetch ... --sha256 {digest}` (sha256=...)."
        )
    part_meta = _read_json(paths.part_meta)
    os.replace(paths.part, paths.final)
    st = paths.final.stat()
    write_json_atomic(paths.meta, {
        "url": redact_url(url),
        "sha256": digest,
        "size": got_size,
        "mtime_ns": st.st_mtime_ns,
        "verified": sha256 is not None,
        "pinned": "expected sha256" if sha256 is not None else "first download",
        "etag": part_meta.get("etag"),
        "downloaded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    _unlink(paths.part_meta)
    if sha256 is None and pin is None:
        logger.warning(
            "UNVERIFIED download: %s has no known sha256, so its content could not be checked. Its sha256 is %s "
            "(%d bytes); compare it with the publisher's, and add it to the card or pass sha256=... to verify. "
            "Later uses of the cached file are checked against this digest.",
            shown, digest, got_size,
        )
    elif sha256 is None:
        logger.info("%s: sha256 matches the first download, cached at %s", shown, paths.final)
    else:
        logger.info("%s: sha256 verified, cached at %s", shown, paths.final)
