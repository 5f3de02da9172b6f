"""Registry cards of the official releases (Meta AI's MoCo v2/v3, DINO, DINOv2, MAE, SwAV, Barlow Twins, VICReg).

Every card validates, names its upstream's exact URL, license, layout and reported metrics, shows in the CLI, and
``load_pretrained("<card name>")`` fetches exactly the card's https:// URL and loads the file. The downloads run
against a loopback stand-in for dl.fbaipublicfiles.com: a CONNECT proxy that terminates TLS with a certificate
from a throwaway CA (``HTTPS_PROXY`` + ``REQUESTS_CA_BUNDLE``), so the card's own URL, unchanged, goes through
sslhub's real download path (TLS verification, cache, unverified-hash warning).

The facts below were transcribed from each upstream repository's README / CONFIG.md / FINETUNE.md, LICENSE and
its history (facebookresearch/<repo> on GitHub, read when the cards were written); the tests check that the cards
say the same. The upstream files are written by ``upstream_fixtures`` (random weights, each upstream's on-disk form).
"""

from __future__ import annotations

import datetime
import http.server
import json
import logging
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import upstream_fixtures

import sslhub
from sslhub.checkpoints.readers import get_reader
from sslhub.hub import cache_path, get_card, registry, resolve_source
from sslhub.hub.cards import LAYOUTS, load_card

REPO = Path(__file__).resolve().parents[1]
CARDS = REPO / "model_cards"
HOST = "dl.fbaipublicfiles.com"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Upstream:
    repo: str  # github.com/facebookresearch/<repo>
    folder: str  # first path component of its files on dl.fbaipublicfiles.com
    layout: str  # sslhub reader of its on-disk form
    license: str  # SPDX id of the repository's LICENSE file


UPSTREAM = {  # by card method
    # MoCo's LICENSE is MIT since 2023-01-18 (commit 7397dfe); its README still says CC-BY-NC 4.0
    "moco": Upstream("moco", "moco", "moco-v2", "MIT"),  # MoCo v2: the recipes' method name
    "mocov3": Upstream("moco-v3", "moco-v3", "moco-v3", "CC-BY-NC-4.0"),
    "dino": Upstream("dino", "dino", "dino", "Apache-2.0"),
    "dinov2": Upstream("dinov2", "dinov2", "dinov2", "Apache-2.0"),  # CC-BY-NC-4.0 until 2023-08-31
    "mae": Upstream("mae", "mae", "mae", "CC-BY-NC-4.0"),
    "swav": Upstream("swav", "deepcluster", "swav", "CC-BY-NC-4.0"),
    "barlowtwins": Upstream("barlowtwins", "barlowtwins", "barlowtwins", "MIT"),
    "vicreg": Upstream("vicreg", "vicreg", "vicreg", "MIT"),
    # the DINOv3 License is Meta's own (no SPDX id); ConvNeXt files have their own reader
    "dinov3": Upstream("dinov3", "dinov3", "dinov3", "LicenseRef-DINOv3-License"),
}
OTHER_LAYOUTS = {"dinov3": ("dinov3-convnext",)}
DATASET = {"dinov3": "ImageNet-ReaL"}  # DINOv3's MODEL_CARD.md reports linear probes on ImageNet-ReaL

