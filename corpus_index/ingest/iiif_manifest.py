"""Read IIIF Presentation API 2 and 3 manifests: canvases, their images, metadata and ``#xywh=`` regions.

Only what ingest needs is read: per canvas its id, label, size, Image API service (v2 ``images[0].resource
.service``; v3 ``items`` -> AnnotationPage -> painting Annotation -> ``body.service`` of type ImageService2/3)
or plain image URL, its metadata, and its regions from non-painting annotations (v2 ``otherContent``, v3
``annotations``; embedded or fetched) and from ranges in ``structures``. Anything unreadable raises
:class:`ManifestError` (the whole manifest) or is listed in ``problems`` (one canvas or annotation list).
Canvases are read one at a time from the parsed JSON (:func:`parse_manifest` returns an iterator), and the
manifest itself is refused above a byte limit, because its parsed form is held in memory during the ingest.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

Fetch = Callable[[str], bytes]
DEFAULT_MAX_MANIFEST_BYTES = 20 * 1024 * 1024
# Metadata labels (lower case) that fill book columns; every other pair goes to extra under its own label.
LABEL_TO_COLUMN = {label: column for column, labels in {
    "title": "title|titel|titre|titolo",
    "author": "author|authors|creator|auteur|autor|autore",
    "year": "date|year|date of publication|publication date",
    "printer": "printer|publisher|printer/publisher|publisher/printer|drucker|imprimeur|tipografo",
    "place": "place|place of publication|publication place|place of printing|druckort|lieu|luogo",
}.items() for label in labels.split("|")}
_XYWH = re.compile(r"xywh=(?:(pixel|percent):)?([\d.]+),([\d.]+),([\d.]+),([\d.]+)")
YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")


class ManifestError(ValueError):
    """A manifest that cannot be ingested at all; the message is the reason reported."""


def _as_list(value: Any) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def id_of(value: Any) -> str | None:
    """The ``id`` (v3) or ``@id`` (v2) of a JSON-LD object; a string is its own id; anything else ``None``."""
    if isinstance(value, dict):
        value = value.get("id") or value.get("@id")
    return value if isinstance(value, str) and value else None


def plain_text(value: Any) -> str | None:
    """Plain text of a v2 value (string, list, ``@value`` objects) or a v3 language map; HTML tags removed."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list):
        tagged = [v for v in value if isinstance(v, dict) and "@language" in v]
        english = [v for v in tagged if str(v["@language"]).lower().startswith("en")]
        chosen = english if english else value
        text = "; ".join(t for t in (plain_text(v) for v in chosen) if t)
    elif isinstance(value, dict):
        if "@value" in value:
            return plain_text(value["@value"])
        for key in ("en", "none", "@none"):
            if key in value:
                return plain_text(value[key])
        return plain_text(next(iter(value.values()), None))
    else:
        return None
    text = html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
    return text or None


