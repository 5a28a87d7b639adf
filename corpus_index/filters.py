"""The metadata filters of a corpus, defined once: the store's SQL, the facade's checks, the command line's options
and the explorer's widgets all read them from here.

A filter is a keyword of :meth:`corpus_index.storage.store.Store.query_items` and everything built on it
(:meth:`~corpus_index.corpus.Corpus.search`, ``export``, ``count``). Equality filters compare an item's or its
book's field; a list value means "any of these". The year filters bound the book's year (items of unknown year
are left out of any range). ``text`` searches the words of the title, author, printer, place and label (the scan's
file name for uploads): every word must occur in one of them (case-insensitive for
unaccented letters, as SQLite's ``LIKE``).

On the command line several values of an equality filter are separated by commas (``--kind table,diagram``):
:func:`split_values` turns them into lists.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

#: Equality filters: name -> SQL expression over ``items i LEFT JOIN books b``.
EQUALITY_FILTERS = {"kind": "i.kind", "group": 'i."group"', "book": "i.book", "place": "b.place",
                    "printer": "b.printer"}
#: Year filters: name -> comparison of the book's year with the value.
YEAR_FILTERS = {"year_min": ">=", "year_max": "<="}
#: The text search filter (every word in one of :data:`TEXT_FIELDS`).
TEXT_FILTER = "text"
#: Every filter, in the order they are listed to users.
FILTERS = ("kind", "book", "year_min", "year_max", "place", "printer", "group", TEXT_FILTER)
#: The fields the ``text`` filter searches.
TEXT_FIELDS = ("b.title", "b.author", "b.printer", "b.place", "i.label")
#: The equality filters a browsing user picks from the corpus's values (``group`` names the copies of one table:
#: shown with an item, not offered as a list to browse by).
BROWSE_FILTERS = ("kind", "book", "place", "printer")
#: One line of help per filter (command line options).
FILTER_HELP = {
    "kind": "only items of this kind (e.g. table, woodcut)",
    "book": "only items of this book id",
    "year_min": "only books printed in or after this year",
    "year_max": "only books printed in or before this year",
    "place": "only books printed at this place",
    "printer": "only books by this printer",
    "group": "only items of this group (e.g. the copies of one table)",
    "text": "only items whose title, author, printer, place or file name contain every word of this text",
}


def split_values(filters: dict[str, Any]) -> dict[str, Any]:
    """Command line filters with comma-separated values of equality filters as lists (``"a, b"`` -> ``["a",
    "b"]``); one value stays a string, and other filters are returned unchanged."""
    split = dict(filters)
    for name in EQUALITY_FILTERS:
        value = split.get(name)
        if isinstance(value, str) and "," in value:
            split[name] = [part.strip() for part in value.split(",") if part.strip()]
    return split


def _text_clauses(text: str) -> tuple[list[str], list[Any]]:
    """One clause per word of ``text``: the word occurs (case-insensitively) in one of :data:`TEXT_FIELDS`."""
    clauses, params = [], []
    for word in str(text).split():
        pattern = "%" + word.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(" + " OR ".join(f"LOWER({f}) LIKE ? ESCAPE '\\'" for f in TEXT_FIELDS) + ")")
        params += [pattern] * len(TEXT_FIELDS)
    return clauses, params


def check_filters(filters: dict[str, Any], allowed: tuple[str, ...] = FILTERS, where: str = "") -> None:
    """Raise ``TypeError`` naming the unknown filter names in ``filters`` (a typo must not filter nothing)."""
    unknown = sorted(set(filters) - set(allowed))
    if unknown:
        raise TypeError(f"{where + ': ' if where else ''}unknown filter(s) {unknown}; known: {list(allowed)}")


def active_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters that are set (``None`` and ``""`` mean "any")."""
    return {k: v for k, v in filters.items() if v is not None and not (isinstance(v, str) and v == "")}


def where_clause(ids=None, **filters: Any) -> tuple[str, list[Any]]:
    """The SQL ``WHERE`` clause (and its parameters) of the filters over ``items i LEFT JOIN books b``.

    A list value means "any of these" (an empty list matches nothing); ``ids`` restricts to these item ids.
    Lists travel as one JSON parameter (``json_each``), so the statement keeps its size however long they are.

    Raises
    ------
    TypeError
        For an unknown filter name.
    ValueError
        For a year that is not a whole number.
    """
    check_filters(filters)
    clauses, params = [], []
    for name, column in EQUALITY_FILTERS.items():
        value = filters.get(name)
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset | pd.Series):
            clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([str(v) for v in value]))
        else:
            clauses.append(f"{column} = ?")
            params.append(str(value))
    for name, op in YEAR_FILTERS.items():
        value = filters.get(name)
        if value is None:
            continue
        try:
            year = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a whole number, got {value!r}") from None
        # A year range excludes items whose year is unknown (NULL compares as unknown, never true).
        clauses.append(f"b.year IS NOT NULL AND b.year {op} ?")
        params.append(year)
    if filters.get(TEXT_FILTER) is not None:
        words, values = _text_clauses(filters[TEXT_FILTER])
        clauses += words
        params += values
    if ids is not None:
        clauses.append("i.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps([int(i) for i in ids]))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
