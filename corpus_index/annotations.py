"""Verdicts and explanations of corpus items as W3C Web Annotations (JSON-LD), with citable targets.

Each item becomes a :class:`~bilrp_core.annotation.ScanRef` here (:func:`scan_ref`), the one place that decides
what an item's target is:

* an item ingested from a IIIF manifest: its **canvas** (``extra["canvas"]``, part of ``extra["manifest"]``); a
  region item adds its canvas fragment (``extra["canvas_fragment"]``, canvas coordinates as the manifest gave
  them); boxes of an explanation are given as ``xywh=percent:…`` of the page image, since the fetched image is
  a scaled copy of the canvas;
* otherwise its **http(s) source** address, when it has one;
* otherwise the **stable item URI** ``<base URI>/item/<content hash>`` (:mod:`corpus_index.item_refs`; base from
  the ``base`` parameter or ``SPHAERA_BASE_URI``), a region item with ``#xywh=`` of its region on that file.

Local paths never become targets: a ``file:///tmp/…`` IRI names nothing anyone else can open.

:func:`verdict_annotations` writes one ``linking`` annotation per verdict — its two items as targets, the label
as a classifying body, the reviewer as ``creator``, this tool as ``generator``, and every field of the verdict in
a ``verdict`` extension property — inside an ``AnnotationCollection``; :func:`read_verdict_annotations` reads such
a file back. :func:`explanation_annotations` exports an explanation, one annotation per patch pair
(:func:`bilrp_core.annotation.pair_annotations`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from bilrp_core.annotation import GENERATOR, ScanRef, collection, pair_annotations, scan_target
from corpus_index.item_refs import base_uri, item_uri
from corpus_index.verdicts import LABEL_HELP, history

VERDICT_FIELDS = ("item1", "item2", "hash1", "hash2", "label", "wrong_reason", "regions", "note", "reviewer",
                  "model_key", "gamma", "pool", "score", "params_hash", "created_at")


def _label(item: dict) -> str:
    """A short human-readable name of an item for annotation labels."""
    parts = [str(item.get(name)) for name in ("book", "year") if item.get(name) not in (None, "")]
    if item.get("page") is not None:
        parts.append(f"p. {item['page']}")
    if item.get("region"):
        parts.append(f"region {item['region']}")
    return ", ".join(parts) or f"item {item.get('id')}"


def _page_size(store, item: dict) -> tuple[int, int] | None:
    """Pixel size of the image file an item is on (its page's for a region item)."""
    if not item.get("region"):
        if item.get("width") and item.get("height"):
            return int(item["width"]), int(item["height"])
    else:
        row = next(iter(store.query("SELECT width, height FROM items WHERE hash = ? AND region IS NULL",
                                    (item["hash"],))), None)
        if row is not None and row[0] and row[1]:
            return int(row[0]), int(row[1])
    try:
        from PIL import Image

        with Image.open(store.resolve_path(item["path"])) as image:  # reads the header only
            return image.size
    except (OSError, KeyError, TypeError):
        return None


def scan_ref(store, item: dict | None, base: str | None = None, digest: str | None = None) -> ScanRef:
    """The annotation target description of an item (see the module docstring).

    Parameters
    ----------
    store : corpus_index.storage.store.Store
    item : dict or None
        The item (``Corpus.item``), or None for a scan outside the corpus (an upload) named by ``digest``.
    base : str, optional
        Base URI of item URIs (default ``SPHAERA_BASE_URI`` or :data:`corpus_index.item_refs.DEFAULT_BASE_URI`).
    digest : str, optional
        SHA-256 of an uploaded scan's bytes (with ``item=None``).
    """
    if item is None:
        if not digest:
            raise ValueError("scan_ref: an upload needs its content digest")
        return ScanRef(item_uri(digest, base), label="uploaded scan")
    extra = item.get("extra") or {}
    region = item.get("region")
    size = _page_size(store, item)
    if extra.get("canvas"):
        fragment = extra.get("canvas_fragment") if region else None
        return ScanRef(str(extra["canvas"]), kind="Canvas", fragment=fragment, size=size, percent=True,
                       part_of=extra.get("manifest"), label=_label(item))
    source = str(item.get("source") or "")
    fragment = f"xywh={region}" if region else None
    if urlparse(source).scheme in ("http", "https"):
        return ScanRef(source, fragment=fragment, size=size, label=_label(item))
    return ScanRef(item_uri(item["hash"], base), fragment=fragment, size=size, label=_label(item))


def _recorded_ref(tag: str, base: str | None) -> ScanRef:
    """The target of content known only by its content tag (``hash`` or ``hash@x,y,w,h``)."""
    digest, _, region = str(tag).partition("@")
    return ScanRef(item_uri(digest, base), fragment=f"xywh={region}" if region else None,
                   label=f"content {digest[:12]}{' region ' + region if region else ''}")


def verdict_id(row) -> str:
    """A stable IRI of a verdict: a name-based UUID of its items' content, reviewer, time and label, so the same
    verdict exported twice (or from another root holding the same scans) gets the same id."""
    key = " ".join(str(row[name]) for name in ("hash1", "hash2", "reviewer", "created_at", "label"))
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'sphaera-verdict:' + key)}"


def _verdict_fields(row) -> dict:
    fields = {}
    for name in VERDICT_FIELDS:
        value = row[name]
        if name == "gamma":
            value = None if value is None or pd.isna(value) else json.loads(value)
        elif name == "regions":
            value = json.loads(value) if isinstance(value, str) else list(value)
        elif name == "wrong_reason":
            value = bool(value)
        elif name in ("item1", "item2"):
            value = int(value)
        elif value is not None and pd.isna(value):
            value = None
        elif name == "pool":
            value = int(value)
        elif name == "score":
            value = float(value)
        fields[name] = value
    return fields


