"""Ingest a folder of scans (with an optional metadata CSV) into a :class:`~corpus_index.store.Store`.

Bad input never stops or corrupts an ingest: every file or CSV row that cannot go in is skipped and reported
with its reason in the :class:`IngestReport`; everything else goes in. A file named by a CSV row that cannot go
in (a bad year, too many fields, a row the CSV reader cannot read) is skipped with that row: it is *not* then
added by the folder walk with folder-derived metadata, so the report never says "skipped" about a file that went
in. Only a bad CSV as a whole (missing, unreadable, no ``path`` column) stops an ingest, before anything is
written; :func:`check_metadata_csv` checks that alone, so a caller can refuse before it creates a store.
Animated GIFs and multi-page TIFFs go in with their first frame, and the report notes it.

Scans are referenced in place (absolute path) and identified by the SHA-256 of their bytes plus their region,
so re-ingesting adds nothing twice. Thumbnails go to ``ROOT/thumbs/``.

The metadata CSV has the demo corpus columns ``path, kind, group, book, title, author, printer, place, year,
page`` (``path`` relative to the CSV's folder), optionally ``label`` and ``region`` (``"x,y,w,h"`` for an item
that is a region of a page); other columns are kept in the items' ``extra`` metadata. Files without a row get
``book`` = their folder (relative to the ingest folder), ``page`` = their order in it, ``label`` = file stem.
"""

from __future__ import annotations

import csv
import os
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from corpus_index.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    THUMB_SIZE,
    ImageRejected,
    check_region,
    open_validated,
    sha256_file,
    write_thumbnail,
)
from corpus_index.layout import Layout
from corpus_index.metadata_csv import (
    CSV_COLUMNS,
    PAGE_RANGE,
    YEAR_RANGE,
    RawLines,
    check_metadata_csv,
    header_names,
    leading_field,
    read_csv_text,
    whole_number,
)
from corpus_index.progress import Progress
from corpus_index.store import Store, parse_region


@dataclass
class IngestReport:
    """What one ingest did.

    Attributes
    ----------
    source : str
        The folder or manifest ingested.
    added : list of int
        Ids of the items added.
    duplicates : list of (str, int)
        Files (or regions) already in the store: (source, id of the existing item).
    skipped : list of (str, str)
        Files, CSV rows, canvases or manifests that did not go in: (source, reason).
    notes : list of (str, str)
        Files that went in with a remark, e.g. only the first frame of an animated GIF: (source, remark).
    """

    source: str = ""
    added: list[int] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    added_sources: list[str] = field(default_factory=list, repr=False)

    def record_added(self, source: str, item_id: int) -> None:
        self.added.append(int(item_id))
        self.added_sources.append(source)

    def record_duplicate(self, source: str, item_id: int) -> None:
        self.duplicates.append((source, int(item_id)))

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append((str(source), reason))

    def note(self, source: str, remark: str) -> None:
        self.notes.append((str(source), remark))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per outcome: ``source``, ``status`` (added/duplicate/skipped), ``item_id``, ``reason`` (for
        added items, the remark of :attr:`notes` if there is one)."""
        remarks = dict(self.notes)
        rows = [(s, "added", i, remarks.get(s)) for s, i in zip(self.added_sources, self.added, strict=True)]
        rows += [(s, "duplicate", i, None) for s, i in self.duplicates]
        rows += [(s, "skipped", None, r) for s, r in self.skipped]
        frame = pd.DataFrame(rows, columns=["source", "status", "item_id", "reason"])
        frame["item_id"] = frame["item_id"].astype("Int64")
        return frame

    def summary(self, max_reasons: int = 10) -> str:
        """A short account for people, with the first ``max_reasons`` skipped files and their reasons."""
        lines = [f"{self.source}: {len(self.added)} added, {len(self.duplicates)} already present, "
                 f"{len(self.skipped)} skipped"]
        for source, remark in self.notes[:max_reasons]:
            lines.append(f"  note {source}: {remark}")
        if len(self.notes) > max_reasons:
            lines.append(f"  ... and {len(self.notes) - max_reasons} more notes")
        for source, reason in self.skipped[:max_reasons]:
            lines.append(f"  skipped {source}: {reason}")
        if len(self.skipped) > max_reasons:
            lines.append(f"  ... and {len(self.skipped) - max_reasons} more skipped")
        return "\n".join(lines)


@dataclass
class _Task:
    """One item to ingest from a file: its file (resolved), region and metadata. ``source`` names it in
    reports (as the CSV wrote it); ``origin`` is its absolute path as found, stored as the item's source."""

    source: str
    file: Path
    fields: dict[str, Any]
    region: tuple[int, int, int, int] | None = None
    origin: str = ""


