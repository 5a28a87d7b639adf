"""CSV files that are safe to open in a spreadsheet.

Metadata comes from users' CSV files and IIIF manifests, so a title may read ``=HYPERLINK("http://…")``. A
spreadsheet opening our export would run it as a formula. Every CSV this project writes goes through
:func:`defuse`: a text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
``'`` (OWASP's advice for CSV injection), so it is shown as text. Numeric columns are left alone: numbers stay
numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse_cell(value):
    """``value`` with a leading ``'`` when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def defuse(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) cannot start a formula."""
    safe = frame.copy()
    for column in safe.columns:
        if not (pd.api.types.is_numeric_dtype(safe[column]) or pd.api.types.is_bool_dtype(safe[column])):
            safe[column] = safe[column].map(defuse_cell)
    safe.columns = [defuse_cell(str(c)) for c in safe.columns]
    return safe


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as defused UTF-8 CSV (for download buttons)."""
    return defuse(frame).to_csv(index=False).encode("utf-8")


def write_csv(frame: pd.DataFrame, destination: str | Path) -> None:
    """Write the frame as defused CSV to a file (creating its folder) or to standard output for ``"-"``."""
    safe = defuse(frame)
    if str(destination) == "-":
        safe.to_csv(sys.stdout, index=False)
        return
    destination = Path(destination)
    if destination.is_dir():
        raise IsADirectoryError(f"--csv {destination} is a folder; give a file name such as {destination / 'out.csv'}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    safe.to_csv(destination, index=False)
