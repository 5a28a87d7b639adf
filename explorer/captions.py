"""One caption per item, for every page: metadata fields may be missing (None, NaN or pandas NA).

Scans added without a metadata CSV have no year, title, place …; pandas keeps a missing year as ``pd.NA``, whose
truth value is an error (``row.year or ''`` raises "boolean value of NA is ambiguous"). Pages therefore never
format metadata themselves: they call :func:`item_caption`, which reads every field through :func:`field` and
leaves missing ones out. Plain Python and pandas, no Streamlit: testable on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import pandas as pd

NO_METADATA = "no metadata"
SHORT_TITLE = 40  # characters of a title in gallery captions and filter options


def field(row: Any, name: str) -> Any:
    """``row``'s value of ``name``, or None when it is absent or missing (None, NaN, pandas NA, blank text).

    ``row`` may be a dict (:meth:`Corpus.item`), a pandas Series, or a named tuple from ``DataFrame.itertuples``.
    """
    if isinstance(row, Mapping) or isinstance(row, pd.Series):
        value = row.get(name)
    else:
        value = getattr(row, name, None)
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _text(value: Any) -> str:
    """A field as text; whole numbers stored as floats (a year read back as 1550.0) lose their ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _file_name(get: dict) -> str | None:
    """``clavius.png, 1200×900 px``: how an item without a title is named (its scan's file name and size)."""
    name = PurePath(str(get["path"])).name if get["path"] else None
    size = f"{int(get['width'])}×{int(get['height'])} px" if get["width"] and get["height"] else None
    return ", ".join(t for t in (name, size) if t) or None


def _shortened(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def item_caption(row: Any, short: bool = False) -> str:
    """One line naming an item: ``#12 · Title · Venice 1550 · Giunta · p. 3 · table``; missing fields left out.

    An item without a title is named by its scan's file name and size (``#12 · clavius.png, 1200×900 px``)
    and, if it has one, its book id (``book scans``): a scan added without metadata reads as the file the
    historian uploaded, never as an id.

    Parameters
    ----------
    row : dict, pandas Series or named tuple
        The item's metadata (``id``, ``title``, ``book``, ``place``, ``year``, ``printer``, ``page``, ``kind``,
        ``path``, ``width``, ``height``).
    short : bool
        Gallery form: ``#12 · Title (shortened) 1550 · p. 3 · table`` (no place or printer).

    Returns
    -------
    str
        The caption; an item without any metadata, not even a file, reads ``#12 · no metadata``.
    """
    names = ("id", "title", "book", "place", "year", "printer", "page", "kind", "path", "width", "height")
    get = {name: field(row, name) for name in names}
    text = {name: None if value is None else _text(value) for name, value in get.items()}
    if text["title"]:
        name = _shortened(text["title"], SHORT_TITLE) if short else text["title"]
        book = None
    else:
        name = _file_name(get)
        book = f"book {text['book']}" if text["book"] else None
    if short:
        parts = [" ".join(t for t in (name, text["year"]) if t), book]
    else:
        where = " ".join(t for t in (text["place"], text["year"]) if t)
        parts = [name, book, where, text["printer"]]
    parts += [f"p. {text['page']}" if text["page"] else None, text["kind"]]
    shown = [p for p in parts if p]
    head = f"#{text['id']}" if text["id"] else ""
    return " · ".join(p for p in (head, *(shown or [NO_METADATA])) if p)


def book_options(books: pd.DataFrame | None) -> dict[str, str]:
    """Book ids as filter options, by id: ``b03 — Sphaera mundi (1550)`` where the corpus knows a title or year
    (one pass over the books: a filter with hundreds of books is labelled on every run)."""
    labels = {}
    for row in ([] if books is None else books.to_dict("records")):
        title, year = field(row, "title"), field(row, "year")
        details = " ".join(t for t in (_shortened(str(title), SHORT_TITLE) if title else None,
                                       f"({_text(year)})" if year is not None else None) if t)
        labels[str(row["book"])] = f"{row['book']} — {details}" if details else str(row["book"])
    return labels


__all__ = ["NO_METADATA", "book_options", "field", "item_caption"]