def metadata_fields(pairs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split metadata label/value pairs into book columns and extra fields."""
    columns, extra = {}, {}
    for pair in _as_list(pairs):
        if not isinstance(pair, dict):
            continue
        label, value = plain_text(pair.get("label")), plain_text(pair.get("value"))
        if not label or value is None:
            continue
        column = LABEL_TO_COLUMN.get(label.lower().rstrip(":").strip())
        if column == "year":
            match = YEAR.search(value)
            if match:
                columns.setdefault("year", int(match.group(1)))
            if not match or match.group(1) != value:
                extra[label] = value  # keep "MDL [1550]" or a full date as written
        elif column is not None:
            columns.setdefault(column, value)
        else:
            extra[label] = value
    return columns, extra


def _service_id(services: Any) -> str | None:
    """The base URL of the first Image API service (v2 ``@id``/profile, v3 ``ImageService2``/``3``)."""
    fallback = None
    for service in _as_list(services):
        sid = id_of(service)
        if not sid:
            continue
        if isinstance(service, dict):
            kind = str(service.get("type") or service.get("@type") or "")
            described = json.dumps([service.get("@context"), service.get("profile")])
            if kind.startswith("ImageService") or "iiif.io/api/image" in described:
                return sid.rstrip("/")
        fallback = fallback or sid.rstrip("/")
    return fallback


def _target(target: Any) -> tuple[str | None, str | None]:
    """(canvas id, fragment) of an annotation target: ``"canvas#xywh=..."`` or a SpecificResource."""
    if isinstance(target, list):
        target = target[0] if target else None
    if isinstance(target, str):
        base, _, fragment = target.partition("#")
        return base, fragment or None
    if isinstance(target, dict):
        source = target.get("source") or target.get("full")
        if source is None:
            return _target(id_of(target))
        base, fragment = _target(id_of(source) if isinstance(source, dict) else source)
        for selector in _as_list(target.get("selector")):
            value = selector.get("value") if isinstance(selector, dict) else None
            if isinstance(value, str) and "xywh=" in value:
                fragment = value
        return base, fragment
    return None, None


@dataclass
class Region:
    """A ``#xywh=`` fragment on a canvas: canvas units (pixels, or percent of the canvas)."""

    xywh: tuple[float, float, float, float]
    percent: bool
    label: str | None
    source: str


@dataclass
class Canvas:
    """What is needed of one canvas: its image service or URL, label, size, metadata and regions."""

    id: str | None
    index: int
    label: str | None = None
    width: float | None = None
    height: float | None = None
    service: str | None = None
    image_url: str | None = None
    metadata: Any = None
    regions: list[Region] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.id or f"canvas {self.index + 1}"


def _region(fragment: str | None, label: str | None, source: str) -> Region | None:
    match = _XYWH.search(fragment or "")
    if not match:
        return None
    xywh = tuple(float(v) for v in match.groups()[1:])
    return Region(xywh=xywh, percent=match.group(1) == "percent", label=label, source=source)


def _body_text(body: Any) -> str | None:
    for item in _as_list(body):
        if isinstance(item, dict):
            text = plain_text(item.get("value") or item.get("chars") or item.get("label"))
            if text:
                return text
    return None


def _annotation_regions(canvas: Canvas, lists: Any, fetch: Fetch, problems: list) -> None:
    """Add to ``canvas.regions`` the non-painting ``#xywh`` annotations of embedded or fetched lists."""
    for annotation_list in _as_list(lists):
        if isinstance(annotation_list, str) or (isinstance(annotation_list, dict) and not (
                "items" in annotation_list or "resources" in annotation_list)):
            url = id_of(annotation_list)
            if not isinstance(url, str):
                continue
            try:
                annotation_list = json.loads(fetch(url))
            except Exception as error:
                problems.append((url, f"annotation list not loaded: {type(error).__name__}: {error}"))
                continue
        if not isinstance(annotation_list, dict):
            continue
        for annotation in _as_list(annotation_list.get("items") or annotation_list.get("resources")):
            if not isinstance(annotation, dict):
                continue
            motivation = json.dumps(annotation.get("motivation"))
            if "painting" in motivation:
                continue
            base, fragment = _target(annotation.get("target") or annotation.get("on"))
            body = annotation.get("body") or annotation.get("resource")
            label = _body_text(body) or plain_text(annotation.get("label"))
            region = _region(fragment, label, id_of(annotation) or canvas.name)
            if region is not None and base in (None, canvas.id):
                canvas.regions.append(region)


def _structure_regions(structures: Any, found: dict[str, list[Region]], depth: int = 0) -> None:
    """Collect, by canvas id, the regions listed by ranges: v2 ``canvases`` strings, v3 ``items`` of canvas
    fragments (ranges nest). Collected first, so that canvases can then be read one at a time."""
    if depth > 20:
        return
    for rng in _as_list(structures):
        if not isinstance(rng, dict):
            continue
        label = plain_text(rng.get("label"))
        for member in _as_list(rng.get("canvases")) + _as_list(rng.get("items")):
            kind = str(member.get("type") or member.get("@type") or "") if isinstance(member, dict) else ""
            if kind in ("Range", "sc:Range"):
                _structure_regions([member], found, depth + 1)
                continue
            base, fragment = _target(member)
            region = _region(fragment, label, id_of(rng) or "structures")
            if region is not None and base:
                found.setdefault(base, []).append(region)


def _canvas_v2(raw: dict, index: int, fetch: Fetch, problems: list) -> Canvas:
    canvas = Canvas(id=id_of(raw), index=index, label=plain_text(raw.get("label")), width=raw.get("width"),
                    height=raw.get("height"), metadata=raw.get("metadata"))
    image = next((i for i in _as_list(raw.get("images")) if isinstance(i, dict)), {})
    resource = image.get("resource") or {}
    if isinstance(resource, dict) and "oa:Choice" in json.dumps(resource.get("@type")):
        resource = resource.get("default") or next(iter(_as_list(resource.get("item"))), {})
    if isinstance(resource, dict):
        canvas.service, canvas.image_url = _service_id(resource.get("service")), id_of(resource)
    _annotation_regions(canvas, raw.get("otherContent"), fetch, problems)
    return canvas


def _canvas_v3(raw: dict, index: int, fetch: Fetch, problems: list) -> Canvas:
    canvas = Canvas(id=id_of(raw), index=index, label=plain_text(raw.get("label")), width=raw.get("width"),
                    height=raw.get("height"), metadata=raw.get("metadata"))
    for page in _as_list(raw.get("items")):
        for annotation in _as_list(page.get("items") if isinstance(page, dict) else None):
            if not isinstance(annotation, dict):
                continue
            motivation = annotation.get("motivation")
            if motivation is not None and "painting" not in json.dumps(motivation):
                continue
            body = next(iter(_as_list(annotation.get("body"))), None)
            if isinstance(body, dict) and body.get("type") == "Choice":
                body = next(iter(_as_list(body.get("items"))), None)
            if isinstance(body, dict):
                canvas.service, canvas.image_url = _service_id(body.get("service")), id_of(body)
                break
        if canvas.service or canvas.image_url:
            break
    _annotation_regions(canvas, raw.get("annotations"), fetch, problems)
    return canvas


def read_manifest(source: str | Path, fetch: Fetch, max_bytes: int = DEFAULT_MAX_MANIFEST_BYTES) -> dict:
    """The manifest JSON object from a local file or an http(s) URL; :class:`ManifestError` if unusable.

    A file larger than ``max_bytes`` is refused before it is read (``fetch`` is expected to apply the same
    limit to a URL: the parsed JSON takes several times its size in memory)."""
    text = str(source)
    try:
        if urlparse(text).scheme in ("http", "https"):
            data = fetch(text)
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                raise ManifestError("manifest file not found")
            if path.stat().st_size > max_bytes:
                raise ManifestError(f"manifest file of {path.stat().st_size} bytes exceeds the limit of "
                                    f"{max_bytes} bytes")
            data = path.read_bytes()
    except ManifestError:
        raise
    except Exception as error:
        raise ManifestError(f"manifest not loaded: {type(error).__name__}: {error}") from None
    if len(data) > max_bytes:  # an injected fetch may not have applied the limit
        raise ManifestError(f"manifest of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ManifestError(f"invalid JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise ManifestError("not a IIIF manifest (the JSON is not an object)")
    return manifest


def parse_manifest(manifest: dict, fetch: Fetch, problems: list) -> tuple[int, int, Iterator[Canvas]]:
    """The Presentation API version, the number of canvases, and an iterator over the readable canvases.

    The version and the canvas count are checked now (:class:`ManifestError`); the canvases are read one at a
    time as the iterator advances, so that external annotation lists are fetched only when their canvas is
    reached and no list of all canvases is built. Canvases or annotation lists that cannot be read are
    appended to ``problems`` as (source, reason) as the iteration reaches them.
    """
    context = json.dumps(manifest.get("@context"))
    kind = str(manifest.get("type") or manifest.get("@type") or "")
    if kind in ("Collection", "sc:Collection"):
        raise ManifestError("a IIIF Collection, not a Manifest: ingest its manifests one by one")
    if "presentation/3" in context or kind == "Manifest":
        version, raws, reader = 3, _as_list(manifest.get("items")), _canvas_v3
    elif "presentation/2" in context or kind == "sc:Manifest" or "sequences" in manifest:
        sequence = next(iter(_as_list(manifest.get("sequences"))), None)
        version, reader = 2, _canvas_v2
        raws = _as_list(sequence.get("canvases")) if isinstance(sequence, dict) else []
    else:
        raise ManifestError("not a IIIF Presentation manifest (no Presentation API 2 or 3 context)")
    if not raws:
        raise ManifestError("manifest has no canvases")
    from_structures: dict[str, list[Region]] = {}
    _structure_regions(manifest.get("structures"), from_structures)

    def canvases() -> Iterator[Canvas]:
        for index, raw in enumerate(raws):
            try:
                if not isinstance(raw, dict):
                    raise ValueError("canvas is not a JSON object")
                canvas = reader(raw, index, fetch, problems)
            except Exception as error:
                problems.append((f"canvas {index + 1}", f"unreadable canvas: {type(error).__name__}: {error}"))
                continue
            canvas.regions.extend(from_structures.get(canvas.id, []) if canvas.id else [])
            yield canvas

    return version, len(raws), canvases()


def book_id(manifest_id: str) -> str:
    """A readable, stable book id from a manifest id: its last meaningful path part plus a short hash."""
    parts = [p for p in re.split(r"[/\\]", urlparse(manifest_id).path) if p]
    parts = [p for p in parts if p.lower() not in ("manifest", "manifest.json", "iiif", "presentation")]
    stem = re.sub(r"\.json$", "", parts[-1]) if parts else (urlparse(manifest_id).netloc or "manifest")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-")[:40] or "manifest"
    return f"{slug}-{hashlib.sha1(manifest_id.encode()).hexdigest()[:6]}"
