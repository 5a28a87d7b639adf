"""The disk cache of BiLRP factors: each image's pooled relevance factors R(x) (h x H/p x W/p), stored once.

BiLRP(x, x') = sum_m R_m(x) (x) R_m(x'), and R(x) does not depend on the other image. So the factors of every
image are cached per (item, model key, gamma schedule, pool) in
``ROOT/factors/<model_key>/<gamma-hash>-p<pool>/<item_id>.npy`` (float32, dense or sparse, written atomically),
and explaining a query against k neighbours costs k + 1 factor computations once, then one matrix product per
pair.

Computing factors is :mod:`corpus_index.explanation`'s; this module only names, reads, writes and repairs the
files. The gamma hash is taken over the *resolved* schedule ({layer index: gamma} after applying the model's
defaults) as canonical JSON (string keys, sorted), so ``gamma=None`` and the explicit default schedule share one
cache entry. Each folder holds a ``spec.json`` saying which schedule and pool it is for.

Each file holds the factors in one of two layouts, whichever is smaller (:func:`encode_factors`):

* *dense*: a plain ``.npy`` float32 array (h, H/p, W/p) — what VGG's factors get, and what every file written
  before sparse storage is;
* *sparse*: the magic line ``\x93CORPUS-INDEX-SPARSE-1\n`` and then four ``.npy`` arrays, a compressed-sparse-row
  layout of the factors as an h x (H/p * W/p) matrix: ``shape`` (int64, the dense shape), ``indptr`` (int64,
  h + 1: where each dimension's entries start), ``cells`` (uint16 or uint32: the flat cell index of each non-zero
  entry, ascending within a dimension) and ``values`` (float32, the entries themselves, unrounded). The bigram
  network's factors are over 99 % zeros: a demo table page's file shrinks ~115-fold, a woodcut page's far more
  (``benchmarks/bench_factor_size.py``), and loading gives the dense array bit for bit (a -0.0 comes back as
  0.0), so Σ of an explanation is unchanged. ``load(..., sparse=True)`` hands the layout out as
  :class:`~bilrp_core.sparse_pair.SparseFactors` without densifying it (explanations multiply it sparse).

Either layout is followed by a trailer line ``#corpus-index content:<tag>`` naming the content tag of the item it
was computed from (:func:`corpus_index.storage.integrity.content_tag`; numpy ignores bytes after the array), and
(in files written since it was added) a line ``#corpus-index input:<H>x<W>``: the size of the model input the
factors are of, so that explaining a pair from cached factors needs no preprocessing of the scans (the bigram
network's normalisation measures the print of the whole page).
:meth:`FactorCache.get` serves a file only if its tag is the item's current one, otherwise
it computes the factors again (an item id reused after a lost database, a scan replaced in place, a file copied
over another's, a file from before trailers). A file shorter than its header promises raises
:class:`~corpus_index.storage.integrity.DamagedFileError`; a build moves such files, and stale ones, to
``ROOT/replaced/`` (:meth:`FactorCache.repair`).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse

from bilrp_core.sparse_pair import SparseFactors
from corpus_index.storage.atomic import atomic_write
from corpus_index.storage.integrity import READ_ERRORS, DamagedFileError, set_aside_file
from corpus_index.storage.layout import Layout
from corpus_index.storage.npy_files import read_array, skip_array

_TRAILER = b"#corpus-index content:"
_INPUT = b"#corpus-index input:"
_SPARSE_MAGIC = b"\x93CORPUS-INDEX-SPARSE-1\n"
_HEADER_BYTES = 128  # what one .npy header costs (numpy pads headers to a multiple of 64)
_FILE_NAME = re.compile(r"^(\d+)(?:-t(\d+))?\.npy$")


def schedule_json(schedule: dict) -> dict[str, float]:
    """A resolved schedule {layer index: gamma} as JSON wants it: string keys, in layer order."""
    return {str(int(index)): float(value) for index, value in sorted(schedule.items(), key=lambda kv: int(kv[0]))}


def gamma_hash(schedule: dict) -> str:
    """A short, stable hash of a resolved schedule (canonical JSON: string keys sorted as text, no spaces).

    Folder names depend on it: the form must not change, or every cached factor would be computed again.
    """
    canonical = json.dumps(schedule_json(schedule), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def pool_tag(pool) -> str:
    """``8`` -> ``"p8"``, ``(8, 4)`` -> ``"p8x4"``."""
    if isinstance(pool, numbers.Integral):
        if pool < 1:
            raise ValueError(f"pool must be at least 1, got {pool}")
        return f"p{int(pool)}"
    ph, pw = (int(v) for v in pool)
    if ph < 1 or pw < 1:
        raise ValueError(f"pool must be at least 1, got {pool}")
    return f"p{ph}" if ph == pw else f"p{ph}x{pw}"


def encode_factors(array: np.ndarray) -> dict[str, np.ndarray] | None:
    """The sparse layout of float32 factors (h, ...) — ``shape``, ``indptr``, ``cells``, ``values`` — or None
    when it would not be smaller than the dense array (VGG's factors) or the array has fewer than 2 axes."""
    if array.ndim < 2 or array.size == 0:
        return None
    rows = array.shape[0]
    flat = array.reshape(rows, -1)
    cells_per_row = flat.shape[1]
    index_type = np.uint16 if cells_per_row <= 1 << 16 else np.uint32 if cells_per_row <= 1 << 32 else np.uint64
    nonzero = int(np.count_nonzero(flat))
    sparse_bytes = (len(_SPARSE_MAGIC) + 4 * _HEADER_BYTES + 8 * array.ndim + 8 * (rows + 1)
                    + nonzero * (np.dtype(index_type).itemsize + 4))
    if sparse_bytes >= _HEADER_BYTES + array.nbytes:
        return None
    row_index, cells = np.nonzero(flat)  # row-major order: ascending cells within each dimension
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_index, minlength=rows), out=indptr[1:])
    return {"shape": np.asarray(array.shape, dtype=np.int64), "indptr": indptr,
            "cells": cells.astype(index_type), "values": flat[row_index, cells].astype(np.float32)}


