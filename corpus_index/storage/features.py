"""Feature extraction phi(x) per model key, in batches, resumable.

On disk, ``ROOT/features/<model_key>/batch_NNNNNN.npz`` each hold ``ids`` (int64), ``vectors`` (float32,
n x h; n x 8h for rotation-max models, see :func:`corpus_index.models.embed`) and ``hashes`` (the items' content
tags, :func:`corpus_index.storage.integrity.content_tag`) of one finished batch, written atomically. The batch files are
the truth: a build computes phi only for items that no batch file holds *for their current content* yet, so an
interrupted build loses at most the batch in flight, a rebuild does only what is missing, and an item id that now
names other content (a lost ``corpus.sqlite`` re-ingested, a scan replaced in place) is computed again. The
Store's feature marks mirror the files (reconciled at the start of each build).

At the start of each build, :meth:`FeatureStore.repair` moves to ``ROOT/replaced/`` every batch file that
cannot be read (truncated, overwritten) and every batch written before batches carried ``hashes``: their vectors
cannot be tied to any content, so they are computed again rather than trusted. Readers outside a build raise
:class:`~corpus_index.storage.integrity.DamagedFileError` for an unreadable batch.

The batches are computed by an *engine*: in-process (:mod:`corpus_index.local_engine`), or on Ray Data
(:mod:`corpus_index.ray_engine`); either way :func:`build_features` writes the files, so resumability is the same.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corpus_index.progress import Progress
from corpus_index.storage.atomic import atomic_save_npz, file_lock
from corpus_index.storage.integrity import READ_ERRORS, DamagedFileError, StaleContentError, set_aside_file
from corpus_index.storage.layout import Layout
from corpus_index.storage.npy_files import load_npz

ItemRow = tuple[int, str, str | None]  # (item id, absolute image path, region "x,y,w,h" or None)
Batch = tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]  # ids, vectors, skipped (id, reason)

_BATCH_NAME = re.compile(r"^batch_(\d{6,})\.npz$")


@dataclass
class FeatureReport:
    """What a feature build did.

    Attributes
    ----------
    model_key : str
    computed : int
        Items whose features were computed in this run.
    reused : int
        Items that already had features (finished batches of an earlier, possibly interrupted, run).
    skipped : list of (int, str)
        Items that could not be read or preprocessed, with the reason; they get no features.
    total : int
        Items with features after the run.
    seconds : float
        Wall time of the run.
    set_aside : list of Path
        Damaged or unverifiable batch files moved to ``ROOT/replaced/`` (their items were computed again).
    """

    model_key: str
    computed: int = 0
    reused: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0
    set_aside: list[Path] = field(default_factory=list)


class FeatureStore:
    """The finished feature batches of one model key.

    Parameters
    ----------
    root : path-like
        Corpus root.
    model_key : str
        Canonical model key (names the folder).
    """

    def __init__(self, root: str | Path, model_key: str):
        self.model_key = model_key
        self.root = Path(root)
        self.folder = Layout(root).features(model_key)
        self.lock_path = Layout(root).features_lock(model_key)
        self._ids_cache: tuple[tuple, tuple] | None = None
        self._cache_lock = threading.Lock()

    def batch_files(self) -> list[Path]:
        """Finished batch files in the order they were written."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if _BATCH_NAME.match(p.name))

    def _read(self, path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Arrays of one batch file (``hashes`` is empty when the batch predates them); damage -> DamagedFileError."""
        try:
            arrays = load_npz(path, names)  # not np.load: it parses headers with ast (see npy_files)
            if missing := [name for name in names if name != "hashes" and name not in arrays]:
                raise KeyError(f"no {', '.join(missing)} in the batch")
        except FileNotFoundError:
            raise
        except READ_ERRORS as error:
            raise DamagedFileError(path, self.root, self.model_key, f"{type(error).__name__}: {error}") from None
        if "hashes" in names and "hashes" not in arrays:
            arrays["hashes"] = np.full(len(arrays.get("ids", ())), "", dtype="<U1")
        return arrays

    def write_batch(self, ids: np.ndarray, vectors: np.ndarray, hashes: Sequence[str] | None = None) -> Path:
        """Write one finished batch atomically and return its path.

        ``hashes`` are the items' content tags; a batch without them is never trusted by a build (see
        :meth:`repair`), so only tests of the file format omit them.
        """
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(ids) != len(vectors):
            raise ValueError(f"a batch needs ids (n,) and vectors (n, h); got {ids.shape} and {vectors.shape}")
        dim = self.dim()
        if dim is not None and vectors.shape[1] != dim:
            raise ValueError(
                f"features of {self.model_key} have {dim} dimensions on disk but the model gives "
                f"{vectors.shape[1]}; delete {self.folder} to rebuild from scratch"
            )
        files = self.batch_files()
        number = int(_BATCH_NAME.match(files[-1].name)[1]) + 1 if files else 0
        arrays = {"ids": ids, "vectors": vectors}
        if hashes is not None:
            arrays["hashes"] = np.asarray([str(h) for h in hashes], dtype=str)
            if len(arrays["hashes"]) != len(ids):
                raise ValueError(f"a batch needs one hash per item; got {len(hashes)} for {len(ids)} ids")
        path = atomic_save_npz(self.folder / f"batch_{number:06d}.npz", **arrays)
        with self._cache_lock:
            self._ids_cache = None
        return path

    def _signature(self, files: Sequence[Path]) -> tuple:
        # Batch files are never rewritten, so their names (plus the folder's time, which changes when the folder
        # is deleted and rebuilt) identify the catalogue without a stat call per file.
        folder_time = self.folder.stat().st_mtime_ns if self.folder.is_dir() else 0
        return folder_time, tuple(p.name for p in files)

    def _catalogue(self) -> tuple[list[Path], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(files, sorted unique ids, file number, row, content tag) of every item's newest vector; cached."""
        files = self.batch_files()
        signature = self._signature(files)
        with self._cache_lock:
            if self._ids_cache is not None and self._ids_cache[0] == signature:
                return self._ids_cache[1]
        id_parts, file_parts, row_parts, tag_parts = [], [], [], []
        for number, path in enumerate(files):
            arrays = self._read(path, ("ids", "hashes"))
            batch_ids = arrays["ids"]
            id_parts.append(batch_ids)
            tag_parts.append(arrays["hashes"].astype(str))
            file_parts.append(np.full(len(batch_ids), number, dtype=np.int64))
            row_parts.append(np.arange(len(batch_ids), dtype=np.int64))
        if not id_parts:
            empty = np.zeros(0, dtype=np.int64)
            catalogue = (files, empty, empty, empty, np.zeros(0, dtype=str))
        else:
            all_ids = np.concatenate(id_parts)[::-1]  # newest first, so np.unique keeps the newest
            unique_ids, first = np.unique(all_ids, return_index=True)
            catalogue = (files, unique_ids, np.concatenate(file_parts)[::-1][first],
                         np.concatenate(row_parts)[::-1][first], np.concatenate(tag_parts)[::-1][first])
        with self._cache_lock:
            self._ids_cache = (signature, catalogue)
        return catalogue

    def ids(self) -> np.ndarray:
        """Sorted unique ids of every item with features."""
        return self._catalogue()[1]

    def tags(self) -> dict[int, str]:
        """Item id -> content tag of its newest stored vector ("" for batches written before tags existed)."""
        _, ids, _, _, tags = self._catalogue()
        return dict(zip(ids.tolist(), tags.tolist(), strict=True))

    def current_ids(self, expected: dict[int, str]) -> np.ndarray:
        """Sorted ids whose newest stored vector was computed from the content ``expected`` (id -> tag) names."""
        _, ids, _, _, tags = self._catalogue()
        keep = np.fromiter((expected.get(int(i)) == t for i, t in zip(ids.tolist(), tags.tolist(), strict=True)),
                           dtype=bool, count=len(ids))
        return ids[keep]

    def repair(self) -> list[Path]:
        """Move unreadable batch files and batches without content tags to ``ROOT/replaced/``; returns new paths.

        Called by a build under the feature lock, before it decides what is missing.
        """
        moved = []
        for path in self.batch_files():
            try:
                arrays = self._read(path, ("ids", "vectors", "hashes"))
                unverifiable = len(arrays["ids"]) and not all(arrays["hashes"].astype(str))
            except DamagedFileError:
                unverifiable = True
            if unverifiable:
                moved.append(set_aside_file(self.root, self.model_key, path))
        if moved:
            with self._cache_lock:
                self._ids_cache = None
        return moved

    def dim(self) -> int | None:
        """Dimension h of the stored vectors, or None when there are none yet (or the first batch is unreadable)."""
        for path in self.batch_files():
            try:
                return int(self._read(path, ("vectors",))["vectors"].shape[1])
            except DamagedFileError:
                continue
        return None

    def load(self, ids: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All (or the requested) features as ``(ids, vectors)``, ids sorted ascending.

        An item computed twice (a crash between writing a batch and marking it) keeps its latest vector.
        """
        wanted = None if ids is None else np.unique(np.asarray(list(ids), dtype=np.int64))
        id_parts, vec_parts = [], []
        for path in reversed(self.batch_files()):  # newest first, so np.unique's first hit is the newest
            arrays = self._read(path, ("ids", "vectors"))
            batch_ids, batch_vectors = arrays["ids"], arrays["vectors"]
            if wanted is not None:
                keep = np.isin(batch_ids, wanted)
                batch_ids, batch_vectors = batch_ids[keep], batch_vectors[keep]
            id_parts.append(batch_ids)
            vec_parts.append(batch_vectors)
        if not id_parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim() or 0), dtype=np.float32)
        all_ids = np.concatenate(id_parts)
        all_vectors = np.concatenate(vec_parts)
        unique_ids, first = np.unique(all_ids, return_index=True)
        return unique_ids, all_vectors[first]

    def vector(self, item_id: int, tag: str | None = None) -> np.ndarray:
        """phi of one item (reads one batch file); raises KeyError when the item has no features.

        With ``tag`` (the item's current content tag), a vector computed from other content raises
        :class:`~corpus_index.storage.integrity.StaleContentError` instead of being returned.
        """
        files, ids, file_numbers, rows, tags = self._catalogue()
        position = int(np.searchsorted(ids, int(item_id)))
        if position == len(ids) or ids[position] != int(item_id):
            raise KeyError(f"item {item_id} has no features for model {self.model_key}; run build first")
        if tag is not None and str(tags[position]) != tag:
            raise StaleContentError(
                f"the stored features of item {item_id} for model {self.model_key} were computed from other "
                f"content than the item has now (its id was reused or its scan replaced); recompute them with "
                f"'python -m corpus_index --root {self.root} build --model {self.model_key}'")
        return self._read(files[file_numbers[position]], ("vectors",))["vectors"][rows[position]]


def build_features(features: FeatureStore, rows: Sequence[ItemRow], batches: Callable[[list], Iterable[Batch]],
                   progress: Progress | None = None, on_batch: Callable[[np.ndarray], None] | None = None,
                   on_start: Callable[[np.ndarray], None] | None = None,
                   expected: dict[int, str] | None = None) -> FeatureReport:
    """Compute the features that are missing and write each finished batch.

    Parameters
    ----------
    features : FeatureStore
        Where the batches go.
    rows : sequence of (int, str, str or None)
        Every item that should have features (id, image path, region).
    batches : callable
        ``batches(missing_rows)`` -> iterable of ``(ids, vectors, skipped)``: the engine.
    progress : callable, optional
        ``progress(done, total, message)`` after each batch; ``done`` counts items with features (or skipped)
        over all ``rows``. An exception raised by it interrupts the build; finished batches stay.
    on_batch : callable, optional
        Called with the ids of each written batch (the Store marks them).
    on_start : callable, optional
        Called with the ids that already have features (to reconcile the Store's marks).
    expected : dict, optional
        Item id -> current content tag. When given, damaged and untagged batches are set aside first
        (:meth:`FeatureStore.repair`), an item counts as done only if its stored vector carries its current tag,
        and new batches record the tags.

    Returns
    -------
    FeatureReport
    """
    started = time.perf_counter()
    report = FeatureReport(model_key=features.model_key)
    with file_lock(features.lock_path):  # two builds of one key must not compute the same items twice
        if expected is not None:
            report.set_aside = features.repair()
        have = features.ids() if expected is None else features.current_ids(expected)
        if on_start is not None:
            on_start(have)
        wanted_ids = np.fromiter((int(row[0]) for row in rows), dtype=np.int64, count=len(rows))
        missing_mask = ~np.isin(wanted_ids, have)
        missing = [row for row, miss in zip(rows, missing_mask, strict=True) if miss]
        report.reused = len(rows) - len(missing)
        done, total = report.reused, len(rows)
        if progress is not None:
            progress(done, total, f"{features.model_key}: {done}/{total} items have features")
        for ids, vectors, skipped in batches(missing):
            if len(ids):
                hashes = None if expected is None else [expected[int(i)] for i in ids]
                features.write_batch(ids, vectors, hashes)
                if on_batch is not None:
                    on_batch(ids)
            report.computed += len(ids)
            report.skipped.extend(skipped)
            done += len(ids) + len(skipped)
            if progress is not None:
                progress(done, total, f"{features.model_key}: {done}/{total} items")
    report.total = len(features.ids() if expected is None else features.current_ids(expected))
    report.seconds = time.perf_counter() - started
    return report