def verdict_annotation(row, ref1: ScanRef, ref2: ScanRef) -> dict:
    """One verdict (a row of :func:`corpus_index.verdicts.history`) as a ``linking`` annotation of its two items."""
    fields = _verdict_fields(row)
    shown = ""
    if fields["model_key"]:
        score = "" if fields["score"] is None else f", score {fields['score']:.6g}"
        shown = f" Judged on model {fields['model_key']} (γ {json.dumps(fields['gamma'])}{score})."
    flag = " The model's similarity rests on something other than the content (wrong reason)." \
        if fields["wrong_reason"] else ""
    text = (f"Verdict '{fields['label']}' ({LABEL_HELP[fields['label']]}) on '{ref1.label or ref1.source}' and "
            f"'{ref2.label or ref2.source}' by {fields['reviewer']}.{shown}{flag}")
    body = [{"type": "TextualBody", "purpose": "classifying", "format": "text/plain", "value": fields["label"]},
            {"type": "TextualBody", "purpose": "describing", "format": "text/plain", "language": "en",
             "value": text}]
    if fields["note"]:
        body.append({"type": "TextualBody", "purpose": "commenting", "format": "text/plain", "value": fields["note"]})
    return {"id": verdict_id(row), "type": "Annotation", "motivation": "linking", "created": fields["created_at"],
            "creator": {"type": "Person", "name": fields["reviewer"]}, "generator": GENERATOR, "body": body,
            "target": [scan_target(ref1), scan_target(ref2)], "verdict": fields}


def verdict_annotations(store, frame: pd.DataFrame | None = None, base: str | None = None,
                        include_history: bool = False) -> dict:
    """Verdicts (default: the current ones; all with ``include_history``) as an ``AnnotationCollection``.

    A verdict is about the content that was judged: when an item is gone or now shows other content, its target
    is the item URI of the recorded content tag (``<base>/item/<hash>``, ``#xywh=`` for a region), never the
    item now holding the id.
    """
    if frame is None:
        frame = history(store, current_only=not include_history)
    tags = store.content_tags(sorted({int(i) for c in ("item1", "item2") for i in frame[c]}))
    refs: dict[str, ScanRef] = {}
    annotations = []
    for _, row in frame.iterrows():
        for item, tag in ((int(row["item1"]), row["hash1"]), (int(row["item2"]), row["hash2"])):
            if tag not in refs:
                refs[tag] = scan_ref(store, store.get_item(item), base) if tags.get(item) == tag \
                    else _recorded_ref(tag, base)
        annotations.append(verdict_annotation(row, refs[row["hash1"]], refs[row["hash2"]]))
    label = f"{len(annotations)} verdicts on pairs of items of the corpus {base_uri(base)}"
    return collection(annotations, f"{base_uri(base)}/verdicts", label)


def annotation_items(document: dict) -> list[dict]:
    """The annotations of a collection (every page, following ``next`` within the document), a page, or one."""
    kind = document.get("type")
    if kind == "Annotation":
        return [document]
    if kind == "AnnotationPage":
        return list(document.get("items", []))
    if kind != "AnnotationCollection":
        raise ValueError(f"not a Web Annotation document (type {kind!r})")
    page, items = document.get("first"), []
    while isinstance(page, dict):
        items += page.get("items", [])
        page = page.get("next")
    return items


def read_verdict_annotations(source: str | Path | dict) -> pd.DataFrame:
    """The verdicts of a file (or document) written by :func:`verdict_annotations`, one row each (VERDICT_FIELDS
    plus ``id``, the annotation's IRI); annotations without a ``verdict`` property are skipped."""
    document = source if isinstance(source, dict) else json.loads(Path(source).read_text(encoding="utf-8"))
    rows = [{"id": a["id"], **a["verdict"]} for a in annotation_items(document) if isinstance(a.get("verdict"), dict)]
    return pd.DataFrame(rows, columns=["id", *VERDICT_FIELDS])


def explanation_annotations(store, items, table, model_key, gamma, score, total=None, pool=None,
                            base: str | None = None, upload: bytes | None = None) -> dict:
    """An explanation's patch pairs (``Explanation.table()``) as an ``AnnotationCollection``, one annotation per
    pair, targeting the two items as :func:`scan_ref` says (the boxes lie on a region item's page).

    ``items`` are the two items (``Corpus.item``); the first may be None for an uploaded scan, whose bytes
    (``upload``) name it by their SHA-256.
    """
    digest = hashlib.sha256(upload).hexdigest() if upload is not None else None
    refs = [scan_ref(store, item, base, digest=digest if item is None else None) for item in items]
    return pair_annotations(refs[0], refs[1], table, model_key=model_key, gamma=gamma, score=score, total=total,
                            pool=pool)


def each_annotation(document: dict, change: Callable[[dict], dict]) -> dict:
    """The collection with ``change`` applied to each of its annotations (e.g. marking an untrained model's)."""
    pages, page = [], document.get("first")
    result = dict(document)
    while isinstance(page, dict):
        pages.append(dict(page, items=[change(annotation) for annotation in page.get("items", [])]))
        page = page.get("next")
    for earlier, later in zip(pages, pages[1:], strict=False):
        earlier["next"] = later
    if pages:
        result["first"] = pages[0]
    return result
