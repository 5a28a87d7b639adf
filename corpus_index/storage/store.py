"""The corpus metadata store: one SQLite file ``ROOT/corpus.sqlite`` in WAL mode.

Tables
------
``books``
    One row per book (edition): ``book`` id, ``title``, ``author``, ``printer``, ``place``, ``year``.
``items``
    One row per searchable image: a page scan, or a region ``"x,y,w,h"`` of one (pixels of the stored
    image). An item is identified by the SHA-256 of its image file plus its region, so ingesting a file twice
    adds it once. ``width``/``height`` are the size of what the item shows (the region's size for a region).
    ``path`` is absolute (folder ingest references scans in place) or relative to ROOT (IIIF images copied to
    ``ROOT/images/``); ``thumb`` is relative to ROOT. Unknown metadata columns live in ``extra`` (JSON).
``feature_sets``
    Which items have feature vectors for which model key (the feature files are the truth; these marks mirror
    them so that queries such as "items without features" are one SQL statement).
``ingest_reports``
    A log of every ingest run with its counts and skipped files.
``metadata_edits``
    Every change of an item's metadata after ingest, field by field, with editor and time
    (:mod:`corpus_index.metadata_edit`); ``items.note`` is the item's free note.

``file_checks``
    Size, modification time and hash of each image file when its hash was last checked (by a build), so a
    scan replaced in place is noticed (:mod:`corpus_index.storage.rehash`).

The schema carries a version; :data:`MIGRATIONS` (:mod:`corpus_index.storage.store_migrations`) lists the SQL steps from
version 0 upwards, and opening an older file migrates it in one transaction per step. A file written by a newer
version of this code is refused with :class:`SchemaVersionError` rather than guessed at; a ``corpus.sqlite`` that
is not a corpus database (0 bytes, another program's tables, not SQLite) with :class:`CorpusDatabaseError`, never
taken for a new empty store. Only a root without the file gets a new store.

Every thread gets its own connection; writes take a process-wide lock and run in ``BEGIN IMMEDIATE``
transactions, so a failed write leaves the file as it was.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from corpus_index.filters import FILTERS, active_filters, check_filters, where_clause
from corpus_index.ingest.images import format_region, parse_region  # noqa: F401 - part of this module's API
from corpus_index.storage.atomic import file_lock
from corpus_index.storage.integrity import content_tag
from corpus_index.storage.layout import Layout
from corpus_index.storage.store_features import FeatureMarks
from corpus_index.storage.store_migrations import (  # noqa: F401 - part of this module's API
    MIGRATIONS,
    SCHEMA_VERSION,
    CorpusDatabaseError,
    SchemaVersionError,
    empty_database_error,
    foreign_database_error,
    migrate,
)

BOOK_FIELDS = ("title", "author", "printer", "place", "year")
ITEM_FIELDS = ("hash", "source", "path", "region", "kind", "group", "book", "page", "label", "width",
               "height", "thumb")
# Columns of query_items, in order; extra metadata columns follow them.
ITEM_COLUMNS = ("id", "path", "kind", "group", "book", "title", "author", "printer", "place", "year", "page",
                "label", "region", "width", "height", "source", "thumb", "hash", "note")
_INT_COLUMNS = ("year", "page", "width", "height")
_DISTINCT_COLUMNS = {"kind": "i.kind", "group": 'i."group"', "book": "i.book", "label": "i.label",
                     "title": "b.title", "author": "b.author", "printer": "b.printer", "place": "b.place",
                     "year": "b.year"}

def _extra_column(key: str) -> str:
    """The column an extra metadata key gets: ``extra_<key>`` where it clashes with a standard column."""
    return f"extra_{key}" if key in ITEM_COLUMNS or key == "extra" else key


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store(FeatureMarks):
    """The SQLite metadata store of one corpus root.

    Parameters
    ----------
    root : path-like
        The corpus root folder; the database is ``root / "corpus.sqlite"``.
    create : bool
        Create the folder and database if missing (default). With ``False`` a missing database raises
        ``FileNotFoundError``.
    """

    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root).expanduser().resolve()
        self.layout = Layout(self.root)
        self.db_path = self.layout.db
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._closed = False
        if self._size() is None and not create:
            raise FileNotFoundError(f"no corpus database at {self.db_path}")
        if self._size():
            self._open()
            return
        # Missing or empty. SQLite creates a database as a 0-byte file and writes its header a moment later, so
        # creation and the emptiness check hold one lock: an empty file seen under it is nobody's new store.
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.layout.db_create_lock):
            if self._size() == 0:
                raise empty_database_error(self.db_path)
            if self._size() is None and not create:
                raise FileNotFoundError(f"no corpus database at {self.db_path}")
            self._open()

    def _size(self) -> int | None:
        try:
            return self.db_path.stat().st_size
        except FileNotFoundError:
            return None

    def _open(self) -> None:
        try:
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            self._migrate(conn)
        except sqlite3.DatabaseError as error:
            self.close()
            raise foreign_database_error(self.db_path, error) from None
        except BaseException:
            self.close()
            raise

    # -- connections and transactions -------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"the store at {self.db_path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; every write is one explicit transaction.
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints in WAL mode, never corrupt
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def query(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        """The rows of one read-only statement, on this thread's connection (writes go through
        :meth:`transaction`): for modules that read tables of the schema this class does not wrap."""
        return self._conn().execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception (nested ones join)."""
        conn = self._conn()
        with self._write_lock:
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The schema version of the open database."""
        row = self._conn().execute("SELECT version FROM schema_version").fetchone()
        return int(row["version"]) if row else 0

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrate(self, conn)

    # -- items ------------------------------------------------------------------------------------
    def add_item(self, **fields: Any) -> tuple[int, bool]:
        """Add one item (and its book) unless an item with the same hash and region exists.

        Parameters
        ----------
        **fields
            ``hash``, ``source`` and ``path`` are required; ``region``, ``kind``, ``group``, ``book``,
            ``page``, ``label``, ``width``, ``height``, ``thumb`` are item columns; ``title``, ``author``,
            ``printer``, ``place``, ``year`` describe the book (they fill its empty fields, never overwrite);
            ``extra`` (a dict) and any other keyword go into the item's extra JSON.

        Returns
        -------
        (int, bool)
            The item id, and whether it was added now (``False``: it already existed, nothing changed).
        """
        fields = dict(fields)
        for name in ("hash", "source", "path"):
            if not fields.get(name):
                raise ValueError(f"add_item: '{name}' is required")
        extra = dict(fields.pop("extra", None) or {})
        book_fields = {name: fields.pop(name) for name in BOOK_FIELDS if name in fields}
        extra.update({k: fields.pop(k) for k in list(fields) if k not in ITEM_FIELDS})
        fields["region"] = format_region(fields.get("region"))
        for name in ("page", "width", "height"):
            if fields.get(name) is not None:
                fields[name] = int(fields[name])
        if book_fields.get("year") is not None:
            book_fields["year"] = int(book_fields["year"])
        book = fields.get("book")
        if book is None and any(v is not None for v in book_fields.values()):
            raise ValueError("add_item: book metadata (title, author, ...) given without a 'book' id")
        with self.transaction() as conn:
            existing = self.find_item(fields["hash"], fields["region"])
            if existing is not None:
                return existing, False
            if book is not None:
                self._upsert_book(conn, str(book), book_fields)
            columns = [name for name in ITEM_FIELDS if fields.get(name) is not None]
            values = [fields[name] for name in columns]
            quoted = ", ".join(f'"{name}"' for name in [*columns, "extra", "added_at"])
            marks = ", ".join("?" for _ in range(len(columns) + 2))
            cursor = conn.execute(f"INSERT INTO items ({quoted}) VALUES ({marks})",
                                  [*values, json.dumps(extra, ensure_ascii=False, default=str), _now()])
            return int(cursor.lastrowid), True

    @staticmethod
    def _upsert_book(conn: sqlite3.Connection, book: str, book_fields: dict[str, Any]) -> None:
        conn.execute("INSERT OR IGNORE INTO books (book) VALUES (?)", (book,))
        given = {k: v for k, v in book_fields.items() if v is not None and v != ""}
        if given:
            # Fill empty fields only: the first source to describe a book wins, later rows cannot erase it.
            sets = ", ".join(f"{k} = COALESCE({k}, ?)" for k in given)
            conn.execute(f"UPDATE books SET {sets} WHERE book = ?", [*given.values(), book])

    def find_item(self, hash: str | None = None, region: Any = None, source: str | None = None) -> int | None:
        """The id of the item with this content hash and region (or this source and region), else ``None``."""
        region_text = format_region(region) or ""
        if hash is not None:
            sql, key = "SELECT id FROM items WHERE hash = ? AND IFNULL(region, '') = ?", hash
        elif source is not None:
            sql, key = "SELECT id FROM items WHERE source = ? AND IFNULL(region, '') = ? ORDER BY id", source
        else:
            raise ValueError("find_item needs a hash or a source")
        row = self._conn().execute(sql, (key, region_text)).fetchone()
        return None if row is None else int(row["id"])

    def get_item(self, item_id: int) -> dict[str, Any]:
        """One item as a dict: the columns of :meth:`query_items`, ``extra`` (dict) and ``added_at``.

        Read straight from its row (no DataFrame): pages ask for items many times per run.

        Raises
        ------
        KeyError
            If there is no item with this id.
        """
        sql = f"SELECT {self._SELECT}, i.extra, i.added_at{self._FROM} WHERE i.id = ?"
        row = self._conn().execute(sql, (int(item_id),)).fetchone()
        if row is None:
            raise KeyError(f"no item with id {item_id} in {self.db_path}")
        item = dict(zip(ITEM_COLUMNS, tuple(row)[:len(ITEM_COLUMNS)], strict=True))
        extra = json.loads(row["extra"])
        for key, value in extra.items():
            item[_extra_column(key)] = value
        for name in ("id", *_INT_COLUMNS):
            if item.get(name) is not None:
                item[name] = int(item[name])
        item["extra"] = extra
        item["added_at"] = row["added_at"]
        return item

    def content_tags(self, item_ids: Iterable[int] | None = None) -> dict[int, str]:
        """Item id -> :func:`~corpus_index.storage.integrity.content_tag` (hash and region) of these items (default:
        all).

        Stored features, index rows and factors must carry the same tag to be used for an item.
        """
        sql, params = "SELECT id, hash, region FROM items", []
        if item_ids is not None:
            sql += " WHERE id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([int(i) for i in item_ids]))
        return {int(r[0]): content_tag(r[1], r[2]) for r in self._conn().execute(sql, params)}

    def resolve_path(self, path: str | Path) -> Path:
        """The absolute file of a stored ``path`` or ``thumb`` (relative paths are relative to the root)."""
        path = Path(path)
        return path if path.is_absolute() else self.root / path

    # -- queries ----------------------------------------------------------------------------------
    _FROM = " FROM items i LEFT JOIN books b ON b.book = i.book"
    _SELECT = ", ".join(f'b."{c}"' if c in BOOK_FIELDS else f'i."{c}"' for c in ITEM_COLUMNS)

    def query_items(self, kind=None, book=None, year_min=None, year_max=None, place=None, printer=None,
                    ids=None, limit: int | None = None, offset: int = 0, group=None, text=None) -> pd.DataFrame:
        """Items matching the filters, ordered by id, as a DataFrame.

        Columns are :data:`ITEM_COLUMNS` followed by one column per key found in the items' extra metadata
        (named ``extra_<key>`` where the key clashes with a standard column). ``year``, ``page``, ``width``
        and ``height`` are nullable integers (``Int64``).
        """
        where, params = where_clause(kind=kind, book=book, year_min=year_min, year_max=year_max, place=place,
                                     printer=printer, group=group, text=text, ids=ids)
        sql = f"SELECT {self._SELECT}, i.extra{self._FROM}{where} ORDER BY i.id"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else int(limit), int(offset)]
        rows = self._conn().execute(sql, params).fetchall()
        frame = pd.DataFrame([tuple(r)[:-1] for r in rows], columns=list(ITEM_COLUMNS))
        extras = [json.loads(r["extra"]) for r in rows]
        keys: list[str] = []
        for extra in extras:
            keys += [k for k in extra if k not in keys]
        for key in keys:
            frame[_extra_column(key)] = [extra.get(key) for extra in extras]
        for name in _INT_COLUMNS:
            frame[name] = frame[name].astype("Int64")
        return frame

    def count_items(self, **filters: Any) -> int:
        """How many items match the filters (the keyword filters of :meth:`query_items`)."""
        check_filters(filters, (*FILTERS, "ids"), "count_items")
        where, params = where_clause(**filters)
        return int(self._conn().execute(f"SELECT COUNT(*){self._FROM}{where}", params).fetchone()[0])

    def filtered_ids(self, **filters: Any) -> np.ndarray | None:
        """Ids of the items matching the filters (ascending), or None when no filter is set (every item).

        ``None`` and ``""`` mean "any", so a search passes its filters as they come and gets None for "no
        restriction" rather than the id of every item.
        """
        check_filters(filters)
        active = active_filters(filters)
        if not active:
            return None
        where, params = where_clause(**active)
        rows = self._conn().execute(f"SELECT i.id{self._FROM}{where} ORDER BY i.id", params).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def item_rows(self, ids: Iterable[int] | None = None) -> list[tuple[int, str, str | None]]:
        """``(id, absolute image path, region or None)`` of these items (default: all), ordered by id.

        What feature and factor computation needs to open each item's image, without the metadata.
        """
        sql, params = "SELECT id, path, region FROM items", []
        if ids is not None:
            sql += " WHERE id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([int(i) for i in ids]))
        rows = self._conn().execute(sql + " ORDER BY id", params).fetchall()
        return [(int(i), str(self.resolve_path(p)), r or None) for i, p, r in rows]

    def distinct(self, column: str) -> list[Any]:
        """Sorted distinct non-empty values of a column (for filter widgets)."""
        if column not in _DISTINCT_COLUMNS:
            raise ValueError(f"distinct: unknown column {column!r}; known: {sorted(_DISTINCT_COLUMNS)}")
        expr = _DISTINCT_COLUMNS[column]
        sql = f"SELECT DISTINCT {expr}{self._FROM} WHERE {expr} IS NOT NULL AND {expr} != '' ORDER BY {expr}"
        return [row[0] for row in self._conn().execute(sql)]

    def books(self) -> pd.DataFrame:
        """Every book with its metadata and number of items, ordered by year then id."""
        sql = ("SELECT b.book, b.title, b.author, b.printer, b.place, b.year, COUNT(i.id) AS n_items"
               " FROM books b LEFT JOIN items i ON i.book = b.book GROUP BY b.book"
               " ORDER BY b.year IS NULL, b.year, b.book")
        rows = self._conn().execute(sql).fetchall()
        frame = pd.DataFrame([tuple(r) for r in rows],
                             columns=["book", "title", "author", "printer", "place", "year", "n_items"])
        frame["year"] = frame["year"].astype("Int64")
        return frame

    # -- ingest log -------------------------------------------------------------------------------
    def log_ingest(self, kind: str, source: str, started_at: str, added: int, duplicates: int,
                   skipped: list[tuple[str, str]]) -> int:
        """Append one ingest run to the log; returns its id."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO ingest_reports (kind, source, started_at, finished_at, added, duplicates,"
                " skipped, skipped_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, source, started_at, _now(), int(added), int(duplicates), len(skipped),
                 json.dumps([list(s) for s in skipped], ensure_ascii=False)))
            return int(cursor.lastrowid)

    def ingest_log(self) -> pd.DataFrame:
        """The ingest log, oldest first (``skipped_json`` holds the (source, reason) pairs)."""
        rows = self._conn().execute("SELECT * FROM ingest_reports ORDER BY id").fetchall()
        columns = ["id", "kind", "source", "started_at", "finished_at", "added", "duplicates", "skipped",
                   "skipped_json"]
        return pd.DataFrame([tuple(r) for r in rows], columns=columns)
