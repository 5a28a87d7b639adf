"""Noticing scans replaced in place: a build re-hashes the image files that changed since their last check.

An item's hash (``items.hash``) is taken at ingest; everything computed from the item carries it
(:mod:`corpus_index.storage.integrity`). If someone overwrites the scan file afterwards, the stored vectors no longer
describe it. So before computing features, a build (:func:`refresh_hashes`) compares every item file's size and
modification time with what the ``file_checks`` table recorded when its hash was last verified:

* unchanged size and mtime: the hash stands (no read);
* changed, or never checked (items ingested before this table existed, or since the last build): the file is
  hashed again (its stat taken *before* reading, so a write during hashing shows up next time), and if the hash
  differs, the items of that file get the new hash. Their stored features, index rows and factors then no longer
  match and are recomputed by the build.

So the first build after ingest reads every file once more; later builds read only changed files. If the new
content equals another item's (same hash and region), the item cannot take that hash (items are unique by
content); it is reported and left out of the build until resolved.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from corpus_index.ingest.images import sha256_file
from corpus_index.progress import Progress
from corpus_index.storage.store import Store, _now


@dataclass
class RehashReport:
    """What :func:`refresh_hashes` did: files re-hashed, items whose hash changed, items left out (id, reason)."""

    hashed: int = 0
    changed: list[int] = field(default_factory=list)
    conflicts: list[tuple[int, str]] = field(default_factory=list)


def refresh_hashes(store: Store, progress: Progress | None = None) -> RehashReport:
    """Re-hash the item files whose size or mtime changed since their last check; update changed items' hashes."""
    by_path: dict[str, list[tuple[int, str, str | None]]] = {}
    for item_id, digest, path, region in store.query("SELECT id, hash, path, region FROM items ORDER BY id"):
        by_path.setdefault(path, []).append((int(item_id), digest, region))
    checks = {row[0]: tuple(row[1:]) for row in store.query("SELECT path, size, mtime_ns, hash FROM file_checks")}
    report = RehashReport()
    for number, (path, members) in enumerate(by_path.items(), start=1):
        file = store.resolve_path(path)
        try:
            stat = file.stat()
        except OSError:
            continue  # a missing scan is reported by the build when it cannot load it
        hashes = {digest for _, digest, _ in members}
        if checks.get(path) == (stat.st_size, stat.st_mtime_ns, next(iter(hashes))) and len(hashes) == 1:
            continue
        try:
            digest = sha256_file(file)
        except OSError:
            continue
        report.hashed += 1
        ok = True
        for item_id, old, region in members:
            if old == digest:
                continue
            try:
                with store.transaction() as tx:
                    tx.execute("UPDATE items SET hash = ? WHERE id = ?", (digest, item_id))
                report.changed.append(item_id)
            except sqlite3.IntegrityError:
                ok = False
                other = store.find_item(digest, region)
                report.conflicts.append((item_id, f"{file} was replaced by a copy of item {other}'s image; "
                                                  "delete one of the two items or restore the scan"))
        if ok:
            with store.transaction() as tx:
                tx.execute("INSERT OR REPLACE INTO file_checks (path, size, mtime_ns, hash, checked_at)"
                           " VALUES (?, ?, ?, ?, ?)", (path, stat.st_size, stat.st_mtime_ns, digest, _now()))
        if progress is not None:
            progress(number, len(by_path), f"checking scans: {path}")
    return report
