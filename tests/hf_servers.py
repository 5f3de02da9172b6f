"""Loopback Hugging Face Hub servers for the tests.

* :class:`OlahServer` runs the real ``olah`` mirror (PyPI ``olah``, kept in its own virtual environment because it
  pins its own web stack; ``scripts/setup_olah_venv.sh`` creates it) in offline mode. It serves plain git
  repositories from a ``mirrors-path`` folder (``<mirrors>/models/<org>/<name>``, LFS objects under
  ``.git/lfs/objects``) through the Hub's read API: ``/api/models/<id>/revision/<rev>``, ``/<id>/resolve/<rev>/<f>``,
  tree and paths-info, which is what ``hf_hub_download``, ``snapshot_download`` and timm use.
* :class:`HubWriteServer` is a small stdlib HTTP server for the Hub's *write* calls that ``HfApi.create_repo`` and
  ``HfApi.create_commit`` make (repo creation, YAML validation, preupload, LFS batch + basic PUT transfer, the
  ndjson commit). It writes the commits into those git repositories with the git CLI and forwards every other
  request to olah, so one ``HF_ENDPOINT`` reads and writes.
* :func:`make_repo` writes a repo directly (git CLI plus LFS pointers), for read-only tests.

Environment: ``SSLHUB_OLAH_VENV`` (default ``/tmp/sslhub-olah-venv``) is the venv with ``bin/olah-cli``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Mapping

from conftest_servers import free_port

DEFAULT_OLAH_VENV = "/tmp/sslhub-olah-venv"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub stores big files in LFS whatever their name
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "hub-test",
    "GIT_AUTHOR_EMAIL": "hub-test@127.0.0.1",
    "GIT_COMMITTER_NAME": "hub-test",
    "GIT_COMMITTER_EMAIL": "hub-test@127.0.0.1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def olah_cli() -> Path | None:
    """``olah-cli`` of the olah venv, or None if that venv does not exist."""
    exe = Path(os.environ.get("SSLHUB_OLAH_VENV", DEFAULT_OLAH_VENV)) / "bin" / "olah-cli"
    return exe if exe.is_file() and os.access(exe, os.X_OK) else None


# ----------------------------------------------------------------------------------------------------------------
# git repositories in olah's mirror layout


def _git(repo: Path, *args: str, input: bytes | None = None) -> str:
    out = subprocess.run(
        ["git", *args], cwd=repo, input=input, capture_output=True, check=True, env={**os.environ, **_GIT_ENV}
    )
    return out.stdout.decode().strip()


def repo_dir(mirrors: Path, repo_id: str) -> Path:
    org, name = repo_id.split("/")
    return mirrors / "models" / org / name


def lfs_pointer(data: bytes) -> tuple[str, bytes]:
    """(sha256, pointer file) for an LFS object, as git-lfs writes it."""
    oid = hashlib.sha256(data).hexdigest()
    return oid, f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


def lfs_object_path(repo: Path, oid: str) -> Path:
    return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    m = re.fullmatch(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (\d+)\n", data)
    return (m.group(1).decode(), int(m.group(2))) if m else None


def init_repo(repo: Path) -> str:
    """An empty Hub repo: one commit with ``.gitattributes``, as the Hub creates it. Returns the commit id."""
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / ".gitattributes").write_bytes(_GITATTRIBUTES)
    _git(repo, "add", ".gitattributes")
    _git(repo, "commit", "-q", "-m", "initial commit")
    return _git(repo, "rev-parse", "HEAD")


def commit_files(repo: Path, files: Mapping[str, bytes], message: str, lfs: set[str] | None = None) -> str:
    """Commit ``files`` (path -> content); paths in ``lfs`` (default: by suffix) become LFS pointers."""
    for path, data in files.items():
        dst = repo / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if (path in lfs) if lfs is not None else path.endswith(LFS_SUFFIXES):
            oid, pointer = lfs_pointer(data)
            obj = lfs_object_path(repo, oid)
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
            dst.write_bytes(pointer)
        else:
            dst.write_bytes(data)
        _git(repo, "add", "--", path)
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def make_repo(mirrors: Path, repo_id: str, files: Mapping[str, bytes], message: str = "add files") -> str:
    """Create (if needed) a repo and commit ``files`` to main. Returns the commit id."""
    repo = repo_dir(mirrors, repo_id)
    if not repo.exists():
        init_repo(repo)
    return commit_files(repo, files, message)


def read_file(repo: Path, rev: str, path: str) -> bytes:
    """A file's content at a revision, LFS pointers resolved."""
    data = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, check=True, env={**os.environ, **_GIT_ENV}
    ).stdout
    ptr = parse_pointer(data)
    return lfs_object_path(repo, ptr[0]).read_bytes() if ptr else data


