"""The IIIF fetch does not trust the manifest: address policy, schemes and redirects, deadlines, byte limits,
re-encoded storage and streaming of large manifests.

Every server here is started by the test on 127.0.0.1. Refused addresses are checked with the policy function
and stub resolvers only; ``socket.create_connection`` is watched so that a refused address is never connected.
"""

import io
import json
import shutil
import ssl
import subprocess
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from corpus_index.cli import main
from corpus_index.ingest import iiif_fetch
from corpus_index.ingest.iiif import ingest_iiif
from corpus_index.ingest.iiif_fetch import (
    FetchDeadline,
    FetchRefused,
    FetchTooLarge,
    address_refusal,
    check_url,
    safe_fetch,
)
from corpus_index.ingest.iiif_manifest import parse_manifest
from corpus_index.storage.store import Store


def _image_bytes(width=200, height=270, fmt="JPEG", noise=False):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise else np.full(
        (height, width, 3), 200, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


class LocalServer:
    """An HTTP server on 127.0.0.1 (this test's own); ``routes[path] = handler function(request)``."""

    def __init__(self):
        self.routes, self.hits, self.hosts = {}, [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                server.hits.append(self.path)
                server.hosts.append(self.headers.get("Host"))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except OSError:
                    pass  # the client went away (cut at its deadline)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def body(self, path, data, content_type="application/octet-stream"):
        def send(request):
            request.send_response(200)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        self.routes[path] = send

    def redirect(self, path, location):
        def send(request):
            request.send_response(302)
            request.send_header("Location", location)
            request.send_header("Content-Length", "0")
            request.end_headers()
        self.routes[path] = send

    def use_tls(self, certfile):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    local = LocalServer()
    yield local
    local.close()


@pytest.fixture
def connections(monkeypatch):
    """The addresses connected to; connecting anywhere but 127.0.0.1 fails the test before any packet."""
    seen, real = [], iiif_fetch.socket.create_connection

    def create_connection(address, *args, **kwargs):
        seen.append(address[0])
        assert address[0] == "127.0.0.1", f"the test tried to connect to {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(iiif_fetch.socket, "create_connection", create_connection)
    return seen


def _manifest(tmp_path, image_urls, name="manifest.json"):
    """A v3 manifest file with one canvas per image URL."""
    items = [{"id": f"https://example.org/c{i}", "type": "Canvas", "width": 200, "height": 270, "label": f"p{i}",
              "items": [{"type": "AnnotationPage", "items": [{"type": "Annotation", "motivation": "painting",
                                                              "body": {"id": url, "type": "Image"}}]}]}
             for i, url in enumerate(image_urls)]
    manifest = {"@context": "http://iiif.io/api/presentation/3/context.json", "id": "https://example.org/m",
                "type": "Manifest", "label": {"en": ["m"]}, "items": items}
    path = tmp_path / name
    path.write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("address", ["169.254.169.254", "10.0.0.1", "192.168.1.1", "172.16.5.4", "127.0.0.1",
                                     "100.64.0.1", "::1", "fe80::1", "fc00::1", "224.0.0.1", "ff02::1",
                                     "0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
                                     "2002:a00:1::1", "240.0.0.1"])
def test_policy_refuses_non_global_addresses_without_connecting(address, connections):
    assert address_refusal(address)
    with pytest.raises(FetchRefused, match=f"resolves to {address}"):
        check_url("http://images.example.org/x.jpg", resolver=lambda host, port: [address])
    # A literal address in the URL goes through the same check.
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(FetchRefused, match="refusing to fetch"):
        safe_fetch(f"http://{host}/x.jpg", timeout=5)
    assert connections == []


def test_policy_allows_global_addresses_and_checks_every_resolved_one(connections):
    assert address_refusal("93.184.216.34") is None and address_refusal("2606:4700::1111") is None
    mixed = {"images.example.org": ["93.184.216.34", "10.0.0.1"]}
    with pytest.raises(FetchRefused, match="10.0.0.1, a private address"):
        check_url("https://images.example.org/x.jpg", resolver=lambda host, port: mixed[host])
    assert check_url("https://images.example.org/x.jpg", resolver=lambda host, port: mixed[host],
                     allow_private=True) == mixed["images.example.org"]
    assert connections == []


@pytest.mark.parametrize("url", ["ftp://example.org/x.jpg", "file:///etc/passwd", "gopher://example.org/"])
def test_only_http_and_https(url):
    with pytest.raises(FetchRefused, match="only http and https"):
        safe_fetch(url)


def test_local_server_is_fetched_only_with_allow_private(server, store, tmp_path):
    server.body("/page.jpg", _image_bytes())
    manifest = _manifest(tmp_path, [f"{server.base}/page.jpg"])
    with pytest.raises(FetchRefused, match="loopback"):
        safe_fetch(f"{server.base}/page.jpg")
    report = ingest_iiif(store, manifest)
    assert report.added == [] and "loopback" in report.skipped[0][1]
    assert server.hits == []  # refused before connecting
    report = ingest_iiif(store, manifest, allow_private=True)
    assert len(report.added) == 1 and server.hits == ["/page.jpg"]


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/page.jpg", "file:///etc/passwd"])
def test_redirect_to_another_scheme_is_refused(server, target):
    server.redirect("/page.jpg", target)
    with pytest.raises(FetchRefused, match="only http and https"):
        safe_fetch(f"{server.base}/page.jpg", timeout=5, allow_private=True)


def test_redirects_are_capped(server):
    server.redirect("/loop", "/loop")
    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        safe_fetch(f"{server.base}/loop", timeout=5, allow_private=True, max_redirects=3)
    assert len(server.hits) == 4


def test_redirect_to_a_private_address_is_refused(server, monkeypatch, connections):
    # 127.0.0.1 plays a public image server (the only address the test may use); the redirect points at a
    # name that resolves to a private address. The stub resolver answers both names.
    real_refusal = iiif_fetch.address_refusal
    monkeypatch.setattr(iiif_fetch, "address_refusal", lambda a: None if a == "127.0.0.1" else real_refusal(a))
    names = {"images.example.org": ["127.0.0.1"], "internal.example.org": ["10.0.0.1"]}
    calls = []

    def resolver(host, port):
        calls.append(host)
        return names[host]

    server.body("/ok.jpg", b"fine")
    server.redirect("/page.jpg", f"http://internal.example.org:{server.port}/secret")
    # The checked address is the one connected to: the system resolver does not know these names.
    assert safe_fetch(f"http://images.example.org:{server.port}/ok.jpg", timeout=5, resolver=resolver) == b"fine"
    assert server.hosts[-1] == f"images.example.org:{server.port}" and calls == ["images.example.org"]
    with pytest.raises(FetchRefused, match="10.0.0.1, a private address"):
        safe_fetch(f"http://images.example.org:{server.port}/page.jpg", timeout=5, resolver=resolver)
    assert set(connections) == {"127.0.0.1"} and server.hits == ["/ok.jpg", "/page.jpg"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
def test_https_verifies_the_host_name_on_the_checked_address(server, tmp_path, monkeypatch):
    pem = tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=images.example.org", "-addext", "subjectAltName=DNS:images.example.org",
                    "-keyout", str(pem), "-out", str(pem)], check=True, capture_output=True)
    server.use_tls(str(pem))
    server.body("/page.jpg", b"over tls")
    trusted = ssl.create_default_context(cafile=str(pem))
    monkeypatch.setattr(iiif_fetch.ssl, "create_default_context", lambda: trusted)
    resolver = {"images.example.org": ["127.0.0.1"], "other.example.org": ["127.0.0.1"]}.get
    url = f"https://images.example.org:{server.port}/page.jpg"
    assert safe_fetch(url, timeout=5, allow_private=True, resolver=lambda h, p: resolver(h)) == b"over tls"
    # The same address under another name: the certificate does not match, as it would not for a rebound name.
    with pytest.raises(OSError, match="certificate verify failed"):
        safe_fetch(url.replace("images.", "other."), timeout=5, allow_private=True,
                   resolver=lambda h, p: resolver(h))


def _drip(where):
    """A handler sending 100 bytes, one per 0.1 s, in the headers or in the body."""

    def send(request):
        if where == "headers":
            for byte in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"x" * 100:
                request.wfile.write(bytes([byte]))
                request.wfile.flush()
                time.sleep(0.1)
            return
        request.send_response(200)
        request.send_header("Content-Length", "100")
        request.end_headers()
        request.wfile.flush()
        for _ in range(100):
            request.wfile.write(b"x")
            request.wfile.flush()
            time.sleep(0.1)
    return send


@pytest.mark.parametrize("where", ["headers", "body"])
def test_slow_drip_is_cut_at_the_deadline(server, where):
    server.routes["/slow"] = _drip(where)
    started = time.monotonic()
    with pytest.raises(FetchDeadline, match="fetch deadline of 1 s exceeded"):
        safe_fetch(f"{server.base}/slow", timeout=1, allow_private=True)
    assert time.monotonic() - started < 6  # the drip alone takes 10 s; not a tight timing check


def test_ingest_deadlines_per_fetch_and_per_manifest(server, store, tmp_path):
    server.routes["/slow.jpg"] = _drip("body")
    manifest = _manifest(tmp_path, [f"{server.base}/slow.jpg"] * 3)
    report = ingest_iiif(store, manifest, allow_private=True, fetch_timeout=0.5)
    assert len(report.skipped) == 3 and all("deadline of 0.5 s" in reason for _, reason in report.skipped)
    report = ingest_iiif(store, manifest, allow_private=True, manifest_timeout=0.5)
    reasons = dict(report.skipped)
    assert "the manifest deadline of 0.5 s passed" in reasons[str(manifest)]
    assert "ingest stopped at canvas 2 of 3" in reasons[str(manifest)]


def test_oversized_image_and_manifest_are_refused(server, store, tmp_path):
    image = _image_bytes(300, 300, "PNG", noise=True)
    server.body("/big.png", image)
    with pytest.raises(FetchTooLarge, match=f"big.png: response of {len(image)} bytes exceeds the limit"):
        safe_fetch(f"{server.base}/big.png", timeout=5, max_bytes=10_000, allow_private=True)
    manifest = _manifest(tmp_path, [f"{server.base}/big.png"])
    report = ingest_iiif(store, manifest, allow_private=True, max_image_bytes=10_000)
    assert report.added == []
    assert f"{server.base}/big.png: response of {len(image)} bytes exceeds the limit of 10000 bytes" in (
        report.skipped[0][1])
    server.body("/manifest.json", manifest.read_bytes())
    for source in (manifest, f"{server.base}/manifest.json"):
        report = ingest_iiif(store, source, allow_private=True, max_manifest_bytes=100)
        assert report.added == [] and "exceeds the limit of 100 bytes" in report.skipped[0][1]


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_padded_image_is_stored_reencoded(server, store, tmp_path, fmt, suffix):
    padded = _image_bytes(200, 270, fmt) + b"\0" * 3_000_000  # a valid image followed by 3 MB of padding
    server.body("/page", padded)
    report = ingest_iiif(store, _manifest(tmp_path, [f"{server.base}/page"]), allow_private=True)
    assert len(report.added) == 1
    item = store.get_item(report.added[0])
    stored = store.resolve_path(item["path"])
    assert stored.suffix == suffix and stored.stat().st_size < 100_000
    with Image.open(stored) as image:
        assert image.size == (200, 270)


def test_manifest_canvases_are_read_one_at_a_time():
    # 10,000 canvases over three image URLs, each with an external annotation list.
    manifest = {"@context": "http://iiif.io/api/presentation/3/context.json", "type": "Manifest",
                "items": [{"id": f"https://example.org/c{i}", "type": "Canvas", "width": 10, "height": 10,
                           "label": {"en": [f"page {i}"]}, "annotations": [f"https://example.org/a{i}"],
                           "items": [{"type": "AnnotationPage", "items": [{
                               "type": "Annotation", "motivation": "painting",
                               "body": {"id": f"https://example.org/img{i % 3}.jpg", "type": "Image"}}]}]}
                          for i in range(10_000)]}
    fetched = []
    page = ('{"type": "AnnotationPage", "items": [{"type": "Annotation", "motivation": "commenting", '
            '"body": {"type": "TextualBody", "value": "note"}, "target": "%s#xywh=1,1,2,2"}]}')

    def fetch(url):
        fetched.append(url)
        return (page % url.replace("/a", "/c")).encode()

    problems = []
    version, total, canvases = parse_manifest(manifest, fetch, problems)
    assert (version, total, fetched) == (3, 10_000, [])  # nothing read yet
    first = next(canvases)
    assert first.regions[0].label == "note" and fetched == ["https://example.org/a0"]
    tracemalloc.start()
    try:
        count = sum(1 for _ in canvases)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 9_999 and len(fetched) == 10_000 and problems == []
    assert peak < 1_000_000, peak  # holding 10,000 canvases with their regions would take several MB


def test_ingest_holds_one_image_at_a_time(server, store, tmp_path):
    images = [_image_bytes(300, 300 + i, "PNG", noise=True) for i in range(10)]  # distinct, ~0.27 MB each
    for i, data in enumerate(images):
        server.body(f"/p{i}.png", data)
    manifest = _manifest(tmp_path, [f"{server.base}/p{i}.png" for i in range(10)])
    tracemalloc.start()
    try:
        report = ingest_iiif(store, manifest, allow_private=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(report.added) == 10
    assert peak < 4 * len(images[0]) < sum(map(len, images)) / 2, peak


def test_cli_allow_private(server, tmp_path, capsys):
    server.body("/page.jpg", _image_bytes())
    manifest = _manifest(tmp_path, [f"{server.base}/page.jpg"])
    root = tmp_path / "root"
    # Nothing could be ingested into the store this command created: exit 1, and no empty corpus is left behind.
    assert main(["--root", str(root), "ingest", "--iiif", str(manifest)]) == 1
    out, err = capsys.readouterr()
    assert "loopback" in out and "nothing was ingested" in err and server.hits == []
    assert not (root / "corpus.sqlite").exists()
    assert main(["--root", str(root), "ingest", "--iiif", str(manifest), "--allow-private",
                 "--fetch-timeout", "5", "--max-image-mb", "0.001"]) == 1
    assert "exceeds the limit of 1048 bytes" in capsys.readouterr().out
    assert main(["--root", str(root), "ingest", "--iiif", str(manifest), "--allow-private"]) == 0
    with Store(root) as store:
        assert store.count_items() == 1
