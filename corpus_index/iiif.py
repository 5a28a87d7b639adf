"""Ingest IIIF Presentation API 2 and 3 manifests: one item per canvas, plus one per ``#xywh=`` region.

Page images are fetched through the Image API at a bounded size, ``{service}/full/!{max_size},{max_size}/0/
default.jpg`` (falling back to the image resource's own URL), validated like scanned files and saved under
``ROOT/images/``. Regions come from annotations that target ``canvas#xywh=x,y,w,h`` (v2 ``otherContent``,
v3 ``annotations``) and from ranges in ``structures`` that list such canvas fragments; their canvas
coordinates are scaled to the stored image. Metadata pairs go to the book columns where the label is a common
one (Title, Author, Date, Printer, Publisher, Place) and to ``extra`` otherwise; manifest-level metadata
applies to every canvas. The book id is derived from the manifest id.

Fetching is injectable (``fetch=callable(url) -> bytes``) so that tests run on local files; the default,
:func:`urllib_fetch`, allows only http(s), with a timeout and a size cap. Problems with the manifest or a
canvas are reported in the :class:`~corpus_index.ingest.IngestReport`, never raised.
"""

from __future__ import annotations

import sqlite3
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from corpus_index.iiif_manifest import (
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
from corpus_index.images import (
    DEFAULT_MAX_PIXELS,
    THUMB_SIZE,
    ImageRejected,
    keep_fetched_image,
    open_validated,
)
from corpus_index.ingest import IngestReport, Progress, add_image_item
from corpus_index.store import Store

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT", "Fetch", "ManifestError", "book_id", "ingest_iiif",
           "urllib_fetch"]
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def urllib_fetch(url: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """GET ``url`` (http or https only) with a timeout, refusing responses larger than ``max_bytes``."""
    if urlparse(url).scheme not in ("http", "https"):
        raise ValueError(f"refusing to fetch {url!r}: only http and https URLs are allowed")
    request = urllib.request.Request(url, headers={"User-Agent": "sphaera-similarity-explorer/0.1"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise ValueError(f"{url}: response of {int(declared)} bytes exceeds the {max_bytes} byte cap")
        data = response.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{url}: response exceeds the {max_bytes} byte cap")
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


def _page_image(store: Store, urls: list[str], fetch: Fetch, max_size: int, max_pixels: int):
    """(source url, sha256, stored path, RGB image) of a canvas image: the stored copy if this URL was
    ingested before, else fetched, validated, bounded to ``max_size`` and saved under ``ROOT/images``."""
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
            data = fetch(url)
            if not isinstance(data, (bytes, bytearray)):  # a str would be taken for a local file name
                raise TypeError(f"fetch returned {type(data).__name__}, not bytes")
            image = open_validated(data, max_pixels=max_pixels)
        except Exception as error:
            errors.append(f"{url}: {error}")
            continue
        digest, relpath, image = keep_fetched_image(store.root, data, image, max_size)
        return url, digest, relpath, image
    raise ImageRejected("no usable image: " + "; ".join(errors))


def ingest_iiif(store: Store, manifest: str | Path, max_size: int = 1600, progress: Progress | None = None, *,
                fetch: Fetch | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                thumb_size: int = THUMB_SIZE) -> IngestReport:
    """Ingest the canvases of a IIIF manifest (a local file or an http(s) URL).

    Parameters
    ----------
    store : Store
    manifest : str or path-like
        The manifest file or URL.
    max_size : int
        Longest side requested from the Image API (``!max_size,max_size``) and kept of fallback images.
    progress : callable, optional
        ``progress(done, total, message)`` after each canvas.
    fetch : callable, optional
        ``fetch(url) -> bytes``; defaults to :func:`urllib_fetch`.
    max_pixels : int
        Larger images are skipped before decoding.
    thumb_size : int
        Longest side of the thumbnails.

    Returns
    -------
    IngestReport
        Problems with the manifest or with single canvases are in ``skipped``; nothing is raised for them.
    """
    started = datetime.now(UTC).isoformat(timespec="seconds")
    fetch = fetch or urllib_fetch
    report = IngestReport(source=str(manifest))
    problems: list[tuple[str, str]] = []
    canvases = []
    try:
        data = read_manifest(manifest, fetch)
        version, canvases = parse_manifest(data, fetch, problems)
        manifest_id = id_of(data)
        if not isinstance(manifest_id, str) or not manifest_id:
            manifest_id = str(Path(str(manifest)).expanduser().resolve())
        book_columns, book_extra = metadata_fields(data.get("metadata"))
        book_columns.setdefault("title", plain_text(data.get("label")))
        nav_year = YEAR.search(str(data.get("navDate") or ""))
        if nav_year:
            book_columns.setdefault("year", int(nav_year.group(1)))
        book_extra.update(manifest=manifest_id, iiif_version=version)
        book = book_id(manifest_id)
    except Exception as error:  # ManifestError, or a manifest odd enough to break the reading of it
        reason = str(error) if isinstance(error, ManifestError) else f"{type(error).__name__}: {error}"
        report.skip(str(manifest), reason)
        canvases = []
    for source, reason in problems:
        report.skip(source, reason)
    if canvases:
        for done, canvas in enumerate(canvases, start=1):
            try:
                _ingest_canvas(store, report, canvas, book, book_columns, book_extra, fetch, max_size,
                               max_pixels, thumb_size)
            except ImageRejected as error:
                report.skip(canvas.name, str(error))
            except sqlite3.Error:
                raise  # a broken database is not bad input
            except Exception as error:
                report.skip(canvas.name, f"{type(error).__name__}: {error}")
            if progress is not None:
                progress(done, len(canvases), canvas.name)
    store.log_ingest("iiif", str(manifest), started, len(report.added), len(report.duplicates),
                     report.skipped)
    return report


def _ingest_canvas(store: Store, report: IngestReport, canvas: Canvas, book: str, book_columns: dict,
                   book_extra: dict, fetch: Fetch, max_size: int, max_pixels: int, thumb_size: int) -> None:
    urls = []
    if canvas.service:
        urls.append(f"{canvas.service}/full/!{max_size},{max_size}/0/default.jpg")
    if canvas.image_url and canvas.image_url not in urls:
        urls.append(canvas.image_url)
    if not urls:
        report.skip(canvas.name, "canvas has no image service and no image URL")
        return
    url, digest, relpath, image = _page_image(store, urls, fetch, max_size, max_pixels)
    columns, extra = metadata_fields(canvas.metadata)
    fields = {**book_columns, **columns, "book": book, "page": canvas.index + 1,
              "label": canvas.label or f"page {canvas.index + 1}",
              "extra": {**book_extra, **extra, "canvas": canvas.id}}
    add_image_item(store, report, image, source=url, digest=digest, path=relpath, region=None, fields=fields,
                   thumb_size=thumb_size, report_as=canvas.name)
    for region in canvas.regions:
        fragment = "xywh=" + ("percent:" if region.percent else "") + ",".join(f"{v:g}" for v in region.xywh)
        where = f"{canvas.name}#{fragment}"
        pixels = _scaled_region(region, canvas, image.width, image.height)
        if pixels is None:
            report.skip(where, f"region lies outside the {image.width}x{image.height} page image")
            continue
        region_extra = {**fields["extra"], "canvas_fragment": fragment, "annotation": region.source}
        region_fields = {**fields, "kind": "region", "label": region.label or f"{fields['label']} (region)",
                         "extra": region_extra}
        add_image_item(store, report, image, source=url, digest=digest, path=relpath, region=pixels,
                       fields=region_fields, thumb_size=thumb_size, report_as=where)
