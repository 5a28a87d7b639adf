"""One caption per item, for every page: metadata fields may be missing (None, NaN or pandas NA).

Scans added without a metadata CSV have no year, title, place …; pandas keeps a missing year as ``pd.NA``, whose
truth value is an error (``row.year or ''`` raises "boolean value of NA is ambiguous"). Pages therefore never
format metadata themselves: they call :func:`item_caption`, which reads every field through :func:`field` and
leaves missing ones out. Plain Python and pandas, no Streamlit: testable on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

NO_METADATA = "no metadata"


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


def item_caption(row: Any, short: bool = False) -> str:
    """One line naming an item: ``#12 · Title · Venice 1550 · Giunta · p. 3 · table``; missing fields left out.

    Parameters
    ----------
    row : dict, pandas Series or named tuple
        The item's metadata (``id``, ``title``, ``book``, ``place``, ``year``, ``printer``, ``page``, ``kind``).
    short : bool
        Gallery form: ``#12 · b03 1550 · p. 3 · table`` (book instead of title, no place or printer).

    Returns
    -------
    str
        The caption; an item without any metadata reads ``#12 · no metadata``.
    """
    get = {name: field(row, name) for name in ("id", "title", "book", "place", "year", "printer", "page", "kind")}
    text = {name: None if value is None else _text(value) for name, value in get.items()}
    if short:
        where = " ".join(t for t in (text["book"], text["year"]) if t)
        parts = [where]
    else:
        where = " ".join(t for t in (text["place"], text["year"]) if t)
        parts = [text["title"] or text["book"], where, text["printer"]]
    parts += [f"p. {text['page']}" if text["page"] else None, text["kind"]]
    shown = [p for p in parts if p]
    head = f"#{text['id']}" if text["id"] else ""
    return " · ".join(p for p in (head, *(shown or [NO_METADATA])) if p)


__all__ = ["NO_METADATA", "field", "item_caption"]