def _checked_layout(shape, indptr, cells, values) -> tuple[tuple[int, ...], int, np.ndarray]:
    """(dense shape, cells per dimension, indptr as int64) of a sparse layout; ValueError if it is inconsistent."""
    shape = tuple(int(v) for v in shape)
    if len(shape) < 2 or min(shape) < 0:
        raise ValueError(f"bad sparse shape {shape}")
    rows, cells_per_row = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    indptr = np.asarray(indptr, dtype=np.int64)
    if (indptr.shape != (rows + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0)
            or indptr[-1] != len(cells) or len(cells) != len(values)):
        raise ValueError("inconsistent sparse index")
    if len(cells) and int(cells.max()) >= cells_per_row:
        raise ValueError("sparse cell index out of range")
    return shape, cells_per_row, indptr


def decode_factors(shape, indptr, cells, values) -> np.ndarray:
    """The dense float32 array of a sparse layout (:func:`encode_factors`); ValueError if it is inconsistent."""
    shape, cells_per_row, indptr = _checked_layout(shape, indptr, cells, values)
    rows = shape[0]
    dense = np.zeros((rows, cells_per_row), dtype=np.float32)
    dense[np.repeat(np.arange(rows), np.diff(indptr)), cells.astype(np.int64)] = values
    return dense.reshape(shape)


def sparse_factors(shape, indptr, cells, values) -> SparseFactors:
    """The sparse layout as :class:`~bilrp_core.sparse_pair.SparseFactors` (CSR h x cells), without densifying.

    Only factors (h, H, W) have a patch grid; ValueError for other shapes or an inconsistent layout.
    """
    shape, cells_per_row, indptr = _checked_layout(shape, indptr, cells, values)
    if len(shape) != 3:
        raise ValueError(f"sparse factors must have 3 dimensions (h, H, W); got shape {shape}")
    matrix = scipy.sparse.csr_matrix((np.asarray(values, dtype=np.float32), cells.astype(np.int64), indptr),
                                     shape=(shape[0], cells_per_row))
    return SparseFactors(matrix, shape[1:])


