"""Reading a metadata CSV: its header (with a hint when the separator is wrong), rows the csv module refuses,
and the whole numbers in it (years, pages) checked against sane ranges.

Split from :mod:`corpus_index.ingest.folder` so that a CSV can be checked before a store is created, and so that a row
the csv module cannot read still tells which file it names (:func:`leading_field`).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

CSV_COLUMNS = ("path", "kind", "group", "book", "title", "author", "printer", "place", "year", "page",
               "label", "region")
_WHOLE_NUMBER = re.compile(r"[+-]?\d+(?:\.0*)?")
# Years and pages beyond these are typing errors (and would not fit in a database integer).
YEAR_RANGE = (-9999, 9999)
PAGE_RANGE = (0, 10**9)
SEPARATORS = {";": "';'", "\t": "tab"}


def whole_number(value: str | None, name: str, bounds: tuple[int, int]) -> int | None:
    """A CSV cell as a whole number within ``bounds``; ``ValueError`` naming the column and value otherwise."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not _WHOLE_NUMBER.fullmatch(text):
        raise ValueError(f"bad {name} {text!r} (expected a whole number)")
    digits = text.split(".")[0]
    shown = digits if len(digits) <= 40 else digits[:37] + "..."
    low, high = bounds
    # Exact (no float rounding); very long digit strings are out of range without being converted.
    if len(digits.lstrip("+-")) > 12 or not low <= int(digits) <= high:
        raise ValueError(f"{name} {shown} is not a {'year' if name == 'year' else 'page number'} "
                         f"(expected a whole number from {low} to {high})")
    return int(digits)


def read_csv_text(csv_path: Path) -> str:
    try:
        data = csv_path.read_bytes()
    except OSError as error:
        raise ValueError(f"metadata CSV {csv_path} cannot be read ({error.strerror or error})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Spreadsheets on Windows save cp1252; better readable accents than no ingest at all.
        return data.decode("cp1252", errors="replace")


def header_names(header: list[str] | None, csv_path: Path) -> list[str]:
    """The column names of a CSV header; ``ValueError`` (with a hint on a wrong separator) if it has no path."""
    if not header:
        raise ValueError(f"metadata CSV {csv_path} is empty")
    names = [h.strip().lower() if h.strip().lower() in CSV_COLUMNS else h.strip() for h in header]
    if "path" not in names:
        shown = ", ".join(repr(h[:40]) for h in header[:12]) + (", ..." if len(header) > 12 else "")
        hint = ""
        if len(header) == 1:
            hint = next((f"; this looks like a {name}-separated file: save it with commas as separators"
                         for sep, name in SEPARATORS.items() if sep in header[0]), "")
        raise ValueError(f"metadata CSV {csv_path} has no 'path' column (columns: {shown}){hint}")
    return names


def check_metadata_csv(csv_path: str | Path) -> list[str]:
    """Check that a metadata CSV can be ingested at all; return its column names.

    Called by :func:`corpus_index.ingest.folder.ingest_folder`, and by callers that want to refuse a bad CSV before
    they create a store.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If it cannot be read, is empty or has no ``path`` column (the message hints at a ';' or tab separator).
    """
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise FileNotFoundError(f"metadata CSV {csv_path} not found")
    reader = csv.reader(io.StringIO(read_csv_text(csv_path), newline=""))
    try:
        header = next(reader, None)
    except csv.Error as error:  # e.g. NUL bytes: not a text file
        raise ValueError(f"metadata CSV {csv_path} cannot be read as CSV ({error})") from None
    return header_names(header, csv_path)


class RawLines:
    """The lines of a text for :func:`csv.reader`, remembering the raw lines of the row being read."""

    def __init__(self, text: str):
        self._lines = io.StringIO(text, newline="")
        self.raw: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._lines.readline()
        if not line:
            raise StopIteration
        self.raw.append(line)
        return line


def leading_field(text: str, index: int) -> str | None:
    """Field ``index`` of a raw CSV row, read without the csv module (for rows it refused, e.g. a field over its
    size limit after the path); ``None`` if the row ends first."""
    position = 0
    for number in range(index + 1):
        if text.startswith('"', position):
            value, position = [], position + 1
            while True:
                quote = text.find('"', position)
                if quote < 0:
                    return None
                value.append(text[position:quote])
                if text.startswith('"', quote + 1):  # "" is an escaped quote
                    value.append('"')
                    position = quote + 2
                    continue
                position = quote + 1
                break
            end = min((i for i in (text.find(c, position) for c in ",\r\n") if i >= 0), default=len(text))
            field = "".join(value) + text[position:end]
        else:
            end = min((i for i in (text.find(c, position) for c in ",\r\n") if i >= 0), default=len(text))
            field = text[position:end]
        if number == index:
            return field
        if not text.startswith(",", end):
            return None
        position = end + 1
    return None
