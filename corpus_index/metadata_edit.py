"""Correcting an item's metadata after ingest: checked values, one logged row per changed field.

A historian adds scans first and describes them later, or corrects what a CSV said. :func:`edit_item` changes the
fields of :data:`EDITABLE_FIELDS` of one item and logs every changed field in ``metadata_edits`` (item id and
content hash, field, old and new value, editor, time), so nothing an edit replaces is lost.

Where the fields live, and what editing them means
--------------------------------------------------
``page``, ``kind`` and ``note`` are the item's own. ``title``, ``author``, ``printer``, ``place`` and ``year``
describe its *book* (``books`` table), which other items may share: editing them changes the book, i.e. every item
of it (:func:`book_items` counts them, and the explorer says "changes the book b03, 5 items" before saving).
``book`` is the item's book id: setting it moves the item to that book (created when new; an existing book keeps
its description), so an item is split off a shared book by giving it a book id of its own first.

An item without a book (a scan added without metadata) that gets a book-level field gets a new book of its own,
``item-<id>`` (``item-<id>-2`` … if taken), so describing one scan never describes another.

Why edits survive
-----------------
A rebuild never writes metadata, and a re-ingest of a scan already in the corpus changes nothing
(:meth:`corpus_index.storage.store.Store.add_item` returns the existing item untouched). Only an explicit
``ingest --update`` (:mod:`corpus_index.ingest.update`) writes metadata of existing items, through this module, so
its changes are logged like any other edit. One caveat: a book field that was *cleared* is empty again and can
be filled by the first later ingest of a new item of that book (ingest fills empty book fields, never replaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from corpus_index.ingest.metadata_csv import PAGE_RANGE, YEAR_RANGE, whole_number
from corpus_index.storage.store import BOOK_FIELDS, Store

#: What the editor offers, in the order it shows them.
EDITABLE_FIELDS = ("book", "title", "author", "printer", "place", "year", "page", "kind", "note")
#: Fields stored on the item's book (shared by every item of the book).
BOOK_LEVEL_FIELDS = BOOK_FIELDS
#: Kinds of items the explorer knows (the demo corpus's and the usual ones); kinds already in a corpus count too.
KNOWN_KINDS = ("table", "illustration", "diagram", "text", "title page", "region")
_MAX_TEXT = 2000  # longer "titles" are pasted by mistake, not typed


class MetadataError(ValueError):
    """A value the editor refuses (the message names the field and what is expected)."""


@dataclass
class EditResult:
    """What :func:`edit_item` changed.

    Attributes
    ----------
    item_id : int
    changes : list of (field, old value, new value)
        The fields that changed (values as text, None for empty).
    book : str or None
        The item's book after the edit.
    book_items : int
        How many items share that book (all of them see the book-level changes).
    """

    item_id: int
    changes: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    book: str | None = None
    book_items: int = 0

    def summary(self) -> str:
        """One line for people: the fields changed, or that nothing changed."""
        if not self.changes:
            return f"item {self.item_id}: nothing changed"
        shown = ", ".join(f"{name} {old or '—'} → {new or '—'}" for name, old, new in self.changes)
        return f"item {self.item_id}: {shown}"


def known_kinds(store: Store) -> list[str]:
    """The kinds an item may be given: :data:`KNOWN_KINDS` and every kind already in the corpus."""
    return list(dict.fromkeys([*KNOWN_KINDS, *(str(k) for k in store.distinct("kind"))]))


def check_value(name: str, value: Any, kinds: list[str] | tuple[str, ...] = KNOWN_KINDS) -> Any:
    """The stored form of ``value`` for field ``name``: None for empty, an int for year and page, stripped text.

    Raises
    ------
    MetadataError
        For an unknown field, a year that is not a whole number from -9999 to 9999, a page below 1, a kind
        not in ``kinds``, or text over 2000 characters.
    """
    if name not in EDITABLE_FIELDS:
        raise MetadataError(f"unknown metadata field {name!r}; editable: {', '.join(EDITABLE_FIELDS)}")
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    if name in ("year", "page"):
        bounds = YEAR_RANGE if name == "year" else (1, PAGE_RANGE[1])
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
        try:
            return whole_number(text, name, bounds)
        except ValueError as error:
            raise MetadataError(str(error)) from None
    if len(text) > _MAX_TEXT:
        raise MetadataError(f"{name} is {len(text)} characters long (at most {_MAX_TEXT})")
    if name == "kind" and text not in kinds:
        raise MetadataError(f"kind {text!r} is not one this corpus knows; known: {', '.join(kinds)}")
    return text


def book_items(store: Store, book: str | None) -> int:
    """How many items belong to ``book`` (0 for None)."""
    if book is None:
        return 0
    return int(store.query("SELECT COUNT(*) FROM items WHERE book = ?", (str(book),))[0][0])


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _given_text(value: Any) -> str | None:
    """A value as the editor gave it, as text (None for empty), to compare with the stored one."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or None