def _parse_trailer(rest: bytes) -> dict:
    """The trailer lines after the arrays: {"content": tag, "input": (H, W)}, each only when present."""
    if not (rest.startswith(_TRAILER) and rest.endswith(b"\n")):
        return {}
    content, *others = rest[len(_TRAILER):-1].split(b"\n")
    trailer = {"content": content.decode("utf-8", "replace")}
    for line in others:
        size = line[len(_INPUT):].split(b"x") if line.startswith(_INPUT) else []
        if len(size) == 2 and all(part.isdigit() for part in size):
            trailer["input"] = (int(size[0]), int(size[1]))
    return trailer


def _npy_part(handle, data: bool) -> np.ndarray | None:
    """One .npy array at the handle's position (its data only if ``data``); leaves the handle after it.

    ValueError when the file ends before the array does. Read with :mod:`~corpus_index.storage.npy_files`, not
    numpy (which parses headers with ``ast``).
    """
    if data:
        return read_array(handle)
    skip_array(handle)
    return None


@dataclass
class FactorReport:
    """What a factor precomputation did: computed, already cached, skipped (id, reason)."""

    computed: int = 0
    cached: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


class FactorCache:
    """Per-item BiLRP factors on disk under ``ROOT/factors``.

    Parameters
    ----------
    root : path-like
        Corpus root.
    """

    def __init__(self, root: str | Path):
        self.corpus_root = Path(root)
        self.layout = Layout(self.corpus_root)
        self.root = self.layout.factors
        self._folders: dict[str, Path] = {}  # setting -> folder whose spec.json exists (pages ask per item)

    def folder(self, model_key: str, schedule: dict, pool) -> Path:
        """The folder of one (model key, schedule, pool); writes its ``spec.json`` on first use."""
        setting = f"{gamma_hash(schedule)}-{pool_tag(pool)}"
        known = self._folders.get(f"{model_key}/{setting}")
        if known is not None:
            return known
        folder = self.layout.factor_folder(model_key, setting)
        spec = folder / "spec.json"
        if not spec.exists():
            text = json.dumps({"model_key": model_key, "gamma": schedule_json(schedule), "pool": pool}, indent=1)
            atomic_write(spec, lambda tmp: Path(tmp).write_text(text))
        self._folders[f"{model_key}/{setting}"] = folder
        return folder

    def path(self, model_key: str, schedule: dict, pool, item_id: int, transform: int | None = None) -> Path:
        """Where the factors of ``item_id`` live (``<id>.npy``; ``<id>-t<transform>.npy`` for rotation-max)."""
        return self.folder(model_key, schedule, pool) / Layout.factor_name(item_id, transform)

    def read(self, path: Path, model_key: str, data: bool = True,
             sparse: bool = False) -> tuple[np.ndarray | SparseFactors | None, str | None]:
        """(factors or None when ``data`` is False, content tag or None) of one file; damage -> DamagedFileError.

        With ``sparse``, a file in the sparse layout gives :class:`~bilrp_core.sparse_pair.SparseFactors` (never
        densified); a dense file gives its array either way.
        """
        array, trailer = self._read(path, model_key, data, sparse)
        return array, trailer.get("content")

    def _read(self, path: Path, model_key: str, data: bool, sparse: bool):
        """(factors or None, trailer {"content": tag, "input": (H, W)} with the lines the file has)."""
        try:
            with open(path, "rb") as handle:
                if handle.read(len(_SPARSE_MAGIC)) == _SPARSE_MAGIC:
                    parts = [_npy_part(handle, data or name == "shape")
                             for name in ("shape", "indptr", "cells", "values")]
                    rest = handle.read(4096)
                    array = None if not data else sparse_factors(*parts) if sparse else decode_factors(*parts)
                else:
                    handle.seek(0)
                    array = _npy_part(handle, data)
                    rest = handle.read(4096)
        except FileNotFoundError:
            raise
        except READ_ERRORS as error:
            raise DamagedFileError(path, self.corpus_root, model_key, f"{type(error).__name__}: {error}") from None
        return array, _parse_trailer(rest)

    def load(self, model_key: str, schedule: dict, pool, item_id: int, transform: int | None = None,
             tag: str | None = None, sparse: bool = False) -> np.ndarray | SparseFactors | None:
        """Cached factors, or None when never computed or (given ``tag``) computed from other content.

        Dense (h, H/p, W/p) float32 by default; with ``sparse``, files stored sparse come as
        :class:`~bilrp_core.sparse_pair.SparseFactors` (CSR, what a sparse pair is computed from) and dense files
        as arrays.

        Raises
        ------
        DamagedFileError
            If the file is truncated or not an array (a build repairs it).
        """
        entry = self.load_entry(model_key, schedule, pool, item_id, transform, tag, sparse)
        return None if entry is None else entry[0]

    def load_entry(self, model_key: str, schedule: dict, pool, item_id: int, transform: int | None = None,
                   tag: str | None = None, sparse: bool = False):
        """As :meth:`load`, with the model input's (H, W) the factors are of: ``(factors, (H, W) or None)``
        (None for files written before the size was kept), or None when there are no current factors."""
        try:
            array, trailer = self._read(self.path(model_key, schedule, pool, item_id, transform), model_key, True,
                                        sparse)
        except FileNotFoundError:
            return None
        if tag is not None and trailer.get("content") != tag:
            return None
        return array, trailer.get("input")

    def save(self, model_key: str, schedule: dict, pool, item_id: int, factors,
             transform: int | None = None, tag: str = "", input_shape: tuple[int, int] | None = None) -> Path:
        """Store factors (h, H/p, W/p) as float32 with the item's content tag and, when given, the (H, W) of the
        model input they are of; atomically, sparse when smaller."""
        array = factors.detach().cpu().numpy() if hasattr(factors, "detach") else np.asarray(factors)  # torch
        array = np.ascontiguousarray(array, dtype=np.float32)
        sparse = encode_factors(array)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                if sparse is None:
                    np.save(handle, array, allow_pickle=False)
                else:
                    handle.write(_SPARSE_MAGIC)
                    for name in ("shape", "indptr", "cells", "values"):
                        np.save(handle, sparse[name], allow_pickle=False)
                handle.write(_TRAILER + str(tag).encode("utf-8") + b"\n")
                if input_shape is not None:
                    handle.write(_INPUT + f"{int(input_shape[0])}x{int(input_shape[1])}".encode() + b"\n")

        return atomic_write(self.path(model_key, schedule, pool, item_id, transform), write)

    def input_shape(self, model_key: str, item_id: int, tag: str) -> tuple[int, int] | None:
        """The model input's (H, W) of an item as kept with any of its current factors (any γ and patch size;
        only headers and trailers are read), or None when none of its files knows it."""
        folders = sorted(path for path in (self.root / model_key).glob("*") if path.is_dir())
        for folder in folders:
            for transform in (None, 0):
                try:
                    trailer = self._read(folder / Layout.factor_name(item_id, transform), model_key, False, False)[1]
                except (FileNotFoundError, DamagedFileError):
                    continue
                if trailer.get("content") == tag and "input" in trailer:
                    return trailer["input"]
        return None

    def is_current(self, model_key: str, schedule: dict, pool, item_id: int, transform: int | None,
                   tag: str | None) -> bool:
        """Whether a readable file with this content tag is cached (damaged files count as missing)."""
        try:
            return self.read(self.path(model_key, schedule, pool, item_id, transform), model_key, False)[1] == tag
        except (FileNotFoundError, DamagedFileError):
            return False

    def repair(self, model_key: str, tags: dict[int, str]) -> list[Path]:
        """Move damaged files, and files not tagged with their item's current content, to ``ROOT/replaced/``.

        ``tags`` maps every item id to its content tag; files of items no longer in the corpus are left alone.
        Only headers and trailers are read. Returns the new paths of the moved files.
        """
        moved = []
        for path in sorted((self.root / model_key).glob("*/*.npy")):
            match = _FILE_NAME.match(path.name)
            if match is None or int(match[1]) not in tags:
                continue
            try:
                stale = self.read(path, model_key, data=False)[1] != tags[int(match[1])]
            except FileNotFoundError:
                continue
            except DamagedFileError:
                stale = True
            if stale:
                moved.append(set_aside_file(self.corpus_root, model_key, path))
        return moved