# card name -> (weights path on dl.fbaipublicfiles.com, top-1 % the upstream reports for that file)
OFFICIAL = {
    "moco-resnet50.fb-in1k": ("moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar", {"linear": 71.1}),
    "mocov3-resnet50.fb-in1k": ("moco-v3/r-50-1000ep/r-50-1000ep.pth.tar", {"linear": 74.6}),
    "mocov3-vits16.fb-in1k": ("moco-v3/vit-s-300ep/vit-s-300ep.pth.tar", {"linear": 73.2}),
    "mocov3-vitb16.fb-in1k": ("moco-v3/vit-b-300ep/vit-b-300ep.pth.tar", {"linear": 76.7}),
    "dino-vits16.fb-in1k": ("dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
                            {"knn": 74.5, "linear": 77.0}),
    "dino-vits8.fb-in1k": ("dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth", {"knn": 78.3, "linear": 79.7}),
    "dino-vitb16.fb-in1k": ("dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth", {"knn": 76.1, "linear": 78.2}),
    "dino-vitb8.fb-in1k": ("dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth", {"knn": 77.4, "linear": 80.1}),
    "dino-resnet50.fb-in1k": ("dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth", {"knn": 67.5, "linear": 75.3}),
    "dinov2-vits14.fb-lvd142m": ("dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth", {"knn": 79.0, "linear": 81.1}),
    "dinov2-vits14-reg4.fb-lvd142m": ("dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
                                      {"knn": 79.1, "linear": 80.9}),
    "dinov2-vitb14.fb-lvd142m": ("dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth", {"knn": 82.1, "linear": 84.5}),
    "dinov2-vitb14-reg4.fb-lvd142m": ("dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
                                      {"knn": 82.0, "linear": 84.6}),
    "dinov2-vitl14.fb-lvd142m": ("dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth", {"knn": 83.5, "linear": 86.3}),
    "dinov2-vitl14-reg4.fb-lvd142m": ("dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth",
                                      {"knn": 83.8, "linear": 86.7}),
    "mae-vitb16.fb-in1k": ("mae/pretrain/mae_pretrain_vit_base.pth", {"finetune": 83.6, "linear": 67.8}),
    "mae-vitl16.fb-in1k": ("mae/pretrain/mae_pretrain_vit_large.pth", {"finetune": 85.9, "linear": 76.0}),
    "swav-resnet50.fb-in1k": ("deepcluster/swav_800ep_pretrain.pth.tar", {"linear": 75.3}),
    "barlowtwins-resnet50.fb-in1k": ("barlowtwins/ljng/resnet50.pth", {"linear": 73.5}),
    "vicreg-resnet50.fb-in1k": ("vicreg/resnet50.pth", {"linear": 73.2}),
    # DINOv3: the URLs of dinov3/hub/backbones.py, linear top-1 on ImageNet-ReaL from its MODEL_CARD.md
    "dinov3-vits16.fb-lvd1689m": ("dinov3/dinov3_vits16/dinov3_vits16_pretrain_lvd1689m-08c60483.pth", {"linear": 87.0}),
    "dinov3-vits16plus.fb-lvd1689m": ("dinov3/dinov3_vits16plus/dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth",
                                      {"linear": 88.0}),
    "dinov3-vitb16.fb-lvd1689m": ("dinov3/dinov3_vitb16/dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth", {"linear": 89.3}),
    "dinov3-vitl16.fb-lvd1689m": ("dinov3/dinov3_vitl16/dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth", {"linear": 90.2}),
    "dinov3-vith16plus.fb-lvd1689m": ("dinov3/dinov3_vith16plus/dinov3_vith16plus_pretrain_lvd1689m-7c1da9a5.pth",
                                      {"linear": 90.3}),
    "dinov3-vit7b16.fb-lvd1689m": ("dinov3/dinov3_vit7b16/dinov3_vit7b16_pretrain_lvd1689m-a955f4ea.pth",
                                   {"linear": 90.4}),
    "dinov3-convnext-tiny.fb-lvd1689m": ("dinov3/dinov3_convnext_tiny/dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth",
                                         {"linear": 86.6}),
    "dinov3-convnext-small.fb-lvd1689m": (
        "dinov3/dinov3_convnext_small/dinov3_convnext_small_pretrain_lvd1689m-296db49d.pth", {"linear": 87.9}),
    "dinov3-convnext-base.fb-lvd1689m": ("dinov3/dinov3_convnext_base/dinov3_convnext_base_pretrain_lvd1689m-801f2ba9.pth",
                                         {"linear": 88.5}),
    "dinov3-convnext-large.fb-lvd1689m": (
        "dinov3/dinov3_convnext_large/dinov3_convnext_large_pretrain_lvd1689m-61fa432d.pth", {"linear": 88.9}),
}


@pytest.fixture(autouse=True)
def _only_shipped_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSLHUB_CARDS", raising=False)


