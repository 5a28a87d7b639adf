"""Ingest IIIF Presentation API 2 and 3 manifests: one item per canvas, plus one per ``#xywh=`` region.

Page images are fetched through the Image API at a bounded size, ``{service}/full/!{max_size},{max_size}/0/
default.jpg`` (falling back to the image resource's own URL), validated like scanned files and saved under
``ROOT/images/``. Regions come from annotations that target ``canvas#xywh=x,y,w,h`` (v2 ``otherContent``,
v3 ``annotations``) and from ranges in ``structures`` that list such canvas fragments; their canvas
coordinates are scaled to the stored image. Metadata pairs go to the book columns where the label is a common
one (Title, Author, Date, Printer, Publisher, Place) and to ``extra`` otherwise; manifest-level metadata
applies to every canvas. The book id is derived from the manifest id.

Fetching is injectable (``fetch=callable(url) -> bytes``) so that tests run on local files; the default is
:func:`corpus_index.ingest.iiif_fetch.safe_fetch`, which does not trust the manifest: only http(s), no loopback,
private, link-local or other non-global addresses unless ``allow_private`` (checked after name resolution and
on every redirect), a wall-clock deadline per fetch and a byte limit per response. The whole ingest has a
deadline too, and every fetched image is decoded, validated and re-encoded before it is stored, so what is
kept is an image and nothing else the server sent. Problems with the manifest or a canvas are reported in the
:class:`~corpus_index.ingest.run.IngestReport`, never raised (the loop over canvases is
:class:`~corpus_index.ingest.run.IngestRun`'s, shared with folder ingest).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from corpus_index.ingest.iiif_fetch import (
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_TIMEOUT,
    FetchDeadline,
    FetchRefused,
    FetchTooLarge,
    address_refusal,
    check_url,
    safe_fetch,
)
from corpus_index.ingest.iiif_manifest import (
    DEFAULT_MAX_MANIFEST_BYTES,
    YEAR,
    Canvas,
    Fetch,
    ManifestError,
    Region,
    book_id,
    id_of,
    metadata_fields,
    parse_manifest,
    plain_text,
    read_manifest,
)
from corpus_index.ingest.images import (
    DEFAULT_MAX_PIXELS,
    THUMB_SIZE,
    ImageRejected,
    make_thumbnail,
    open_validated,
    sha256_bytes,
    write_bytes_atomic,
)
from corpus_index.ingest.run import IngestReport, IngestRun
from corpus_index.progress import Progress
from corpus_index.storage.layout import Layout
from corpus_index.storage.store import Store

__all__ = ["DEFAULT_MANIFEST_TIMEOUT", "DEFAULT_MAX_IMAGE_BYTES", "DEFAULT_MAX_MANIFEST_BYTES",
           "DEFAULT_MAX_REDIRECTS", "DEFAULT_TIMEOUT", "Fetch", "FetchDeadline", "FetchRefused", "FetchTooLarge",
           "ManifestError", "address_refusal", "book_id", "check_url", "ingest_iiif", "safe_fetch"]
DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
# Long enough for a book of some thousand pages from a slow server; a stalled ingest ends and can be resumed.
DEFAULT_MANIFEST_TIMEOUT = 6 * 3600.0


class _Fetcher:
    """The fetch of one ingest: the injected or default fetch, each call bounded by the per-fetch deadline,
    what is left of the manifest's deadline, and a byte limit (checked again after an injected fetch)."""

    def __init__(self, fetch: Fetch | None, allow_private: bool, fetch_timeout: float,
                 manifest_timeout: float | None, max_redirects: int):
        self.fetch, self.allow_private, self.max_redirects = fetch, allow_private, max_redirects
        self.fetch_timeout, self.manifest_timeout = fetch_timeout, manifest_timeout
        self.deadline = None if manifest_timeout is None else time.monotonic() + manifest_timeout

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def get(self, url: str, max_bytes: int) -> bytes:
        timeout = self.fetch_timeout
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise FetchDeadline(f"{url}: not fetched, the manifest deadline of {self.manifest_timeout:g} s "
                                    "has passed")
            timeout = min(timeout, left)
        if self.fetch is None:
            data = safe_fetch(url, timeout, max_bytes, allow_private=self.allow_private,
                              max_redirects=self.max_redirects)
        else:
            data = self.fetch(url)
        if not isinstance(data, (bytes, bytearray)):  # a str would be taken for a local file name
            raise TypeError(f"fetch returned {type(data).__name__}, not bytes")
        if len(data) > max_bytes:
            raise FetchTooLarge(f"{url}: response of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
        return data


def _scaled_region(region: Region, canvas: Canvas, width: int, height: int) -> tuple[int, ...] | None:
    """The region in pixels of the stored image (clamped to it), or ``None`` if it lies outside."""
    x, y, w, h = region.xywh
    if region.percent:
        sx, sy = width / 100.0, height / 100.0
    else:  # canvas units -> stored pixels; a canvas without a size is taken to be the image's size
        sx = width / float(canvas.width) if canvas.width else 1.0
        sy = height / float(canvas.height) if canvas.height else 1.0
    x0, y0 = max(0, round(x * sx)), max(0, round(y * sy))
    x1, y1 = min(width, round((x + w) * sx)), min(height, round((y + h) * sy))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _keep_reencoded(root: Path, image: Image.Image, max_size: int,
                    lossless: bool) -> tuple[str, str, Image.Image]:
    """Store a decoded, validated image under ``root/images``; return (sha256 of the stored file, its path
    relative to ``root``, the image as stored).

    The stored file is always a fresh encoding of the decoded pixels, never the fetched bytes: whatever a server
    appends or hides in a file (padding, trailing data, extra chunks) is not kept. PNG stays PNG (lossless) when
    it needs no shrinking; everything else, and anything larger than ``max_size``, becomes a JPEG.
    """
    if max(image.size) > max_size:  # e.g. a full-size master fetched as a fallback
        image, lossless = make_thumbnail(image, max_size), False
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if lossless else "JPEG", **({} if lossless else {"quality": 90}))
    encoded = buffer.getvalue()
    digest = sha256_bytes(encoded)  # the hash of the file as stored, as for scans ingested from a folder
    relpath = Layout.image_relpath(digest, ".png" if lossless else ".jpg")
    write_bytes_atomic(encoded, Path(root) / relpath)
    return digest, relpath, image


