"""One ingest, whatever its source: the report, the loop over items, and adding one image to the store.

Folder ingest (:mod:`corpus_index.ingest.folder`) and IIIF ingest (:mod:`corpus_index.ingest.iiif`) differ only
in where their items come from and how an item's image is found. Everything else is here, once:
:meth:`IngestRun.each` gives every item to the source's step, turns a bad item into a skip with its reason (a
broken database stops the ingest instead: it is not bad input), and reports progress after each item;
:meth:`IngestRun.add` puts one image (or a region of it) into the store with its thumbnail and records it as
added or duplicate; :meth:`IngestRun.finish` logs the ingest in the store and returns its :class:`IngestReport`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas as pd
from PIL import Image

from corpus_index.ingest.images import THUMB_SIZE, ImageRejected, check_region, write_thumbnail
from corpus_index.progress import Progress
from corpus_index.storage.store import Store

T = TypeVar("T")


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


class IngestRun:
    """One ingest into ``store``: ``kind`` (``"folder"``, ``"iiif"``) and ``source`` name it in the store's log
    and in :attr:`report`; ``progress(done, total, name)`` is called after each item."""

    def __init__(self, store: Store, kind: str, source: str, progress: Progress | None = None,
                 thumb_size: int = THUMB_SIZE):
        self.store, self.kind, self.progress, self.thumb_size = store, kind, progress, thumb_size
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.report = IngestReport(source=source)

    def each(self, items: Iterable[tuple[int, str, T]], total: int, step: Callable[[T], Any]) -> None:
        """Run ``step(payload)`` for each ``(position, name, payload)`` of ``items``.

        A step that raises skips its item with the reason (:class:`ImageRejected`'s message, else the exception's
        type and message), except :class:`sqlite3.Error`, which stops the ingest. ``progress(position, total,
        name)`` follows each item.
        """
        for position, name, payload in items:
            try:
                step(payload)
            except ImageRejected as error:
                self.report.skip(name, str(error))
            except sqlite3.Error:
                raise  # a broken database is not bad input: stop rather than report thousands of failures
            except Exception as error:  # e.g. a file that vanished or became unreadable mid-ingest
                self.report.skip(name, f"{type(error).__name__}: {error}")
            if self.progress is not None:
                self.progress(position, total, name)

    def add(self, image: Image.Image | Callable[[], Image.Image], *, source: str, digest: str, path: str,
            region: tuple[int, int, int, int] | None, fields: dict[str, Any],
            report_as: str | None = None) -> int | None:
        """Add one image (or a region of it) with its thumbnail; record the outcome in :attr:`report`.

        ``image`` is the validated image, or a callable returning it: then it is only loaded when the item is not
        in the store yet. ``source`` is stored with the item; ``report_as`` (default ``source``) names it in the
        report. Returns the item id (new or existing), or ``None`` if it was skipped (region outside the image).
        """
        report_as = report_as or source
        existing = self.store.find_item(digest, region)
        if existing is not None:
            self.report.record_duplicate(report_as, existing)
            return existing
        if callable(image):
            image = image()
        try:
            if region is not None:
                check_region(region, image.width, image.height)
        except ImageRejected as error:
            self.report.skip(report_as, str(error))
            return None
        thumb = write_thumbnail(self.store.root, image, digest, region, size=self.thumb_size)
        width, height = (region[2], region[3]) if region is not None else image.size
        item_id, is_new = self.store.add_item(hash=digest, source=source, path=path, region=region, width=width,
                                              height=height, thumb=thumb, **fields)
        if is_new:
            self.report.record_added(report_as, item_id)
        else:  # another ingest added it in the meantime
            self.report.record_duplicate(report_as, item_id)
        return item_id

    def finish(self) -> IngestReport:
        """Log the ingest in the store; return its report."""
        report = self.report
        self.store.log_ingest(self.kind, report.source, self.started, len(report.added), len(report.duplicates),
                              report.skipped)
        return report