# ------------------------------------------------------------------------------------------------ the cards


def test_official_cards_validate_and_cover_the_releases():
    jsonschema = pytest.importorskip("jsonschema", reason="test extra jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads((CARDS / "schema.json").read_text()))
    assert sorted(p.stem for p in CARDS.glob("*.fb-*.yaml")) == sorted(OFFICIAL)
    for name in OFFICIAL:
        path = CARDS / f"{name}.yaml"
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, f"{path.name}: {errors}"
        assert load_card(path) == registry()[name]


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_card_names_the_upstream_url_license_layout_and_metrics(name):
    card = get_card(name)
    up = UPSTREAM[card.method]
    path, reported = OFFICIAL[name]

    url = urllib.parse.urlsplit(card.weights.url)
    assert (url.scheme, url.netloc, url.path, url.query) == ("https", HOST, "/" + path, "")
    assert path.split("/")[0] == up.folder and card.weights.filename == path.rsplit("/", 1)[1]
    for f in card.files:  # logs too: the upstream's own host, over TLS
        assert f.url.startswith(f"https://{HOST}/{up.folder}/") and not f.mirrors

    assert card.license == up.license
    assert card.source.layout in (up.layout, *OTHER_LAYOUTS.get(card.method, ())) and card.source.layout in LAYOUTS
    assert card.paper and card.paper.startswith("https://arxiv.org/abs/")

    assert {m.task: m.top1 for m in card.metrics} == reported
    for m in card.metrics:
        assert m.reported_by == f"facebookresearch/{up.repo}" and m.dataset == DATASET.get(card.method, "ImageNet-1k val")
        assert f"https://github.com/facebookresearch/{up.repo}" in (m.reference or "")
    assert f"{reported['linear']}%" in card.summary

    # nothing could be downloaded here: no hash or size may be claimed, and the card must say so
    assert all(f.sha256 is None and f.size is None for f in card.files)
    assert "sha256 unknown" in (card.notes or "")

    # detection finds the evaluation copy from the tensors: no prefix= hint (for MoCo v3's ViT-S a prefix would
    # bypass the reader's 12-head rule); test_cards checks that each architecture builds with num_features
    assert card.load_kwargs() == {"arch": card.architecture}


def test_every_official_layout_has_a_reader():
    for name in OFFICIAL:
        layout = get_card(name).source.layout
        assert get_reader(layout) is not None, f"{name}: no reader is named {layout!r}"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SSLHUB_CARDS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "sslhub", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_lists_and_shows_the_official_cards():
    r = _cli("list", "*.fb-*")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "METHOD", "ARCH"]
    assert sorted(row.split()[0] for row in rows) == sorted(OFFICIAL)
    dino = next(row for row in rows if row.startswith("dino-vits16.fb-in1k "))
    assert "77.0" in dino and "74.5" in dino and "facebookresearch/dino" in dino and dino.rstrip().endswith("first use")  # no publisher sha256: trust on first use

    r = _cli("card", "dino-vits16.fb-in1k")
    assert r.returncode == 0, r.stderr
    for text in (f"https://{HOST}/{OFFICIAL['dino-vits16.fb-in1k'][0]}", "license       Apache-2.0",
                 "layout        dino", "77.0%", "reported by facebookresearch/dino",
                 "unknown (downloads are unverified)"):
        assert text in r.stdout, text

    r = _cli("card", "mocov3-vits16.fb-in1k", "--json")
    assert r.returncode == 0, r.stderr
    card = json.loads(r.stdout)
    assert card["license"] == "CC-BY-NC-4.0" and card["source"]["layout"] == "moco-v3"
    assert card["source"]["prefix"] == "module.base_encoder." and "num_heads=12" in card["notes"]


# ----------------------------------------------------------------------- a loopback dl.fbaipublicfiles.com