def _page_image(store: Store, urls: list[str], fetcher: _Fetcher, max_size: int, max_pixels: int,
                max_image_bytes: int):
    """(source url, sha256, stored path, RGB image) of a canvas image: the stored copy if this URL was
    ingested before, else fetched, validated, bounded to ``max_size``, re-encoded and saved under
    ``ROOT/images``."""
    for url in urls:
        existing = store.find_item(source=url)
        if existing is not None:
            item = store.get_item(existing)
            try:
                image = open_validated(store.resolve_path(item["path"]), max_pixels=max_pixels)
                return url, item["hash"], item["path"], image
            except (OSError, ImageRejected):
                break  # the stored copy is gone or damaged: fetch again
    errors = []
    for url in urls:
        try:
            data = fetcher.get(url, max_image_bytes)
            lossless = bytes(data[:8]) == b"\x89PNG\r\n\x1a\n"
            image = open_validated(data, max_pixels=max_pixels)
            del data  # only the decoded image is needed from here on
        except Exception as error:
            errors.append(f"{url}: {error}")
            continue
        digest, relpath, image = _keep_reencoded(store.root, image, max_size, lossless)
        return url, digest, relpath, image
    raise ImageRejected("no usable image: " + "; ".join(errors))


def ingest_iiif(store: Store, manifest: str | Path, max_size: int = 1600, progress: Progress | None = None, *,
                fetch: Fetch | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, thumb_size: int = THUMB_SIZE,
                allow_private: bool = False, fetch_timeout: float = DEFAULT_TIMEOUT,
                manifest_timeout: float | None = DEFAULT_MANIFEST_TIMEOUT,
                max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
                max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
                max_redirects: int = DEFAULT_MAX_REDIRECTS) -> IngestReport:
    """Ingest the canvases of a IIIF manifest (a local file or an http(s) URL).

    Canvases are read, fetched and stored one at a time. Memory is bounded by the parsed manifest (whose JSON
    is at most ``max_manifest_bytes``; parsed, it takes several times that), one canvas' image (at most
    ``max_image_bytes`` fetched, at most ``max_pixels`` decoded, plus the stored copy of at most
    ``max_size`` squared pixels) and one report entry per canvas: no image is kept after its canvas, so
    a manifest of many thousand canvases needs no more memory for images than one of a single canvas.

    Parameters
    ----------
    store : Store
    manifest : str or path-like
        The manifest file or URL.
    max_size : int
        Longest side requested from the Image API (``!max_size,max_size``) and kept of fallback images.
    progress : callable, optional
        ``progress(done, total, message)`` after each canvas (``done`` counts canvases of the manifest).
    fetch : callable, optional
        ``fetch(url) -> bytes``, replacing the default :func:`~corpus_index.ingest.iiif_fetch.safe_fetch`; then
        ``allow_private``, ``fetch_timeout`` and ``max_redirects`` are the callable's business, while the byte
        limits and the manifest deadline still apply.
    max_pixels : int
        Larger images are skipped before decoding.
    thumb_size : int
        Longest side of the thumbnails.
    allow_private : bool
        Also fetch from loopback, private and link-local addresses (a local image server). Off by default, as
        the manifest, not the user, chooses the URLs.
    fetch_timeout : float
        Wall-clock seconds for each fetch (manifest, annotation list or image), redirects included.
    manifest_timeout : float or None
        Wall-clock seconds for the whole ingest; canvases not reached by then are left for a later ingest
        (which does not fetch the stored ones again). ``None``: no limit.
    max_image_bytes, max_manifest_bytes : int
        Largest accepted image response; largest accepted manifest or annotation list (file or response).
    max_redirects : int
        Redirects followed per fetch.

    Returns
    -------
    IngestReport
        Problems with the manifest or with single canvases are in ``skipped``; nothing is raised for them.
    """
    run = IngestRun(store, "iiif", str(manifest), progress, thumb_size)
    fetcher = _Fetcher(fetch, allow_private, fetch_timeout, manifest_timeout, max_redirects)
    problems: list[tuple[str, str]] = []  # canvases and annotation lists that the iteration could not read
    try:
        total, canvases, book = _read_book(manifest, lambda url: fetcher.get(url, max_manifest_bytes),
                                           max_manifest_bytes, problems)
    except Exception as error:  # ManifestError, or a manifest odd enough to break the reading of it
        reason = str(error) if isinstance(error, ManifestError) else f"{type(error).__name__}: {error}"
        run.report.skip(str(manifest), reason)
        total, canvases, book = 0, iter(()), None
    pages = _CanvasPages(run, fetcher, book, max_size, max_pixels, max_image_bytes)
    run.each(_canvas_items(canvases, total, problems, run.report, fetcher, str(manifest)), total, pages.ingest)
    for source, reason in problems:
        run.report.skip(source, reason)
    return run.finish()