def _natural_key(name: str) -> list:
    # "page2" before "page10", as a person would sort scans.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _inside(root: Path, candidate: Path) -> Path:
    """``candidate`` with symlinks resolved; ``ValueError`` (the reason) unless it lies inside ``root``."""
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError, ValueError) as error:  # symlink loops, NUL bytes, names too long
        raise ValueError(f"path cannot be resolved ({error})") from None
    if not resolved.is_relative_to(root):
        raise ValueError(f"path leads outside the corpus folder {root}")
    return resolved


def _derived_book(root: Path, file: Path) -> str:
    parent = file.parent
    return root.name if parent == root else parent.relative_to(root).as_posix()


def _tasks_from_csv(csv_path: Path, root: Path, report: IngestReport) -> tuple[list[_Task], set[Path]]:
    """Tasks for the CSV's rows; bad rows go to ``report``. Also returns every file a row names (claimed), even
    when its row is bad, so that the folder walk does not add it with derived metadata."""
    source = RawLines(read_csv_text(csv_path))
    reader = csv.reader(source)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise ValueError(f"metadata CSV {csv_path} cannot be read as CSV ({error})") from None
    names = header_names(header, csv_path)
    tasks, claimed = [], set()
    while True:
        line = reader.line_num + 1  # where the row starts (a quoted field may span lines)
        where = f"{csv_path.name} line {line}"
        source.raw = []
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as error:  # e.g. a field over the csv module's size limit
            raw_path = (leading_field("".join(source.raw), names.index("path")) or "").strip()
            _claim(raw_path, csv_path, root, claimed)
            report.skip(raw_path or where, f"{where}: unreadable row ({error})")
            continue
        if not any(v.strip() for v in values):
            continue
        row = {name: (values[i].strip() if i < len(values) else "") for i, name in enumerate(names)}
        try:
            if len(values) > len(names):
                _claim(row.get("path", ""), csv_path, root, claimed)
                raise ValueError(f"{len(values)} fields but the header has {len(names)}")
            task = _row_task(row, csv_path, root, claimed)
        except (ValueError, OSError) as error:
            report.skip(row.get("path") or where, f"{where}: {error}")
            continue
        tasks.append(task)
    return tasks, claimed


def _claim(raw_path: str, csv_path: Path, root: Path, claimed: set[Path]) -> None:
    """Add the file a bad row names to ``claimed`` (if it names one inside ``root``), so it is not walked."""
    try:
        if raw_path:
            claimed.add(_inside(root, Path(raw_path) if Path(raw_path).is_absolute() else csv_path.parent / raw_path))
    except ValueError:  # outside the folder: the walk would not find it anyway
        pass