# ----------------------------------------------------------------------------------------------------------------
# olah


class OlahServer:
    """The olah mirror in offline mode on 127.0.0.1, serving the git repos under ``mirrors``."""

    def __init__(self, workdir: Path, exe: Path) -> None:
        self.workdir = workdir
        self.mirrors = workdir / "mirrors"
        self.exe = exe
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "olah.log"

    def start(self, timeout: float = 60.0) -> "OlahServer":
        (self.mirrors / "models").mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "olah.toml"
        cfg.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f'repos-path = "{self.workdir / "olah-cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            "[accessibility]\n"
            "offline = true\n"
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.exe), "-c", str(cfg), "--log-path", str(self.workdir / "olah-logs")],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"olah exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/api/whoami-v2")
                conn.getresponse().read()
                conn.close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"olah did not answer on {self.url} within {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


# ----------------------------------------------------------------------------------------------------------------
# the Hub's write API


class HubWriteServer:
    """The Hub's commit API on 127.0.0.1, writing git repos that olah serves; other requests go to olah.

    ``token`` is the only bearer token the write calls accept. ``requests`` records ``(method, path, authorized)``
    of every request, ``visibility`` the visibility each repo was created with, ``commit_headers`` the header
    line of each commit request (summary, parentCommit).
    """

    def __init__(self, mirrors: Path, olah_url: str, token: str) -> None:
        self.mirrors = mirrors
        self.olah = urllib.parse.urlsplit(olah_url)
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, bool]] = []
        self.visibility: dict[str, str] = {}
        self.commit_headers: list[dict[str, Any]] = []  # the "header" line of every commit request, with repo_id
        self.lock = threading.Lock()
        server = self

        class Handler(_Handler):
            hub = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "HubWriteServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def commits(self) -> list[str]:
        return [p for m, p, _ in self.requests if m == "POST" and re.match(r"/api/models/[^/]+/[^/]+/commit/", p)]


