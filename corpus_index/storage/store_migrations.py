"""The schema steps of ``corpus.sqlite`` and the checks that refuse a file that is not a corpus database.

:data:`MIGRATIONS` lists the SQL steps from version 0 upwards; :func:`migrate` applies the missing ones, one
transaction per step. A file written by a newer version of this code is refused with
:class:`SchemaVersionError`; a file that is not a corpus database at all (empty, another program's SQLite, not
SQLite) with :class:`CorpusDatabaseError`, never silently turned into a new empty store: an empty store under a
root that still holds features, indexes and factors would hand their item ids to other scans.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corpus_index.storage.store import Store

_WHAT_TO_DO = "move it away and re-ingest, or restore it from a backup"

MIGRATIONS: list[list[str]] = [
    # Version 1: books and items.
    [
        "CREATE TABLE books (book TEXT PRIMARY KEY, title TEXT, author TEXT, printer TEXT, place TEXT,"
        " year INTEGER)",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, hash TEXT NOT NULL, source TEXT NOT NULL,"
        ' path TEXT NOT NULL, region TEXT, kind TEXT, "group" TEXT, book TEXT REFERENCES books(book),'
        " page INTEGER, label TEXT,"
        " width INTEGER, height INTEGER, extra TEXT NOT NULL DEFAULT '{}', added_at TEXT NOT NULL)",
        # UNIQUE(hash, region) would let NULL regions repeat (NULLs are distinct in SQL), hence the IFNULL.
        "CREATE UNIQUE INDEX items_hash_region ON items(hash, IFNULL(region, ''))",
        "CREATE INDEX items_book ON items(book)",
    ],
    # Version 2: thumbnails, feature bookkeeping, the ingest log.
    [
        "ALTER TABLE items ADD COLUMN thumb TEXT",
        "CREATE INDEX items_kind ON items(kind)",
        "CREATE INDEX items_source ON items(source)",
        "CREATE TABLE feature_sets (model_key TEXT NOT NULL, item_id INTEGER NOT NULL REFERENCES items(id)"
        " ON DELETE CASCADE, row INTEGER, batch INTEGER, added_at TEXT NOT NULL,"
        " PRIMARY KEY (model_key, item_id))",
        "CREATE TABLE ingest_reports (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, source TEXT NOT NULL,"
        " started_at TEXT NOT NULL, finished_at TEXT NOT NULL, added INTEGER NOT NULL,"
        " duplicates INTEGER NOT NULL, skipped INTEGER NOT NULL, skipped_json TEXT NOT NULL DEFAULT '[]')",
    ],
    # Version 3: what each image file looked like when its hash was last checked (size, mtime), so a build can
    # re-hash only the files that changed since and notice a scan replaced in place.
    [
        "CREATE TABLE file_checks (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
        " hash TEXT NOT NULL, checked_at TEXT NOT NULL)",
    ],
    # Version 4: what historians conclude. Verdicts on pairs keep their history (a changed verdict supersedes the
    # old row, never overwrites it) and the items' content hashes, so they survive a re-ingest; metadata edits
    # made after ingest are logged field by field (who, when, old and new value); a free note per item.
    [
        "CREATE TABLE verdicts (id INTEGER PRIMARY KEY, item1 INTEGER NOT NULL, item2 INTEGER NOT NULL,"
        " hash1 TEXT NOT NULL, hash2 TEXT NOT NULL,"
        " label TEXT NOT NULL CHECK (label IN ('same', 'partial', 'related', 'different')),"
        " wrong_reason INTEGER NOT NULL DEFAULT 0, regions TEXT NOT NULL DEFAULT '[]', note TEXT NOT NULL DEFAULT '',"
        " reviewer TEXT NOT NULL, model_key TEXT, gamma TEXT, pool INTEGER, score REAL, params_hash TEXT,"
        " created_at TEXT NOT NULL, superseded_by INTEGER REFERENCES verdicts(id))",
        "CREATE INDEX verdicts_pair ON verdicts(item1, item2)",
        "CREATE TABLE metadata_edits (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL, hash TEXT NOT NULL,"
        " field TEXT NOT NULL, old_value TEXT, new_value TEXT, editor TEXT NOT NULL, edited_at TEXT NOT NULL)",
        "CREATE INDEX metadata_edits_item ON metadata_edits(item_id)",
        "ALTER TABLE items ADD COLUMN note TEXT",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaVersionError(RuntimeError):
    """The database was written by a newer version of this code (or is not a corpus database)."""


class CorpusDatabaseError(SchemaVersionError):
    """``corpus.sqlite`` exists but is not a corpus database (empty, another program's, not SQLite)."""


def empty_database_error(db_path: Path) -> CorpusDatabaseError:
    """The error for a 0-byte ``corpus.sqlite`` (a real store always has at least its header page)."""
    return CorpusDatabaseError(f"{db_path} is empty (0 bytes) — not a corpus database; {_WHAT_TO_DO}")


def foreign_database_error(db_path: Path, error: sqlite3.DatabaseError) -> CorpusDatabaseError:
    """The error for a file SQLite cannot read as a database."""
    return CorpusDatabaseError(f"{db_path} is not a corpus database ({error}); {_WHAT_TO_DO}")


def migrate(store: Store, conn: sqlite3.Connection) -> None:
    """Bring the open database to :data:`SCHEMA_VERSION` (refusing newer and foreign files)."""
    with store.transaction():
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "schema_version" not in tables:
            raise CorpusDatabaseError(f"{store.db_path} is not a corpus database (it has tables "
                                      f"{sorted(tables)} but no schema_version); {_WHAT_TO_DO}")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    while True:
        # Version read and step applied in one transaction: two processes opening an old file at once
        # cannot apply the same step twice.
        with store.transaction():
            version = store.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{store.db_path} has schema version {version}, but this code knows only up to "
                    f"{SCHEMA_VERSION}: open it with a newer version of corpus_index")
            if version == SCHEMA_VERSION:
                return
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
