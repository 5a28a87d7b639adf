"""``ingest --csv FILE --update``: metadata from a CSV for items already in the corpus.

A plain ingest never changes an item it already holds (it reports it as "already in the corpus"), so edits made
in the explorer survive any re-ingest. To correct or complete the metadata of many items at once, a historian
writes a metadata CSV (the ingest columns, optionally ``note`` and ``hash``) and runs an update: each row is
matched to one item and its non-empty cells are written through :func:`corpus_index.metadata_edit.edit_item`, so
every change is checked and logged with the editor (default ``csv:<file name>``) like an edit in the explorer.
An empty cell means "not known here", never "erase".

A row is matched, in this order, by
1. its ``hash`` column (the SHA-256 of the scan file, as ``corpus.sqlite`` stores it);
2. its ``path`` (relative to the CSV's folder, or absolute) equal to an item's stored path or source;
3. the content hash of the file at that path, when it exists (a copy of a scan finds its item);
4. the file name alone, when exactly one item's path or source has it (a CSV written for scans uploaded in the
   explorer names them as they were uploaded).
A ``region`` cell restricts the match to that region of the page. Rows that match nothing, or more than one item by
file name, are reported with the reason and change nothing.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from corpus_index.ingest.images import format_region, parse_region, sha256_file
from corpus_index.ingest.metadata_csv import check_metadata_csv, read_csv_text
from corpus_index.metadata_edit import EDITABLE_FIELDS, MetadataError, edit_item
from corpus_index.storage.store import Store


@dataclass
class UpdateReport:
    """What an update from a CSV did: ``updated`` (source, item id, changed fields), ``unchanged`` (source, item
    id), ``skipped`` (source, reason)."""

    source: str = ""
    updated: list[tuple[str, int, list[str]]] = field(default_factory=list)
    unchanged: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, max_lines: int = 10) -> str:
        """A short account for people: counts, then the first updated items and skipped rows."""
        lines = [f"{self.source}: {len(self.updated)} items updated, {len(self.unchanged)} already up to date, "
                 f"{len(self.skipped)} rows skipped"]
        lines += [f"  updated {s} (item {i}): {', '.join(f)}" for s, i, f in self.updated[:max_lines]]
        if len(self.updated) > max_lines:
            lines.append(f"  ... and {len(self.updated) - max_lines} more updated")
        lines += [f"  skipped {s}: {r}" for s, r in self.skipped[:max_lines]]
        if len(self.skipped) > max_lines:
            lines.append(f"  ... and {len(self.skipped) - max_lines} more skipped")
        return "\n".join(lines)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per CSV row: ``source``, ``status`` (updated/unchanged/skipped), ``item_id``, ``detail``."""
        rows = [(s, "updated", i, ", ".join(f)) for s, i, f in self.updated]
        rows += [(s, "unchanged", i, None) for s, i in self.unchanged]
        rows += [(s, "skipped", None, r) for s, r in self.skipped]
        frame = pd.DataFrame(rows, columns=["source", "status", "item_id", "detail"])
        frame["item_id"] = frame["item_id"].astype("Int64")
        return frame


def _rows(csv_path: Path) -> list[tuple[str, dict[str, str]]]:
    """(where, row) of every non-empty data row, column names lower-cased."""
    check_metadata_csv(csv_path)
    reader = csv.reader(io.StringIO(read_csv_text(csv_path), newline=""))
    names = [h.strip().lower() for h in next(reader)]
    rows = []
    for values in reader:
        if any(v.strip() for v in values):
            rows.append((f"{csv_path.name} line {reader.line_num}",
                         {name: (values[i].strip() if i < len(values) else "") for i, name in enumerate(names)}))
    return rows


def _matching(store: Store, csv_dir: Path, row: dict[str, str]) -> int:
    """The id of the one item a row describes; ``ValueError`` with the reason otherwise."""
    region = format_region(parse_region(row.get("region")))
    if row.get("hash"):
        found = store.find_item(row["hash"].lower(), region)
        if found is None:
            raise ValueError(f"no item with hash {row['hash'][:16]}…" + (f" and region {region}" if region else ""))
        return found
    raw = row.get("path", "")
    if not raw:
        raise ValueError("missing path (or hash)")
    path = Path(raw) if Path(raw).is_absolute() else csv_dir / raw
    candidates = {os.path.abspath(path)}
    try:
        candidates.add(str(path.resolve()))
    except (OSError, RuntimeError, ValueError):
        pass
    sql = "SELECT id FROM items WHERE (path IN ({0}) OR source IN ({0})) AND IFNULL(region, '') = ?"
    marks = ", ".join("?" for _ in candidates)
    hits = {int(r[0]) for r in store.query(sql.format(marks), [*candidates, *candidates, region or ""])}
    if len(hits) == 1:
        return hits.pop()
    if path.is_file():
        found = store.find_item(sha256_file(path), region)
        if found is not None:
            return found
    name = Path(raw).name
    hits = set()
    for item_id, stored_path, source in store.query("SELECT id, path, source FROM items WHERE IFNULL(region, '') = ?",
                                                    (region or "",)):
        if Path(stored_path).name == name or Path(source).name == name:
            hits.add(int(item_id))
    if len(hits) == 1:
        return hits.pop()
    if hits:
        raise ValueError(f"{len(hits)} items have the file name {name!r} (items {sorted(hits)[:5]}): give the "
                         "path as stored, or a hash column")
    raise ValueError("no item in the corpus has this file (by path, content or file name)")


def update_from_csv(store: Store, csv_path: str | Path, editor: str | None = None) -> UpdateReport:
    """Update the metadata of items already in the corpus from a metadata CSV (see the module docstring).

    Parameters
    ----------
    store : Store
    csv_path : path-like
        The CSV; relative paths in it are relative to its folder.
    editor : str, optional
        Who is recorded as the editor of the changes (default ``csv:<file name>``).

    Returns
    -------
    UpdateReport

    Raises
    ------
    FileNotFoundError, ValueError
        For a missing or unreadable CSV, or one without a ``path`` column (before anything is written).
    """
    csv_path = Path(csv_path).expanduser()
    rows = _rows(csv_path)
    editor = editor or f"csv:{csv_path.name}"
    report = UpdateReport(source=str(csv_path))
    csv_dir = csv_path.resolve().parent
    for where, row in rows:
        name = row.get("path") or row.get("hash") or where
        try:
            item_id = _matching(store, csv_dir, row)
            changes = {f: row[f] for f in EDITABLE_FIELDS if row.get(f)}
            result = edit_item(store, item_id, changes, editor, any_kind=True)
        except (ValueError, MetadataError, OSError) as error:
            report.skipped.append((name, f"{where}: {error}"))
            continue
        if result.changes:
            report.updated.append((name, item_id, [change[0] for change in result.changes]))
        else:
            report.unchanged.append((name, item_id))
    return report


__all__ = ["UpdateReport", "update_from_csv"]
