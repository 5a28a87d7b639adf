"""IIIF manifests v2 and v3 from local fixtures; the injected fetch maps the fixtures' URLs to local files."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.error import URLError

import pandas as pd
import pytest
from PIL import Image

from corpus_index.ingest.iiif import book_id, ingest_iiif, safe_fetch
from corpus_index.storage.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "iiif"
V2 = FIXTURES / "manifest_v2.json"
V3 = FIXTURES / "manifest_v3.json"


class FakeServer:
    """``fetch`` for the tests: URLs that start with a known prefix return a fixture file, others fail."""

    def __init__(self, max_size=1600):
        m = f"!{max_size},{max_size}"
        self.routes = {
            f"https://iiif.example.org/image/f1/full/{m}/0/default.jpg": "page1.jpg",
            "https://iiif.example.org/files/f2.png": "page2.png",
            f"https://iiif.example.org/iiif/3/img/p1/full/{m}/0/default.jpg": "page3.jpg",
            "https://iiif.example.org/iiif/3/files/p2.png": "page2.png",
            "https://iiif.example.org/iiif/3/sfera-1585/annotations/p1-external": "annotations_p1.json",
            "https://iiif.example.org/remote/manifest.json": "manifest_v3.json",
        }
        self.calls = []

    def __call__(self, url):
        self.calls.append(url)
        if url not in self.routes:
            raise URLError(f"connection refused: {url}")
        return (FIXTURES / self.routes[url]).read_bytes()


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "root")
    yield store
    store.close()


def _by_label(store):
    return {row.label: row for row in store.query_items().itertuples()}


def test_v2_manifest(store):
    fetch, calls = FakeServer(), []
    report = ingest_iiif(store, V2, fetch=fetch, progress=lambda done, total, _: calls.append((done, total)))
    assert report.skipped == [] and len(report.added) == 4
    assert calls == [(1, 2), (2, 2)]  # one call per canvas
    items = _by_label(store)
    page = items["fol. 1r"]
    assert page.book == book_id("https://iiif.example.org/sphaera-1550/manifest")
    assert page.book.startswith("sphaera-1550-")
    assert page.title == "Sphaera Ioannis de Sacro Bosco"  # HTML removed
    assert (page.author, page.printer, page.place, page.year) == (
        "Johannes de Sacrobosco", "Guillaume Cavellat", "Paris", 1550)
    assert page.page == 1 and pd.isna(page.region) and (page.width, page.height) == (80, 60)
    item = store.get_item(page.id)
    assert item["extra"]["Shelfmark"] == "Res. 4 Astr. 12"  # the English of two language-tagged values
    assert item["extra"]["Date"] == "MDL [1550]" and item["extra"]["Folio"] == "1r"
    assert item["extra"]["canvas"] == "https://iiif.example.org/sphaera-1550/canvas/f1"
    # The stored copy lives under ROOT/images, referenced relative to the root.
    assert page.path.startswith("images/") and store.resolve_path(page.path).is_file()
    assert page.source == "https://iiif.example.org/image/f1/full/!1600,1600/0/default.jpg"

    # The #xywh annotation (canvas 800x600 -> image 80x60) became a region of the same image.
    region = items["Tabula climatum"]
    assert region.region == "20,30,40,20" and region.kind == "region" and region.path == page.path
    assert store.get_item(region.id)["extra"]["canvas_fragment"] == "xywh=200,300,400,200"
    # Canvas 2 has no service: its image URL is used; the range lists a fragment of it (canvas 600x800).
    assert items["fol. 1v"].source == "https://iiif.example.org/files/f2.png"
    assert items["Figura eclipsis"].region == "0,40,60,40"
    assert "a note on the whole page" not in items  # annotations on the whole canvas are not regions


def test_v3_manifest(store):
    fetch = FakeServer()
    report = ingest_iiif(store, V3, fetch=fetch)
    items = _by_label(store)
    assert set(items) == {"c. 12r", "Tavola delle ascensioni", "Headline", "c. 12v", "Eclipse diagram"}
    assert len(report.added) == 5
    page = items["c. 12r"]
    assert page.title == "The sphere of the world" and page.year == 1585  # English label; year from navDate
    assert (page.author, page.printer, page.place) == (
        "Alessandro Piccolomini", "Giovanni Varisco", "Venezia")
    assert page.book.startswith("sfera-1585-") and page.Language == "Italian"
    # canvas 1600x1200 -> image 80x60: factor 1/20
    assert items["Tavola delle ascensioni"].region == "20,10,40,30"
    assert items["Headline"].region == "0,0,80,10"  # from the external annotation page
    # The ImageService2 failed, so the body's URL was used; percent fragment of a 60x80 image.
    assert items["c. 12v"].source == "https://iiif.example.org/iiif/3/files/p2.png"
    assert "https://iiif.example.org/iiif/2/img/p2/full/!1600,1600/0/default.jpg" in fetch.calls
    assert items["Eclipse diagram"].region == "0,40,60,40"
    assert store.get_item(items["c. 12v"].id)["extra"]["Page note"] == "stained"
    assert store.books().iloc[0]["title"] == "The sphere of the world"  # canvas metadata did not overwrite

    reasons = dict(report.skipped)
    assert len(reasons) == 3
    assert "outside the 80x60 page image" in reasons[
        "https://iiif.example.org/iiif/3/sfera-1585/canvas/p1#xywh=5000,5000,10,10"]
    assert "no image service and no image URL" in reasons[
        "https://iiif.example.org/iiif/3/sfera-1585/canvas/p3-no-image"]
    offline = reasons["https://iiif.example.org/iiif/3/sfera-1585/canvas/p4-offline"]
    assert "no usable image" in offline and "connection refused" in offline


def test_reingest_fetches_no_image_and_adds_nothing(store):
    first = ingest_iiif(store, V2, fetch=FakeServer())
    fetch = FakeServer()
    second = ingest_iiif(store, V2, fetch=fetch)
    assert second.added == [] and sorted(i for _, i in second.duplicates) == sorted(first.added)
    assert fetch.calls == []  # the stored copies were used


def test_max_size_is_requested_and_enforced(store):
    fetch = FakeServer(max_size=50)
    report = ingest_iiif(store, V2, max_size=50, fetch=fetch)
    assert "https://iiif.example.org/image/f1/full/!50,50/0/default.jpg" in fetch.calls
    assert len(report.added) == 4
    for row in store.query_items().itertuples():
        with Image.open(store.resolve_path(row.path)) as image:
            # The fake server ignores the size; what is kept is shrunk all the same.
            assert max(image.size) <= 50
        assert row.width <= 50 and row.height <= 50


def test_manifest_from_url(store):
    report = ingest_iiif(store, "https://iiif.example.org/remote/manifest.json", fetch=FakeServer())
    assert len(report.added) == 5


@pytest.mark.parametrize("manifest, reason", [
    (FIXTURES / "malformed.json", "invalid JSON"),
    (FIXTURES / "no_canvases.json", "no canvases"),
    (FIXTURES / "collection.json", "a IIIF Collection"),
    (FIXTURES / "page1.jpg", "invalid JSON"),
    (FIXTURES / "absent.json", "manifest file not found"),
    ("https://offline.example.org/manifest", "manifest not loaded"),
])
def test_bad_manifests_are_reported(store, manifest, reason):
    report = ingest_iiif(store, manifest, fetch=FakeServer())
    assert report.added == [] and len(report.skipped) == 1
    assert report.skipped[0][0] == str(manifest) and reason in report.skipped[0][1]
    assert store.count_items() == 0
    assert list(store.ingest_log()["skipped"]) == [1]


def test_broken_canvases_do_not_stop_the_rest(store, tmp_path):
    manifest = tmp_path / "odd.json"
    text = V2.read_text().replace('"sequences": [{', '"sequences": [{"canvases_note": 1,', 1)
    # A canvas that is a bare string, in front of the two good ones.
    text = text.replace('"canvases": [', '"canvases": ["not a canvas", ', 1)
    manifest.write_text(text)
    report = ingest_iiif(store, manifest, fetch=FakeServer())
    assert len(report.added) == 4
    assert report.skipped == [("canvas 1", "unreadable canvas: ValueError: canvas is not a JSON object")]


def test_default_fetch_refuses_other_schemes():
    with pytest.raises(ValueError, match="only http and https"):
        safe_fetch("file:///etc/passwd")


def test_default_fetch_caps_the_size():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            body = b"x" * 5000
            self.send_response(200)
            if self.path == "/declared":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert len(safe_fetch(f"{base}/declared", timeout=5, max_bytes=10_000, allow_private=True)) == 5000
        with pytest.raises(ValueError, match="exceeds the limit of 1000 bytes"):
            safe_fetch(f"{base}/declared", timeout=5, max_bytes=1000, allow_private=True)
        with pytest.raises(ValueError, match="exceeds the limit of 1000 bytes"):
            safe_fetch(f"{base}/undeclared", timeout=5, max_bytes=1000, allow_private=True)
    finally:
        server.shutdown()
        server.server_close()
