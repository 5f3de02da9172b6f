"""A misbehaving HTTP server on 127.0.0.1 for the fault tests (pure Python: runs wherever the tests run).

Each file is served under ``/<mode>/<name>`` where the mode says how the server misbehaves:

* ``ok``        Content-Length, a strong ETag, ``Range``/``If-Range`` (206), like a static file server.
* ``slow``      as ``ok``, but ``rate`` bytes/s (a throttled link: time to kill a client mid-transfer).
* ``nolength``  no Content-Length, no chunked framing: the body ends when the connection closes, after ``cut``
                bytes (a server or proxy that dies mid-file; the client cannot tell from the framing).
* ``long``      claims ``Content-Length`` of the file + 1000 bytes, sends the file, closes (lies about length).
* ``short``     claims and sends only the first ``cut`` bytes (a length that is a lie the other way).
* ``html``      200 with an HTML login page instead of the file.
* ``flaky``     503 for the first ``fail`` requests, then as ``ok``.
* ``gzip``      the file gzip-compressed with ``Content-Encoding: gzip``, whatever the client asked for.
* ``stall``     sends the first ``cut`` bytes of the file, then nothing for ``stall_s`` seconds (a hung server).
* ``busy``      429 with ``Retry-After: <retry_after>``.
* ``redirect``  302 to ``location``.

``server.requests`` logs ``(path, range header)`` per request.
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in</body></html>\n"


class FaultServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.rate = 200_000
        self.cut = 1000
        self.fail = 1
        self.stall_s = 30.0
        self.retry_after = "3600"
        self.location = ""
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer._handle(self)

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, mode: str, name: str) -> str:
        return f"http://{LOOPBACK}:{self.port}/{mode}/{name}"

    def put(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def count(self, mode: str, name: str) -> int:
        return sum(1 for p, _ in self.requests if p == f"/{mode}/{name}")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------------------------------------ serving

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.requests.append((path, h.headers.get("Range")))
            n = self._served[path] = self._served.get(path, 0) + 1
        parts = path.strip("/").split("/", 1)
        mode, name = (parts + [""])[:2]
        data = self.files.get(name)
        if data is None:
            self._send(h, 404, b"not found", "text/plain")
            return
        if mode == "html":
            self._send(h, 200, HTML, "text/html; charset=utf-8")
        elif mode == "flaky" and n <= self.fail:
            self._send(h, 503, b"busy", "text/plain")
        elif mode in ("ok", "slow", "flaky"):
            self._send_file(h, data, rate=self.rate if mode == "slow" else None)
        elif mode == "nolength":
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(data[: self.cut])
            h.close_connection = True
        elif mode == "long":
            h.send_response(200)
            h.send_header("Content-Length", str(len(data) + 1000))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(data)
            h.close_connection = True
        elif mode == "gzip":
            import gzip

            body = gzip.compress(data)
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Encoding", "gzip")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        elif mode == "stall":
            h.send_response(200)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: self.cut])
            h.wfile.flush()
            time.sleep(self.stall_s)
            h.close_connection = True
        elif mode == "busy":
            h.send_response(429)
            h.send_header("Retry-After", self.retry_after)
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif mode == "redirect":
            h.send_response(302)
            h.send_header("Location", self.location)
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif mode == "short":
            self._send(h, 200, data[: self.cut], "application/octet-stream")
        else:
            self._send(h, 400, b"unknown mode", "text/plain")

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    @staticmethod
    def _send_file(h: BaseHTTPRequestHandler, data: bytes, rate: int | None) -> None:
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start = 0
        rng, if_range = h.headers.get("Range"), h.headers.get("If-Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-") and (if_range is None or if_range == etag):
            start = int(rng[6:-1])
        if start >= len(data) and start:
            h.send_response(416)
            h.send_header("Content-Range", f"bytes */{len(data)}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        body = data[start:]
        if rate is None:
            h.wfile.write(body)
            return
        step = max(1, rate // 20)
        deadline = time.monotonic() + 120  # bounded even if the client never reads
        try:
            for i in range(0, len(body), step):
                if time.monotonic() > deadline:
                    return
                h.wfile.write(body[i : i + step])
                h.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client went away (killed)
            return