@dataclass
class _Book:
    """What the manifest says of all its canvases: the book id, book columns and ``extra`` fields."""

    id: str
    columns: dict
    extra: dict


def _read_book(manifest: str | Path, fetch_json: Fetch, max_manifest_bytes: int,
               problems: list[tuple[str, str]]) -> tuple[int, Iterator[Canvas], _Book]:
    """Read and parse the manifest: (number of canvases, the canvases (read lazily; what cannot be read goes to
    ``problems``), the book)."""
    data = read_manifest(manifest, fetch_json, max_manifest_bytes)
    version, total, canvases = parse_manifest(data, fetch_json, problems)
    manifest_id = id_of(data)
    if not isinstance(manifest_id, str) or not manifest_id:
        manifest_id = str(Path(str(manifest)).expanduser().resolve())
    columns, extra = metadata_fields(data.get("metadata"))
    columns.setdefault("title", plain_text(data.get("label")))
    nav_year = YEAR.search(str(data.get("navDate") or ""))
    if nav_year:
        columns.setdefault("year", int(nav_year.group(1)))
    extra.update(manifest=manifest_id, iiif_version=version)
    return total, canvases, _Book(book_id(manifest_id), columns, extra)


def _canvas_items(canvases: Iterator[Canvas], total: int, problems: list[tuple[str, str]], report: IngestReport,
                  fetcher: _Fetcher, manifest: str) -> Iterator[tuple[int, str, Canvas]]:
    """The items of :meth:`IngestRun.each`: (position, name, canvas), reporting the canvases the iteration could
    not read as it goes; stops when the manifest's deadline has passed."""
    for canvas in canvases:
        for source, reason in problems:
            report.skip(source, reason)
        problems.clear()
        if fetcher.expired():
            report.skip(manifest, f"ingest stopped at canvas {canvas.index + 1} of {total}: the manifest deadline "
                                  f"of {fetcher.manifest_timeout:g} s passed; ingest it again to go on")
            return
        yield canvas.index + 1, canvas.name, canvas


