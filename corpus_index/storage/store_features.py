"""The Store's feature bookkeeping: which items have feature vectors for which model key (``feature_sets``).

The feature batch files are the truth (:mod:`corpus_index.storage.features`); these marks mirror them so that queries
such as "items without features" are one SQL statement. A mixin of :class:`corpus_index.storage.store.Store`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class FeatureMarks:
    """Feature marks of :class:`~corpus_index.storage.store.Store` (uses its ``transaction`` and ``_conn``)."""

    def mark_features(self, model_key: str, item_ids: Iterable[int], rows: Iterable[int] | None = None,
                      batch: int | None = None) -> None:
        """Record that these items have features for ``model_key`` (optionally their rows and batch)."""
        ids = [int(i) for i in item_ids]
        row_numbers = [None] * len(ids) if rows is None else [int(r) for r in rows]
        if len(row_numbers) != len(ids):
            raise ValueError(f"mark_features: {len(ids)} item ids but {len(row_numbers)} rows")
        now = _now()
        try:
            with self.transaction() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO feature_sets (model_key, item_id, row, batch, added_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(model_key, i, r, batch, now) for i, r in zip(ids, row_numbers, strict=True)])
        except sqlite3.IntegrityError:
            known = {r[0] for r in self._conn().execute(
                "SELECT id FROM items WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))}
            missing = sorted(set(ids) - known)
            raise ValueError(f"mark_features({model_key!r}): no items with ids {missing[:10]}") from None

    def unmark_features(self, model_key: str, item_ids: Iterable[int] | None = None) -> None:
        """Forget feature marks of ``model_key``: for these items, or all of them with ``item_ids=None``."""
        with self.transaction() as conn:
            if item_ids is None:
                conn.execute("DELETE FROM feature_sets WHERE model_key = ?", (model_key,))
            else:
                ids = json.dumps([int(i) for i in item_ids])
                conn.execute("DELETE FROM feature_sets WHERE model_key = ? AND item_id IN"
                             " (SELECT value FROM json_each(?))", (model_key, ids))

    def reconcile_features(self, model_key: str, item_ids: Iterable[int]) -> None:
        """Make the marks of ``model_key`` exactly ``item_ids`` (ids no longer in the store are ignored)."""
        ids = json.dumps(sorted({int(i) for i in item_ids}))
        now = _now()
        with self.transaction() as conn:
            conn.execute("DELETE FROM feature_sets WHERE model_key = ? AND item_id NOT IN"
                         " (SELECT value FROM json_each(?))", (model_key, ids))
            conn.execute("INSERT OR IGNORE INTO feature_sets (model_key, item_id, added_at) SELECT ?, id, ?"
                         " FROM items WHERE id IN (SELECT value FROM json_each(?))", (model_key, now, ids))

    def items_without_features(self, model_key: str) -> list[int]:
        """Ids of the items that have no features for ``model_key``, ascending."""
        sql = ("SELECT id FROM items WHERE id NOT IN (SELECT item_id FROM feature_sets WHERE model_key = ?)"
               " ORDER BY id")
        return [int(r[0]) for r in self._conn().execute(sql, (model_key,))]

    def items_with_features(self, model_key: str) -> list[int]:
        """Ids of the items that have features for ``model_key``, ascending."""
        sql = "SELECT item_id FROM feature_sets WHERE model_key = ? ORDER BY item_id"
        return [int(r[0]) for r in self._conn().execute(sql, (model_key,))]