def _row_task(row: dict[str, str], csv_path: Path, root: Path, claimed: set[Path]) -> _Task:
    """The task of one CSV row; ``ValueError`` with the reason if the row cannot go in."""
    raw_path = row.get("path", "")
    if not raw_path:
        raise ValueError("missing path")
    file = _inside(root, Path(raw_path) if Path(raw_path).is_absolute() else csv_path.parent / raw_path)
    claimed.add(file)  # named by a row: never ingested with derived metadata, even if the row is bad
    year = whole_number(row.get("year"), "year", YEAR_RANGE)
    page = whole_number(row.get("page"), "page", PAGE_RANGE)
    region = parse_region(row.get("region"))
    if not file.exists():
        raise ValueError("file not found")
    if not file.is_file():
        raise ValueError("not a file")
    named = ("kind", "group", "book", "title", "author", "printer", "place", "label")
    fields = {name: (row.get(name) or None) for name in named}
    fields.update(year=year, page=page)
    fields["book"] = fields["book"] or _derived_book(root, file)
    fields["label"] = fields["label"] or file.stem
    fields["extra"] = {k: v for k, v in row.items() if k not in CSV_COLUMNS and k and v}
    origin = os.path.abspath(raw_path if Path(raw_path).is_absolute() else csv_path.parent / raw_path)
    return _Task(source=raw_path, file=file, fields=fields, region=region, origin=origin)


def _tasks_from_walk(root: Path, claimed: set[Path], skip_dirs: set[Path],
                     report: IngestReport) -> list[_Task]:
    """Tasks for the image files under ``root`` that no CSV row names (metadata from folder and file)."""
    tasks = []

    def unreadable(error: OSError) -> None:
        report.skip(str(error.filename), f"cannot read folder: {error.strerror}")

    # followlinks=False: a symlinked folder is never walked (no loops, no escapes).
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(dirpath)
        kept = []
        for name in sorted(dirnames, key=_natural_key):
            sub = here / name
            if name.startswith(".") or sub.resolve() in skip_dirs:
                continue
            if sub.is_symlink():
                try:
                    _inside(root, sub)
                except ValueError as error:
                    report.skip(str(sub), f"symlinked folder: {error}")
                continue
            kept.append(name)
        dirnames[:] = kept
        images = sorted((n for n in filenames if Path(n).suffix.lower() in IMAGE_SUFFIXES
                         and not n.startswith(".")), key=_natural_key)
        for page, name in enumerate(images, start=1):
            path = here / name
            try:
                file = _inside(root, path)
            except ValueError as error:
                report.skip(str(path), str(error))
                continue
            if file in claimed or not file.is_file():
                continue
            fields = {"book": _derived_book(root, path), "page": page, "label": path.stem}
            tasks.append(_Task(source=str(path), file=file, fields=fields, origin=str(path)))
    return tasks


def add_image_item(store: Store, report: IngestReport, image, *, source: str, digest: str, path: str,
                   region: tuple[int, int, int, int] | None, fields: dict[str, Any],
                   thumb_size: int = THUMB_SIZE, report_as: str | None = None) -> int | None:
    """Add one validated image (or a region of it) with its thumbnail; record the outcome in ``report``.

    ``source`` is stored with the item; ``report_as`` (default ``source``) names it in the report. Returns the
    item id (new or existing), or ``None`` if it was skipped (region outside the image).
    """
    report_as = report_as or source
    existing = store.find_item(digest, region)
    if existing is not None:
        report.record_duplicate(report_as, existing)
        return existing
    try:
        if region is not None:
            check_region(region, image.width, image.height)
    except ImageRejected as error:
        report.skip(report_as, str(error))
        return None
    thumb = write_thumbnail(store.root, image, digest, region, size=thumb_size)
    width, height = (region[2], region[3]) if region is not None else image.size
    item_id, is_new = store.add_item(hash=digest, source=source, path=path, region=region, width=width,
                                     height=height, thumb=thumb, **fields)
    if is_new:
        report.record_added(report_as, item_id)
    else:  # another ingest added it in the meantime
        report.record_duplicate(report_as, item_id)
    return item_id


