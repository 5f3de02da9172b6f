"""Real servers on 127.0.0.1 for the hub tests: nginx (static files with Range/ETag), a TCP proxy that cuts
connections mid-response, and moto_server (S3 API with presigned URLs).

Import the fixtures into a test module (``from conftest_servers import nginx, cutting_proxy, moto_s3``). A test
skips only when the server binary is missing (CI installs them with scripts/ci_services.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {LOOPBACK}:{port} after {timeout} s")


def _which(name: str) -> str | None:
    # /usr/sbin is not on every PATH; the venv's bin holds console scripts such as moto_server
    extra = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", str(Path(sys.executable).parent)])
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + extra)


# ---------------------------------------------------------------------------------------------------- nginx


@dataclass
class LogEntry:
    method: str
    uri: str
    status: int
    body_bytes: int
    range: str
    if_range: str


def _unescape(v: str) -> str:
    # nginx writes " as \x22 and an absent header as -
    return "" if v == "-" else v.replace("\\x22", '"')


_LOG_RE = re.compile(r'^(\S+) (\S+) (\d+) (\d+) "([^"]*)" "([^"]*)"$')


class Nginx:
    """An nginx serving ``root`` at ``/`` and, throttled to ``limit_rate``, at ``/slow/``."""

    def __init__(self, workdir: Path, binary: str, limit_rate: str = "1m") -> None:
        self.workdir = workdir
        self.root = workdir / "www"
        self.root.mkdir(parents=True)
        (workdir / "tmp").mkdir()
        self.port = free_port()
        self.access_log = workdir / "access.log"
        user = "user root;" if os.geteuid() == 0 else ""  # workers would run as nobody and not read pytest's tmp
        temp = "\n".join(f"    {k}_temp_path {workdir}/tmp/{k};" for k in ("client_body", "proxy", "fastcgi",
                                                                           "uwsgi", "scgi"))
        conf = f"""
{user}
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format sslhub '$request_method $uri $status $body_bytes_sent "$http_range" "$http_if_range"';
    access_log {self.access_log} sslhub;
{temp}
    default_type application/octet-stream;
    server {{
        listen {LOOPBACK}:{self.port};
        root {self.root};
        location /slow/ {{
            alias {self.root}/;
            limit_rate {limit_rate};
        }}
    }}
}}
"""
        (workdir / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [binary, "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-e", str(workdir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            wait_port(self.port, self.proc, timeout=15)
        except RuntimeError:
            err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"nginx did not start: {err} {(workdir / 'error.log').read_text()}") from None

    def url(self, path: str, *, slow: bool = False) -> str:
        return f"http://{LOOPBACK}:{self.port}/{'slow/' if slow else ''}{path.lstrip('/')}"

    def put(self, name: str, data: bytes, *, mtime: float | None = None) -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(data)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, p)
        return p

    def log(self, uri_suffix: str | None = None) -> list[LogEntry]:
        # nginx writes the access-log line after the response has gone out, so a client can be faster than the
        # log: wait until two reads 50 ms apart agree (at most ~1 s).
        previous = None
        for _ in range(20):
            time.sleep(0.05)
            current = self._read_log(uri_suffix)
            if current == previous and current:
                return current
            previous = current
        return previous or []

    def _read_log(self, uri_suffix: str | None = None) -> list[LogEntry]:
        entries = []
        if self.access_log.exists():
            for line in self.access_log.read_text().splitlines():
                m = _LOG_RE.match(line)
                if m:
                    e = LogEntry(m[1], m[2], int(m[3]), int(m[4]), _unescape(m[5]), _unescape(m[6]))
                    if uri_suffix is None or e.uri.endswith(uri_suffix):
                        entries.append(e)
        return entries

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    binary = _which("nginx")
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light; see scripts/ci_services.sh)")
    server = Nginx(tmp_path_factory.mktemp("nginx"), binary, limit_rate="1m")
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------------- proxy


class CuttingProxy:
    """TCP proxy to ``upstream_port`` that, for the next connections queued with :meth:`cut_next`, forwards only
    the first N bytes of the server's response and then drops the connection (a network failure mid-file)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._cuts: list[int] = []
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}/{path.lstrip('/')}"

    def cut_next(self, nbytes: int, times: int = 1) -> None:
        with self._lock:
            self._cuts.extend([nbytes] * times)

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                limit = self._cuts.pop(0) if self._cuts else None
                self.connections += 1
            threading.Thread(target=self._handle, args=(client, limit), daemon=True).start()

    def _handle(self, client: socket.socket, limit: int | None) -> None:
        upstream = socket.create_connection((LOOPBACK, self.upstream_port))

        def forward_requests() -> None:
            try:
                while data := client.recv(65536):
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=forward_requests, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if limit is not None and sent + len(data) >= limit:
                    client.sendall(data[: limit - sent])
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._closed = True
        self.sock.close()


@pytest.fixture()
def cutting_proxy(nginx: Nginx) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(nginx.port)
    yield proxy
    proxy.close()


# ---------------------------------------------------------------------------------------------------- moto


@dataclass
class MotoS3:
    endpoint: str
    log: Path

    def client(self):  # -> botocore S3 client
        import boto3
        from botocore.config import Config

        # moto accepts any credentials; these are fixed test values, not secrets
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def requests_for(self, key: str) -> list[str]:
        """The request lines (method and path, query dropped) that moto served for ``key``."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = re.search(r'"([A-Z]+) (\S+) HTTP/[\d.]+"', line)
            if m and m[2].split("?")[0].endswith(key):
                out.append(f"{m[1]} {m[2].split('?')[0]}")
        return out


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    binary = _which("moto_server")
    if binary is None:
        pytest.skip("moto_server is not installed (test extra: pip install 'moto[server]' boto3)")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([binary, "-H", LOOPBACK, "-p", str(port)], stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, timeout=60)
        yield MotoS3(f"http://{LOOPBACK}:{port}", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