class _CanvasPages:
    """The step of :meth:`IngestRun.each` for one canvas: its page image as an item, and one item per region."""

    def __init__(self, run: IngestRun, fetcher: _Fetcher, book: _Book | None, max_size: int, max_pixels: int,
                 max_image_bytes: int):
        self.run, self.fetcher, self.book = run, fetcher, book
        self.max_size, self.max_pixels, self.max_image_bytes = max_size, max_pixels, max_image_bytes

    def urls(self, canvas: Canvas) -> list[str]:
        """The canvas' image URLs to try: the Image API at the bounded size, then the image resource's own."""
        urls = []
        if canvas.service:
            urls.append(f"{canvas.service}/full/!{self.max_size},{self.max_size}/0/default.jpg")
        if canvas.image_url and canvas.image_url not in urls:
            urls.append(canvas.image_url)
        return urls

    def ingest(self, canvas: Canvas) -> None:
        urls = self.urls(canvas)
        if not urls:
            self.run.report.skip(canvas.name, "canvas has no image service and no image URL")
            return
        url, digest, relpath, image = _page_image(self.run.store, urls, self.fetcher, self.max_size,
                                                  self.max_pixels, self.max_image_bytes)
        columns, extra = metadata_fields(canvas.metadata)
        fields = {**self.book.columns, **columns, "book": self.book.id, "page": canvas.index + 1,
                  "label": canvas.label or f"page {canvas.index + 1}",
                  "extra": {**self.book.extra, **extra, "canvas": canvas.id}}
        self.run.add(image, source=url, digest=digest, path=relpath, region=None, fields=fields,
                     report_as=canvas.name)
        for region in canvas.regions:
            self.add_region(canvas, region, image, url, digest, relpath, fields)

    def add_region(self, canvas: Canvas, region: Region, image: Image.Image, url: str, digest: str, relpath: str,
                   fields: dict) -> None:
        fragment = "xywh=" + ("percent:" if region.percent else "") + ",".join(f"{v:g}" for v in region.xywh)
        where = f"{canvas.name}#{fragment}"
        pixels = _scaled_region(region, canvas, image.width, image.height)
        if pixels is None:
            self.run.report.skip(where, f"region lies outside the {image.width}x{image.height} page image")
            return
        region_extra = {**fields["extra"], "canvas_fragment": fragment, "annotation": region.source}
        region_fields = {**fields, "kind": "region", "label": region.label or f"{fields['label']} (region)",
                         "extra": region_extra}
        self.run.add(image, source=url, digest=digest, path=relpath, region=pixels, fields=region_fields,
                     report_as=where)