def _throwaway_tls(workdir: Path, hosts: tuple[str, ...]) -> tuple[Path, ssl.SSLContext]:
    """A CA certificate file for the client and a server context with a certificate for ``hosts`` that it signs."""
    pytest.importorskip("cryptography", reason="cryptography (comes with the test extra moto[server])")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)

    def build(subject: str, key, issuer: x509.Name, issuer_key, *, ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, **usage),
                            critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if not ca:
            b = (b.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
                 .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                 .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                critical=False))
        return b.sign(issuer_key, hashes.SHA256())

    workdir.mkdir(parents=True)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = "sslhub test CA (throwaway)"
    ca = build(ca_name, ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)]), ca_key, ca=True)
    leaf = build(hosts[0], key, ca.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (workdir / "ca.pem").write_bytes(ca.public_bytes(pem))
    (workdir / "server.pem").write_bytes(leaf.public_bytes(pem))
    (workdir / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(workdir / "server.pem", workdir / "server.key")
    return workdir / "ca.pem", ctx


class _TunnelHandler(http.server.BaseHTTPRequestHandler):
    """CONNECT to an intercepted host:443 turns the connection into TLS; GETs inside are served from ``files``."""

    protocol_version = "HTTP/1.1"
    server: "_ProxyServer"
    tunnel_host: str | None = None

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (keep pytest output clean)
        pass

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        if host not in self.server.upstream.hosts or port != "443":
            self.send_error(403, f"this test proxy only stands in for {self.server.upstream.hosts}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.connection = self.server.upstream.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb")
        self.tunnel_host = host
        self.close_connection = False  # urllib3 says CONNECT ... HTTP/1.0, which would end the tunnel here

    def do_GET(self) -> None:
        if self.tunnel_host is None:
            self.send_error(403, "plain http is not served")
            return
        url = f"https://{self.tunnel_host}{self.path}"
        self.server.upstream.requests.append(url)
        data = self.server.upstream.files.get(url)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def finish(self) -> None:
        super().finish()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.close()


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    upstream: "FakeUpstream"

    def handle_error(self, request, client_address) -> None:  # record (e.g. a refused handshake), do not print
        self.upstream.errors.append(sys.exc_info()[1])


class FakeUpstream:
    """Files at exact https:// URLs of ``hosts``, served on loopback through a TLS-terminating CONNECT proxy."""

    def __init__(self, workdir: Path, hosts: tuple[str, ...] = (HOST,)) -> None:
        self.hosts = hosts
        self.ca_file, self.tls = _throwaway_tls(workdir, hosts)
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.errors: list[BaseException | None] = []
        self.server = _ProxyServer((LOOPBACK, 0), _TunnelHandler)
        self.server.upstream = self
        self.proxy_url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def put(self, url: str, data: bytes) -> None:
        self.files[url] = data

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A loopback dl.fbaipublicfiles.com that requests (and so sslhub's downloader) reach through HTTPS_PROXY."""
    fake = FakeUpstream(tmp_path / "upstream")
    monkeypatch.setenv("SSLHUB_HOME", str(tmp_path / "sslhub_home"))
    for var in ("SSLHUB_OFFLINE", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, fake.proxy_url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca_file))
    yield fake
    fake.close()


def test_every_official_card_downloads_exactly_its_url(upstream, monkeypatch, caplog):
    for i, name in enumerate(OFFICIAL):
        upstream.put(get_card(name).weights.url, f"{name} #{i}".encode())
    caplog.set_level(logging.WARNING, logger="sslhub")
    for i, name in enumerate(OFFICIAL):
        card = get_card(name)
        path = resolve_source(name, progress=False)
        assert path.read_bytes() == f"{name} #{i}".encode()
        assert path == cache_path(card.weights.url, card.weights.filename)
        assert upstream.requests[-1] == card.weights.url
    assert upstream.requests == [get_card(n).weights.url for n in OFFICIAL]  # one GET each, nothing else
    unverified = [r.getMessage() for r in caplog.records if "UNVERIFIED" in r.getMessage()]
    assert len(unverified) == len(OFFICIAL)

    monkeypatch.setenv("SSLHUB_OFFLINE", "1")  # now cached: resolves without the network
    assert resolve_source("dinov2-vitl14-reg4.fb-lvd142m", progress=False).read_bytes().startswith(b"dinov2-vitl14")
    assert len(upstream.requests) == len(OFFICIAL)


def test_a_wrong_certificate_is_refused(upstream, tmp_path, monkeypatch):
    """The stand-in works only because the test trusts its CA: trusting another CA, TLS verification must fail."""
    from sslhub.hub import DownloadError, fetch_url

    card = get_card("vicreg-resnet50.fb-in1k")
    upstream.put(card.weights.url, b"x")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(_throwaway_tls(tmp_path / "other", (HOST,))[0]))
    with pytest.raises(DownloadError, match="vicreg/resnet50.pth"):
        fetch_url(card.weights.url, filename=card.weights.filename, retries=0, progress=False)
    assert upstream.requests == [] and not cache_path(card.weights.url, card.weights.filename).exists()
    deadline = time.monotonic() + 10  # the proxy thread records the refused handshake after the client gave up
    while not upstream.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any("UNKNOWN_CA" in str(e) for e in upstream.errors), upstream.errors


# ------------------------------------------------------------- upstream-form files behind the card names
# upstream_fixtures writes random full-size weights (a card fixes the architecture) in each upstream's on-disk form
# and returns the upstream's own evaluation model to compare features with.


def _serve(upstream: FakeUpstream, name: str, write, tmp_path: Path, **kw) -> nn.Module:
    path, eval_model = write(tmp_path / get_card(name).weights.filename, **kw)
    upstream.put(get_card(name).weights.url, path.read_bytes())
    return eval_model


def _same_features(name: str, ref: nn.Module, upstream: FakeUpstream) -> nn.Module:
    model = sslhub.load_pretrained(name)
    assert upstream.requests == [get_card(name).weights.url]
    assert model.num_features == get_card(name).num_features
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), ref.eval()(x)
    assert want.std() > 0.05, "degenerate reference features would prove nothing"
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    return model


