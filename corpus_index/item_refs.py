"""Citable references to items that survive a re-ingest into another corpus root: content hashes, not row ids.

An item's numeric id is a row number of one ``corpus.sqlite``; the same scan ingested elsewhere gets another id.
What stays is its content: the SHA-256 of its image file, plus its region for an item that is a region of a page.
Two forms are used:

* the **short reference** ``<first 12 hex of the hash>`` or ``<12 hex>@x,y,w,h`` (a region), carried in the
  explorer's URLs next to the id (``h=…``; a pair's as ``<ref1>-<ref2>``, like ``pair=12-34``), and resolved back
  to an id by :func:`resolve` when the id is missing or names other content;
* the **item URI** ``<base URI>/item/<full hash>`` (:func:`item_uri`) used as an annotation target when the item
  has no IIIF canvas and no web address. The base is ``SPHAERA_BASE_URI`` (or a parameter), default
  :data:`DEFAULT_BASE_URI`: a URN, because a corpus usually has no web address of its own; a project that
  publishes its corpus sets the base to that address and the item URIs become resolvable links.
"""

from __future__ import annotations

import os
import re

DEFAULT_BASE_URI = "urn:sphaera:corpus"
BASE_URI_VARIABLE = "SPHAERA_BASE_URI"
SHORT_HASH = 12  # hex digits: 48 bits, unique within any corpus of realistic size, short enough for a URL
_REFERENCE = re.compile(r"([0-9a-f]{6,64})(?:@(\d+,\d+,\d+,\d+))?")
_BASE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:\S+")


def base_uri(base: str | None = None) -> str:
    """The corpus base URI: ``base``, else ``$SPHAERA_BASE_URI``, else :data:`DEFAULT_BASE_URI` (no trailing /).

    Raises ValueError for a base that is not an absolute URI, or is a ``file:`` URI (local paths are not citable).
    """
    value = (base if base is not None else os.environ.get(BASE_URI_VARIABLE, "")).strip() or DEFAULT_BASE_URI
    where = "base URI" if base is not None else f"{BASE_URI_VARIABLE}"
    if not _BASE.fullmatch(value) or value.lower().startswith("file:"):
        raise ValueError(f"{where} {value!r} is not an absolute, non-file URI such as https://example.org/sphaera "
                         f"or {DEFAULT_BASE_URI}")
    return value.rstrip("/")


def item_uri(content_hash: str, base: str | None = None) -> str:
    """``<base URI>/item/<content hash>``: the stable name of an image file's content."""
    return f"{base_uri(base)}/item/{content_hash}"


def short_reference(content_hash: str, region: str | None = None) -> str:
    """``<12 hex>`` or ``<12 hex>@x,y,w,h``: what the explorer's URLs carry next to an item id."""
    short = str(content_hash)[:SHORT_HASH]
    return f"{short}@{region}" if region else short


def parse_reference(text: str) -> tuple[str, str | None] | None:
    """``(hash prefix, region or None)`` of a short reference, or None when malformed."""
    match = _REFERENCE.fullmatch((text or "").strip().lower())
    return (match.group(1), match.group(2)) if match else None


def resolve(store, reference: str) -> int | None:
    """The id of the item a short reference names, or None when no item (or more than one) matches it.

    Parameters
    ----------
    store : corpus_index.storage.store.Store
    reference : str
        A :func:`short_reference` (a longer hash prefix works too).
    """
    parsed = parse_reference(reference)
    if parsed is None:
        return None
    prefix, region = parsed
    rows = store.query("SELECT id FROM items WHERE substr(hash, 1, ?) = ? AND IFNULL(region, '') = ? LIMIT 2",
                       (len(prefix), prefix, region or ""))
    return int(rows[0][0]) if len(rows) == 1 else None


def references(store, item_ids) -> dict[int, str]:
    """Item id -> :func:`short_reference` for these ids (ids not in the store are left out)."""
    ids = [int(i) for i in item_ids]
    if not ids:
        return {}
    rows = store.query("SELECT id, hash, region FROM items WHERE id IN (SELECT value FROM json_each(?))",
                       (str(ids),))
    return {int(r[0]): short_reference(r[1], r[2]) for r in rows}
