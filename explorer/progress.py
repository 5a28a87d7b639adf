"""The explorer's one progress display: a Streamlit progress bar that is a :data:`corpus_index.progress.Progress`.

Long work (demo build, ingest, index builds, BiLRP factors, features) reports ``progress(done, total, message)``;
every page shows it with :func:`progress_bar`. Each redraw is a message to the browser, so the bar redraws at most
every :data:`INTERVAL` seconds (and always when a piece of work is done).
"""

from __future__ import annotations

import time

import streamlit as st

from corpus_index.progress import Progress

INTERVAL = 0.2  # seconds between redraws


class ProgressBar:
    """A progress bar; calling it as ``bar(done, total, message)`` updates it (a :data:`Progress` callback)."""

    def __init__(self, title: str, container=None, label: str = ""):
        self._bar = (container or st).progress(0.0, text=title)
        self._label = f"{label}: " if label else ""
        self._last = -float("inf")

    def __call__(self, done: int, total: int, message: str) -> None:
        self._show(done / total if total else 1.0, done, total, message)

    def part(self, number: int, count: int) -> Progress:
        """The callback for part ``number`` (from 0) of ``count`` equal parts of the work (e.g. one of 5 models)."""
        def progress(done: int, total: int, message: str) -> None:
            self._show((number + (done / total if total else 1.0)) / count, done, total, message)

        return progress

    def empty(self) -> None:
        """Remove the bar (the work is done and its result is shown)."""
        self._bar.empty()

    def _show(self, fraction: float, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if now - self._last < INTERVAL and done < total:
            return
        self._last = now
        self._bar.progress(min(1.0, max(0.0, fraction)), text=f"{self._label}{message} ({done}/{total})")


def progress_bar(title: str, container=None, label: str = "") -> ProgressBar:
    """A progress bar showing ``title`` until the first report; ``label`` prefixes every later message."""
    return ProgressBar(title, container, label)


__all__ = ["INTERVAL", "ProgressBar", "progress_bar"]