def test_dino_vits16_name_loads_the_released_backbone(upstream, tmp_path):
    ref = _serve(upstream, "dino-vits16.fb-in1k", upstream_fixtures.dino, tmp_path, arch="vit_small", released=True)
    _same_features("dino-vits16.fb-in1k", ref, upstream)


def test_dinov3_names_load_the_released_vit_s_and_convnext_t(upstream, tmp_path):
    """The release files at their real ViT-S/16 and ConvNeXt-T sizes (DINOv3's on-disk form, zero qkv biases as
    released), served at the cards' URLs; the reference forwards are written from DINOv3's model code."""
    import upstream_fixtures_2026 as uf26

    ref = _serve(upstream, "dinov3-vits16.fb-lvd1689m", uf26.dinov3_vit, tmp_path, dim=384, depth=12, heads=6,
                 zero_qkv_bias=True)  # fmt: skip
    assert _same_features("dinov3-vits16.fb-lvd1689m", ref, upstream).pretrained_cfg["layout"] == "dinov3"
    upstream.requests.clear()
    ref = _serve(upstream, "dinov3-convnext-tiny.fb-lvd1689m", uf26.dinov3_convnext, tmp_path, depths=(3, 3, 9, 3),
                 dims=(96, 192, 384, 768))  # fmt: skip
    _same_features("dinov3-convnext-tiny.fb-lvd1689m", ref, upstream)


def test_mocov2_name_loads_encoder_q_of_the_release(upstream, tmp_path):
    ref = _serve(upstream, "moco-resnet50.fb-in1k", upstream_fixtures.moco_v2, tmp_path, arch="resnet50")
    _same_features("mocov2-resnet50.fb-in1k", ref, upstream)


def test_mocov3_vits16_name_builds_twelve_heads(upstream, tmp_path):
    """The card passes arch='vit_small_patch16_224' (6 heads in timm): the reader's 12-head rule must still win."""
    ref = _serve(upstream, "mocov3-vits16.fb-in1k", upstream_fixtures.moco_v3, tmp_path, kind="vit_small")
    model = _same_features("mocov3-vits16.fb-in1k", ref, upstream)
    assert {m.num_heads for m in model.modules() if hasattr(m, "qkv") and hasattr(m, "num_heads")} == {12}