def check_folder_source(folder: str | Path, metadata_csv: str | Path | None = None) -> tuple[Path, Path | None]:
    """Check the parameters of :func:`ingest_folder` without writing anything; return the resolved folder and
    the metadata CSV (``folder/metadata.csv`` by default, if it exists).

    A caller that creates a store for the ingest calls this first, so a bad folder or CSV leaves no empty store.

    Raises
    ------
    NotADirectoryError, FileNotFoundError, ValueError
        As :func:`ingest_folder` (see :func:`corpus_index.metadata_csv.check_metadata_csv` for the CSV).
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise NotADirectoryError(f"ingest folder {folder} does not exist or is not a folder")
    root = root.resolve()
    if metadata_csv is not None:
        csv_path = Path(metadata_csv).expanduser()
    else:
        csv_path = root / "metadata.csv" if (root / "metadata.csv").is_file() else None
    if csv_path is not None:
        check_metadata_csv(csv_path)
    return root, csv_path


def ingest_folder(store: Store, folder: str | Path, metadata_csv: str | Path | None = None,
                  progress: Progress | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                  thumb_size: int = THUMB_SIZE) -> IngestReport:
    """Ingest every scan under ``folder`` (jpg, jpeg, png, tif, tiff; recursive).

    Parameters
    ----------
    store : Store
    folder : path-like
        The corpus folder. Every image must lie inside it (after resolving symlinks).
    metadata_csv : path-like, optional
        The metadata CSV; by default ``folder/metadata.csv`` if it exists.
    progress : callable, optional
        ``progress(done, total, message)`` after each file.
    max_pixels : int
        Images with more pixels are skipped (before decoding).
    thumb_size : int
        Longest side of the thumbnails.

    Returns
    -------
    IngestReport

    Raises
    ------
    NotADirectoryError, FileNotFoundError, ValueError
        Only for bad parameters (no such folder or CSV, an unreadable CSV, a CSV without a ``path`` column),
        before anything is written. Bad files and rows are reported, never raised: a row that cannot go in is
        skipped together with the file it names (see the module docstring).
    """
    started = datetime.now(UTC).isoformat(timespec="seconds")
    root, csv_path = check_folder_source(folder, metadata_csv)
    report = IngestReport(source=str(root))
    tasks, claimed = _tasks_from_csv(csv_path.resolve(), root, report) if csv_path else ([], set())
    # Never ingest the corpus's own thumbnails (nor its root, when the root lies inside the folder).
    skip_dirs = {Layout(store.root).thumbs} | ({store.root} if store.root != root else set())
    tasks += _tasks_from_walk(root, claimed, skip_dirs, report)
    digests: dict[Path, str] = {}
    last_image: tuple[Path | None, Any] = (None, None)  # regions of one page reuse its decoded image
    for done, task in enumerate(tasks, start=1):
        try:
            digest = digests.get(task.file) or sha256_file(task.file)
            digests[task.file] = digest
            existing = store.find_item(digest, task.region)
            if existing is not None:
                report.record_duplicate(task.source, existing)
            else:
                if last_image[0] != task.file:
                    last_image = (None, None)  # let the previous page go before decoding the next one
                    last_image = (task.file, open_validated(task.file, max_pixels=max_pixels))
                before = len(report.added)
                add_image_item(store, report, last_image[1], source=task.origin, report_as=task.source,
                               digest=digest, path=str(task.file), region=task.region, fields=task.fields,
                               thumb_size=thumb_size)
                frames = last_image[1].info.get("frames", 1)
                if frames > 1 and len(report.added) > before:
                    report.note(task.source, f"{frames} frames (animated or multi-page image): only the first "
                                             "frame was added")
        except ImageRejected as error:
            report.skip(task.source, str(error))
        except sqlite3.Error:
            raise  # a broken database is not bad input: stop rather than report thousands of failures
        except Exception as error:  # e.g. a file that vanished or became unreadable mid-ingest
            report.skip(task.source, f"{type(error).__name__}: {error}")
        if progress is not None:
            progress(done, len(tasks), task.source)
    store.log_ingest("folder", str(root), started, len(report.added), len(report.duplicates), report.skipped)
    return report