def _own_book_id(conn, item_id: int) -> str:
    """A new book id for an item that has none: ``item-<id>``, with a suffix if a book of that name exists."""
    candidate, number = f"item-{item_id}", 1
    while conn.execute("SELECT 1 FROM books WHERE book = ?", (candidate,)).fetchone():
        number += 1
        candidate = f"item-{item_id}-{number}"
    return candidate


def edit_item(store: Store, item_id: int, changes: dict[str, Any], editor: str, any_kind: bool = False) -> EditResult:
    """Set fields of one item (and of its book); log each field that changed.

    Parameters
    ----------
    store : Store
    item_id : int
    changes : dict
        Field -> new value (fields of :data:`EDITABLE_FIELDS`; None or "" empties a field). Fields not given
        are left as they are; values equal to the current ones are not logged.
    editor : str
        Who edits (a name, or e.g. ``csv:metadata.csv`` for an update from a CSV); required.
    any_kind : bool
        Accept any kind, as an ingest does (an update from a CSV); the editor offers only :func:`known_kinds`.

    Returns
    -------
    EditResult

    Raises
    ------
    MetadataError
        For a bad value or a missing editor name (nothing is written then: all fields are checked first).
    KeyError
        For an unknown item id.
    """
    editor = (editor or "").strip()
    if not editor:
        raise MetadataError("give the editor's name: every change is stored with who made it")
    current = store.get_item(int(item_id))
    kinds = known_kinds(store) + ([str(changes["kind"]).strip()] if any_kind and changes.get("kind") else [])
    # A value as it already is is no change, and is not checked again: an ingest allowed page 0, say, and a form
    # that sends every field must still save the one field that was corrected.
    wanted = {name: check_value(name, value, kinds) for name, value in changes.items()
              if _given_text(value) != _as_text(current.get(name)) or name not in current}
    result = EditResult(item_id=int(item_id))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with store.transaction() as conn:
        def log(name: str, old: Any, new: Any) -> None:
            result.changes.append((name, _as_text(old), _as_text(new)))
            conn.execute("INSERT INTO metadata_edits (item_id, hash, field, old_value, new_value, editor, edited_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (int(item_id), current["hash"], name, _as_text(old), _as_text(new), editor, now))

        book = current.get("book")
        if "book" in wanted and wanted["book"] != book:
            if wanted["book"] is not None:
                conn.execute("INSERT OR IGNORE INTO books (book) VALUES (?)", (wanted["book"],))
            conn.execute("UPDATE items SET book = ? WHERE id = ?", (wanted["book"], int(item_id)))
            log("book", book, wanted["book"])
            book = wanted["book"]
        book_row = {}
        if book is not None:
            row = conn.execute("SELECT * FROM books WHERE book = ?", (book,)).fetchone()
            book_row = dict(row) if row else {}
        book_changes = {n: v for n, v in wanted.items() if n in BOOK_LEVEL_FIELDS and v != book_row.get(n)}
        if book_changes and book is None:
            if all(v is None for v in book_changes.values()):
                book_changes = {}  # emptying a field of a book the item does not have: nothing to do
            else:
                book = _own_book_id(conn, int(item_id))
                conn.execute("INSERT INTO books (book) VALUES (?)", (book,))
                conn.execute("UPDATE items SET book = ? WHERE id = ?", (book, int(item_id)))
                log("book", None, book)
        for name, value in book_changes.items():
            conn.execute(f'UPDATE books SET "{name}" = ? WHERE book = ?', (value, book))
            log(name, book_row.get(name), value)
        for name in ("page", "kind", "note"):
            if name in wanted and wanted[name] != current.get(name):
                conn.execute(f'UPDATE items SET "{name}" = ? WHERE id = ?', (wanted[name], int(item_id)))
                log(name, current.get(name), wanted[name])
    result.book = book
    result.book_items = book_items(store, book)
    return result


def edit_log(store: Store, item_id: int | None = None) -> pd.DataFrame:
    """The logged edits (of one item, or all), oldest first: ``item_id, hash, field, old_value, new_value, editor,
    edited_at``."""
    sql = "SELECT item_id, hash, field, old_value, new_value, editor, edited_at FROM metadata_edits"
    params: list[Any] = []
    if item_id is not None:
        sql += " WHERE item_id = ?"
        params.append(int(item_id))
    rows = store.query(sql + " ORDER BY id", params)
    columns = ["item_id", "hash", "field", "old_value", "new_value", "editor", "edited_at"]
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def last_edit(store: Store) -> int:
    """The id of the latest logged edit (0 before any): changes with every edit, so caches keyed on it see them."""
    return int(store.query("SELECT IFNULL(MAX(id), 0) FROM metadata_edits")[0][0])


__all__ = ["BOOK_LEVEL_FIELDS", "EDITABLE_FIELDS", "KNOWN_KINDS", "EditResult", "MetadataError", "book_items",
           "check_value", "edit_item", "edit_log", "known_kinds", "last_edit"]
