"""Read ``.npy`` arrays and ``.npz`` archives as numpy writes them, without ``ast``.

numpy parses a ``.npy`` header with ``ast.literal_eval``. On CPython 3.11 (seen here with 3.11.7; CPython
gh-106905 and its follow-ups) the AST constructor keeps its recursion counter in interpreter-wide state, so two
threads parsing at once can fail with ``SystemError: AST constructor recursion depth mismatch``. The explorer's
prefetch worker reads factor files while Streamlit's script threads parse (numpy, ``inspect``), and several
browser sessions run scripts at once, so the corpus reads its arrays here. A header is read with a strict regular
grammar of what numpy writes: a dict of exactly ``descr`` (a dtype string), ``fortran_order`` (True/False) and
``shape`` (a tuple of non-negative integers), in any order.
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

_ENTRIES = {
    "descr": re.compile(r"'descr'\s*:\s*'([^'\\]*)'"),
    "fortran_order": re.compile(r"'fortran_order'\s*:\s*(True|False)"),
    "shape": re.compile(r"'shape'\s*:\s*\(\s*((?:\d+\s*,\s*)*(?:\d+\s*)?)\)"),
}
_LENGTH_FORMAT = {(1, 0): "<H", (2, 0): "<I", (3, 0): "<I"}


def parse_header(text: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of a ``.npy`` header dict's text; ValueError for anything else.

    Structured dtypes (a list as ``descr``) and any other key are refused: factors are plain numeric arrays.
    """
    rest, found = text.strip(), {}
    for key, pattern in _ENTRIES.items():
        match = pattern.search(rest)
        if match is None:
            raise ValueError(f"npy header without a plain {key!r}: {text.strip()[:120]!r}")
        found[key] = match.group(1)
        rest = rest[:match.start()] + rest[match.end():]
    if re.fullmatch(r"\{[\s,]*\}", rest) is None:
        raise ValueError(f"npy header with unexpected entries: {text.strip()[:120]!r}")
    shape = tuple(int(size) for size in found["shape"].replace(",", " ").split())
    try:
        dtype = np.dtype(found["descr"])
    except TypeError as error:
        raise ValueError(f"npy header with an unknown dtype {found['descr']!r}") from error
    return shape, found["fortran_order"] == "True", dtype


def read_header(handle) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the ``.npy`` array at the handle's position; leaves it at the data."""
    magic = handle.read(8)
    if len(magic) < 8 or magic[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy array (no \\x93NUMPY magic)")
    version = (magic[6], magic[7])
    if version not in _LENGTH_FORMAT:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not known")
    length_format = _LENGTH_FORMAT[version]
    length_bytes = handle.read(struct.calcsize(length_format))
    if len(length_bytes) < struct.calcsize(length_format):
        raise ValueError(".npy header ends early")
    (length,) = struct.unpack(length_format, length_bytes)
    raw = handle.read(length)
    if len(raw) < length:
        raise ValueError(f".npy header ends early: {len(raw)} of {length} bytes")
    return parse_header(raw.decode("utf8" if version == (3, 0) else "latin1"))


def _data_header(handle) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """:func:`read_header` plus the data's size in bytes; object arrays (they would need pickle) are refused."""
    shape, fortran, dtype = read_header(handle)
    if dtype.hasobject:
        raise ValueError("object arrays are not read (they would need pickle)")
    return shape, fortran, dtype, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def skip_array(handle) -> None:
    """Move a seekable handle past the ``.npy`` array at its position; ValueError when the file ends first."""
    size = _data_header(handle)[3]
    end = handle.tell() + size
    if handle.seek(0, 2) < end:
        raise ValueError(f".npy data ends early: the file has {handle.tell()} bytes, the array needs {end}")
    handle.seek(end)


def read_array(handle) -> np.ndarray:
    """The ``.npy`` array at the handle's position (a new, writable array); ValueError when it is cut short."""
    shape, fortran, dtype, size = _data_header(handle)
    buffer = np.empty(size, np.uint8)
    read = handle.readinto(memoryview(buffer)) if size else 0
    if read < size:
        raise ValueError(f".npy data ends early: {read} of {size} bytes")
    return buffer.view(dtype).reshape(shape, order="F" if fortran else "C")


def load_npz(path: str | Path, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive (``np.savez``, compressed or not), or only those of ``names`` it has.

    A damaged archive raises ``zipfile.BadZipFile`` or ValueError; a missing file FileNotFoundError.
    """
    with zipfile.ZipFile(path) as archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist() if name.endswith(".npy")}
        wanted = members if names is None else [name for name in names if name in members]
        arrays = {}
        for name in wanted:
            with archive.open(members[name]) as handle:
                arrays[name] = read_array(handle)
        return arrays
