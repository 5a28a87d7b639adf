"""Progress reports of long work: the one callback type, and its terminal form for the command line.

Long work (ingest, feature builds, factor precomputation, demo generation) takes an optional
``progress(done, total, message)`` callback; raising from it interrupts the work, which keeps what it finished.
The explorer shows the same callback as a Streamlit progress bar (:func:`explorer.progress.progress_bar`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

Progress = Callable[[int, int, str], None]


class ProgressPrinter:
    """A one-line progress bar on stderr (a line per update at most every few seconds when not a terminal)."""

    def __init__(self, stream=None, interval: float = 2.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self._last = 0.0

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not self.tty and not finished and now - self._last < self.interval:
            return
        self._last = now
        fraction = done / total if total else 1.0
        bar = "#" * int(fraction * 30)
        line = f"[{bar:<30}] {done}/{total} {message}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150) + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
