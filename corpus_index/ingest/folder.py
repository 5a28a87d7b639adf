"""Ingest a folder of scans (with an optional metadata CSV) into a :class:`~corpus_index.storage.store.Store`.

Bad input never stops or corrupts an ingest: every file or CSV row that cannot go in is skipped and reported
with its reason in the :class:`~corpus_index.ingest.run.IngestReport`; everything else goes in. A file named by a
CSV row that cannot go in (a bad year, too many fields, a row the CSV reader cannot read) is skipped with that
row: it is *not* then added by the folder walk with folder-derived metadata, so the report never says "skipped"
about a file that went in. Only a bad CSV as a whole (missing, unreadable, no ``path`` column) stops an ingest,
before anything is written; :func:`check_metadata_csv` checks that alone, so a caller can refuse before it creates
a store. Animated GIFs and multi-page TIFFs go in with their first frame, and the report notes it. The loop over
the files is :class:`~corpus_index.ingest.run.IngestRun`'s, shared with IIIF ingest.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus_index.ingest.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    THUMB_SIZE,
    open_validated,
    parse_region,
    sha256_file,
)
from corpus_index.ingest.metadata_csv import (
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
from corpus_index.ingest.run import IngestReport, IngestRun
from corpus_index.progress import Progress
from corpus_index.storage.layout import Layout
from corpus_index.storage.store import Store


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
                     report: IngestReport, derive_metadata: bool = True) -> list[_Task]:
    """Tasks for the image files under ``root`` that no CSV row names (metadata from folder and file; with
    ``derive_metadata=False`` only the label, from the file name)."""
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
            fields = {"book": _derived_book(root, path), "page": page, "label": path.stem} if derive_metadata \
                else {"label": path.stem}
            tasks.append(_Task(source=str(path), file=file, fields=fields, origin=str(path)))
    return tasks


def check_folder_source(folder: str | Path, metadata_csv: str | Path | None = None) -> tuple[Path, Path | None]:
    """Check the parameters of :func:`ingest_folder` without writing anything; return the resolved folder and
    the metadata CSV (``folder/metadata.csv`` by default, if it exists).

    A caller that creates a store for the ingest calls this first, so a bad folder or CSV leaves no empty store.

    Raises
    ------
    NotADirectoryError, FileNotFoundError, ValueError
        As :func:`ingest_folder` (see :func:`corpus_index.ingest.metadata_csv.check_metadata_csv` for the CSV).
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
                  thumb_size: int = THUMB_SIZE, derive_metadata: bool = True) -> IngestReport:
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
    derive_metadata : bool
        Give files without a CSV row their folder as book and their order as page (default). ``False`` for
        folders that are no book, e.g. the explorer's upload folders: such scans get no book and no page (a
        made-up book would join unrelated scans uploaded together, and "exclude own book" would hide them from
        each other); their caption names the file.

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
    root, csv_path = check_folder_source(folder, metadata_csv)
    run = IngestRun(store, "folder", str(root), progress, thumb_size)
    tasks, claimed = _tasks_from_csv(csv_path.resolve(), root, run.report) if csv_path else ([], set())
    # Never ingest the corpus's own thumbnails (nor its root, when the root lies inside the folder).
    skip_dirs = {Layout(store.root).thumbs} | ({store.root} if store.root != root else set())
    tasks += _tasks_from_walk(root, claimed, skip_dirs, run.report, derive_metadata)
    files = _Files(max_pixels)
    run.each(((done, task.source, task) for done, task in enumerate(tasks, start=1)), len(tasks),
             lambda task: _ingest_task(run, files, task))
    return run.finish()


class _Files:
    """The hashes of the files seen and the decoded image of the last one: regions of one page reuse both."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels
        self.digests: dict[Path, str] = {}
        self.file: Path | None = None
        self.image = None

    def digest(self, file: Path) -> str:
        if file not in self.digests:
            self.digests[file] = sha256_file(file)
        return self.digests[file]

    def image_of(self, file: Path):
        if self.file != file:
            self.file, self.image = None, None  # let the previous page go before decoding the next one
            self.image = open_validated(file, max_pixels=self.max_pixels)
            self.file = file
        return self.image


def _ingest_task(run: IngestRun, files: _Files, task: _Task) -> None:
    """The step of :meth:`IngestRun.each` for one file or region; notes an animated or multi-page image."""
    before = len(run.report.added)
    run.add(lambda: files.image_of(task.file), source=task.origin, report_as=task.source,
            digest=files.digest(task.file), path=str(task.file), region=task.region, fields=task.fields)
    if len(run.report.added) > before:
        frames = files.image_of(task.file).info.get("frames", 1)
        if frames > 1:
            run.report.note(task.source, f"{frames} frames (animated or multi-page image): only the first frame "
                                         "was added")