class _Handler(BaseHTTPRequestHandler):
    hub: HubWriteServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        for k, v in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"error": message}, {"Content-Type": "application/json", "X-Error-Code": code,
                                                "X-Error-Message": message})  # fmt: skip

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _record(self) -> bool:
        ok = self._authorized()
        with self.hub.lock:
            self.hub.requests.append((self.command, self.path, ok))
        return ok

    def _proxy(self) -> None:
        body = self._body() if self.command in ("POST", "PUT") else None
        conn = http.client.HTTPConnection(self.hub.olah.hostname, self.hub.olah.port, timeout=60)
        hop = ("host", "connection", "transfer-encoding")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("content-length") or "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- routes --------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._record()
        self._proxy()

    def do_HEAD(self) -> None:
        self._record()
        self._proxy()

    def do_PUT(self) -> None:
        self._record()
        m = re.fullmatch(r"/__lfs/([^/]+)/([^/]+)/([0-9a-f]{64})", self.path)
        if not m:
            return self._error(404, "NotFound", "not found")
        repo = repo_dir(self.hub.mirrors, f"{m.group(1)}/{m.group(2)}")
        data = self._body()
        if hashlib.sha256(data).hexdigest() != m.group(3):
            return self._error(400, "BadRequest", "uploaded content does not match its sha256 oid")
        obj = lfs_object_path(repo, m.group(3))
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(data)
        self._send(200, b"", {})

    def do_POST(self) -> None:
        authorized = self._record()
        path = urllib.parse.urlsplit(self.path).path
        routes = (
            (r"/api/repos/create", self._create),
            (r"/api/validate-yaml", self._validate_yaml),
            (r"/api/models/([^/]+)/([^/]+)/preupload/([^/]+)", self._preupload),
            (r"/([^/]+)/([^/]+)\.git/info/lfs/objects/batch", self._lfs_batch),
            (r"/api/models/([^/]+)/([^/]+)/commit/([^/]+)", self._commit),
        )
        for pattern, handler in routes:
            m = re.fullmatch(pattern, path)
            if m:
                if not authorized:
                    self._body()
                    return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                return handler(*[urllib.parse.unquote(g) for g in m.groups()])
        self._proxy()  # paths-info and other read calls

    def _create(self) -> None:
        req = json.loads(self._body())
        repo_id = f"{req['organization']}/{req['name']}"
        repo = repo_dir(self.hub.mirrors, repo_id)
        with self.hub.lock:
            if repo.exists():
                return self._error(409, "RepoExists", "You already created this model repo")
            init_repo(repo)
            self.hub.visibility[repo_id] = req.get("visibility") or ("private" if req.get("private") else "public")
        self._send(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        import yaml

        content = json.loads(self._body())["content"]
        m = re.match(r"---\n(.*?)\n---\n", content, flags=re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else None
        except yaml.YAMLError as e:
            return self._send(400, {"errors": [{"message": f"invalid YAML: {e}"}]})
        if m and not isinstance(meta, dict):
            return self._send(400, {"errors": [{"message": "metadata must be a mapping"}]})
        self._send(200, {"errors": [], "warnings": []})

    def _repo_or_404(self, org: str, name: str) -> Path | None:
        repo = repo_dir(self.hub.mirrors, f"{org}/{name}")
        if not repo.exists():
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _preupload(self, org: str, name: str, rev: str) -> None:
        files = json.loads(self._body())["files"]
        repo = self._repo_or_404(org, name)
        if repo is None:
            return
        out = []
        for f in files:
            mode = "lfs" if f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_MIN_SIZE else "regular"
            oid = None
            try:
                blob = subprocess.run(["git", "show", f"{rev}:{f['path']}"], cwd=repo, capture_output=True, check=True,
                                      env={**os.environ, **_GIT_ENV}).stdout  # fmt: skip
                ptr = parse_pointer(blob)
                oid = ptr[0] if ptr else _git(repo, "rev-parse", f"{rev}:{f['path']}")
            except subprocess.CalledProcessError:
                pass  # a new file
            out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send(200, {"files": out, "commitOid": _git(repo, "rev-parse", rev)})

    def _lfs_batch(self, org: str, name: str) -> None:
        req = json.loads(self._body())
        repo = self._repo_or_404(org, name)
        if repo is None:
            return
        objects = []
        for o in req["objects"]:
            item: dict[str, Any] = {"oid": o["oid"], "size": o["size"]}
            if not lfs_object_path(repo, o["oid"]).is_file():
                item["actions"] = {"upload": {"href": f"{self.hub.url}/__lfs/{org}/{name}/{o['oid']}"}}
            objects.append(item)
        self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _commit(self, org: str, name: str, rev: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        repo = self._repo_or_404(org, name)
        if repo is None:
            return
        header = next(item["value"] for item in lines if item["key"] == "header")
        with self.hub.lock:
            self.hub.commit_headers.append({**header, "repo_id": f"{org}/{name}"})
            head = _git(repo, "rev-parse", rev)
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent):
                return self._error(412, "PreconditionFailed", f"parent commit {parent} is not the head of {rev}")
            if _git(repo, "symbolic-ref", "--short", "HEAD") != rev:
                return self._error(400, "BadRequest", "this test server commits to the checked-out branch only")
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    dst = repo / value["path"]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(base64.b64decode(value["content"]))
                    _git(repo, "add", "--", value["path"])
                elif key == "lfsFile":
                    obj = lfs_object_path(repo, value["oid"])
                    if not obj.is_file():
                        return self._error(400, "BadRequest", f"LFS object {value['oid']} was not uploaded")
                    dst = repo / value["path"]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(lfs_pointer(obj.read_bytes())[1])
                    _git(repo, "add", "--", value["path"])
                elif key in ("deletedFile", "deletedFolder"):
                    _git(repo, "rm", "-r", "-q", "--", value["path"])
                elif key != "header":
                    return self._error(400, "BadRequest", f"unsupported commit operation {key!r}")
            message = header["summary"] + (f"\n\n{header['description']}" if header.get("description") else "")
            _git(repo, "commit", "-q", "--allow-empty", "-m", message)
            oid = _git(repo, "rev-parse", "HEAD")
        self._send(200, {"success": True, "commitOid": oid, "commitUrl": f"{self.hub.url}/{org}/{name}/commit/{oid}"})


def iter_tree_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` (for scanning outputs for secrets)."""
    for dirpath, _, names in os.walk(root):
        for n in names:
            yield Path(dirpath) / n


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
