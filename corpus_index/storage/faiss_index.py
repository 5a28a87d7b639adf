"""FAISS indexes per model key: exact inner product by default, HNSW or IVF-PQ for very large corpora.

The score an index returns is <phi(x), phi(x')> on *unnormalised* vectors, the similarity BiLRP explains, so
the default is exact search (``IndexFlatIP``). ``hnsw`` (``IndexHNSWFlat``, inner product) and ``ivfpq``
(``IndexIVFPQ``, inner product) are approximate options for millions of items: faster, but a neighbour may be
missed and (for IVF-PQ) the score is approximate. Every index is wrapped in ``IndexIDMap2`` so labels are item ids.

Files: ``ROOT/indexes/<model_key>.faiss`` (flat), ``<model_key>.hnsw.faiss``, ``<model_key>.ivfpq.faiss``, each
written atomically (temp file in the same folder, fsync, ``os.replace``): a crash mid-write leaves the previous
index usable.

Each index has a sidecar ``<index file>.hashes.npz`` (``ids``: row ids, ``hashes``: the content tag each row was
computed from, see :mod:`corpus_index.storage.integrity`), written right *after* the index: a crash in between leaves a
sidecar that does not cover the index, which readers treat as stale, never the reverse. :meth:`VectorIndex.sync`
rebuilds the index when a row's tag changed, the sidecar is missing (an index from before sidecars) or either file
is damaged (a damaged file is moved to ``ROOT/replaced/`` first). Outside a build an unreadable index or sidecar
raises :class:`~corpus_index.storage.integrity.DamagedFileError`.

Concurrency: searches never block each other. An update builds a *new* index object (a clone or a fresh build),
writes it, and swaps the in-memory reference under a short lock, so a search running meanwhile keeps using the
old object (copy-on-write; faiss search on a CPU index is read-only and thread-safe). Updates hold a file lock
across processes (two ``build`` runs on one root cannot drop each other's additions); other processes pick up a
new file on their next search by its modification time.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import faiss
import numpy as np

from corpus_index.storage.atomic import atomic_save_npz, atomic_write, file_lock
from corpus_index.storage.integrity import READ_ERRORS, DamagedFileError, set_aside_file
from corpus_index.storage.layout import INDEX_SUFFIXES, Layout
from corpus_index.storage.npy_files import load_npz

INDEX_KINDS = tuple(INDEX_SUFFIXES)
EXACT_KINDS = ("flat",)
# HNSW search breadth: recall against breadth is measured by benchmarks/bench_index.py (results/index.json).
HNSW_EF_SEARCH = 128

# Loaded indexes shared by every VectorIndex of this process: path -> (mtime_ns, size, index).
_loaded: dict[str, tuple[int, int, faiss.Index]] = {}
_loaded_lock = threading.Lock()


def item_rows(item_ids: np.ndarray, group: int) -> np.ndarray:
    """Index row ids of items: the item id itself, or ``id * group + t`` for the ``group`` vectors of an item."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if group == 1:
        return item_ids
    return (item_ids[:, None] * group + np.arange(group, dtype=np.int64)).reshape(-1)


def expand_rows(item_ids: np.ndarray, vectors: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, group * h) of n items as index rows: ids (n * group,) and vectors (n * group, h)."""
    return item_rows(item_ids, group), np.ascontiguousarray(vectors.reshape(len(vectors) * group, -1))


class IndexMissingError(FileNotFoundError):
    """No index of this model key (and kind) has been built yet."""


def _check_kind(kind: str) -> str:
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    return kind


def make_index(dim: int, kind: str = "flat", n_train: int = 0, hnsw_m: int = 32) -> faiss.Index:
    """An empty inner-product index of ``kind`` wrapped in ``IndexIDMap2`` (needs training only for ivfpq)."""
    _check_kind(kind)
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
    else:
        # ~4 sqrt(n) lists, but faiss wants >= 39 training points per list; PQ sub-vectors of ~2 dimensions
        # (h = 100: 50 bytes a vector instead of 400; coarser codes lose too many true neighbours).
        nlist = max(1, min(int(4 * math.sqrt(max(n_train, 1))), max(n_train // 39, 1)))
        m = max(d for d in range(1, dim + 1) if dim % d == 0 and d <= max(1, dim // 2))
        nbits = 8 if n_train >= 256 * 39 else max(1, min(8, int(math.log2(max(n_train // 39, 2)))))
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIDMap2(inner)


def search_params(index: faiss.Index, selector, k: int, ef_search: int = HNSW_EF_SEARCH):
    """Search parameters of the right type for ``index`` (an ``IndexIDMap2``) with an optional id selector."""
    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    if isinstance(inner, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef_search, 2 * k))
    if isinstance(inner, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=max(8, min(inner.nlist, inner.nlist // 8)))
    return faiss.SearchParameters(sel=selector)


class VectorIndex:
    """The FAISS index of one model key and kind under a corpus root.

    Parameters
    ----------
    root : path-like
        Corpus root.
    model_key : str
        Canonical model key.
    kind : {"flat", "hnsw", "ivfpq"}
        Exact (default) or approximate.
    """

    def __init__(self, root: str | Path, model_key: str, kind: str = "flat"):
        self.model_key = model_key
        self.kind = _check_kind(kind)
        self.root = Path(root)
        self.path = Layout(root).index(model_key, kind)
        self.tags_path = Layout(root).index_tags(model_key, kind)
        self.lock_path = Layout(root).index_lock(model_key, kind)

    @property
    def exact(self) -> bool:
        """Whether scores and neighbours are exact."""
        return self.kind in EXACT_KINDS

    def exists(self) -> bool:
        """Whether the index file is on disk."""
        return self.path.is_file()

    def index(self) -> faiss.Index:
        """The current index (loaded once, reloaded when the file on disk changed)."""
        key = str(self.path)
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise IndexMissingError(
                f"no {self.kind} index for model {self.model_key} at {self.path}; run build first"
            ) from None
        with _loaded_lock:
            cached = _loaded.get(key)
            if cached and cached[0] == stat.st_mtime_ns and cached[1] == stat.st_size:
                return cached[2]
        try:  # outside the lock: reading a big index must not stall searches
            loaded = faiss.read_index(key)
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
            raise DamagedFileError(self.path, self.root, self.model_key, f"faiss: {reason}") from None
        with _loaded_lock:
            _loaded[key] = (stat.st_mtime_ns, stat.st_size, loaded)
        return loaded

    def ids(self) -> np.ndarray:
        """Item ids in the index (empty when there is no index)."""
        if not self.exists():
            return np.zeros(0, dtype=np.int64)
        return faiss.vector_to_array(faiss.downcast_index(self.index()).id_map).astype(np.int64)

    def __len__(self) -> int:
        return self.index().ntotal if self.exists() else 0

    def vector(self, item_id: int) -> np.ndarray:
        """The stored vector of one item (exact for flat and HNSW; for IVF-PQ use the feature files)."""
        try:
            return self.index().reconstruct(int(item_id))
        except RuntimeError as error:
            raise KeyError(f"item {item_id} is not in the {self.kind} index of {self.model_key}") from error

    def row_tags(self) -> dict[int, str] | None:
        """Row id -> content tag from the sidecar; None when there is none (an index from before sidecars)."""
        try:
            sidecar = load_npz(self.tags_path)  # not np.load: it parses headers with ast (see npy_files)
            ids, tags = sidecar["ids"], sidecar["hashes"]
        except FileNotFoundError:
            return None
        except READ_ERRORS as error:
            raise DamagedFileError(self.tags_path, self.root, self.model_key,
                                   f"{type(error).__name__}: {error}") from None
        return dict(zip(ids.astype(np.int64).tolist(), tags.astype(str).tolist(), strict=True))

    def _publish(self, index: faiss.Index, ids: np.ndarray | None = None, tags: np.ndarray | None = None) -> None:
        atomic_write(self.path, lambda tmp: faiss.write_index(index, tmp))
        stat = self.path.stat()
        with _loaded_lock:
            _loaded[str(self.path)] = (stat.st_mtime_ns, stat.st_size, index)
        if tags is not None:
            atomic_save_npz(self.tags_path, ids=np.asarray(ids, dtype=np.int64), hashes=np.asarray(tags, dtype=str))

    def _current_for_sync(self) -> tuple[faiss.Index | None, dict[int, str] | None]:
        """The index and its sidecar as a build sees them: damaged ones are set aside and count as missing."""
        current, stored = None, None
        if self.exists():
            try:
                current = self.index()
            except DamagedFileError:
                set_aside_file(self.root, self.model_key, self.path)
        try:
            stored = self.row_tags()
        except DamagedFileError:
            set_aside_file(self.root, self.model_key, self.tags_path)
        return current, stored

    def sync(self, ids: np.ndarray, vectors: np.ndarray, tags=None) -> int:
        """Make the index hold exactly these items; add what is missing, rebuild if anything else changed.

        Parameters
        ----------
        ids : ndarray (n,) int64
            Every item that should be searchable (e.g. all ids of the feature files).
        vectors : ndarray (n, h) float32
            Their features, not normalised.
        tags : sequence of str, optional
            The content tag of each row; recorded in the sidecar, and a row whose tag changed is replaced.

        Returns
        -------
        int
            Number of vectors added (``len(ids)`` on a rebuild, 0 when the index was already up to date).
        """
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if tags is not None:
            tags = np.asarray([str(t) for t in tags], dtype=str)
        with file_lock(self.lock_path):
            current, stored = self._current_for_sync()
            have = (faiss.vector_to_array(faiss.downcast_index(current).id_map).astype(np.int64)
                    if current is not None else np.zeros(0, dtype=np.int64))
            stale = current is None or current.d != vectors.shape[1] or bool(np.setdiff1d(have, ids).size)
            if tags is not None and not stale:
                # The sidecar must cover exactly the index, and every kept row must still show the same content.
                stale = stored is None or set(stored) != set(have.tolist()) or any(
                    stored.get(i, t) != t for i, t in zip(ids.tolist(), tags.tolist(), strict=True))
            # IVF-PQ trained on few points goes bad when the corpus grows a lot: retrain past 2x.
            if current is not None and self.kind == "ivfpq" and len(ids) > 2 * max(len(have), 1):
                stale = True
            if stale:
                index = make_index(vectors.shape[1], self.kind, n_train=len(ids))
                if not index.is_trained and len(ids):  # IVF-PQ learns its lists and codes from the data
                    index.train(vectors)
                if len(ids):
                    index.add_with_ids(vectors, ids)
                self._publish(index, ids, tags)
                return len(ids)
            new = ~np.isin(ids, have)
            if not new.any():
                return 0
            index = faiss.clone_index(current)  # copy-on-write: searches keep using `current`
            index.add_with_ids(vectors[new], ids[new])
            self._publish(index, ids, tags)
            return int(new.sum())

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               excluded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best items by inner product.

        Parameters
        ----------
        queries : ndarray (q, h) or (h,)
            Query vectors (not normalised).
        k : int
            Number of neighbours.
        allowed : ndarray of int, optional
            Only these ids may be returned (metadata filters); None means every item.
        excluded : ndarray of int, optional
            These ids are never returned (the query item, its book).

        Returns
        -------
        scores : ndarray (q, k') float32
        ids : ndarray (q, k') int64
            Best first; ``k' <= k``; rows with fewer hits are padded with id -1 (dropped by callers).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        index = self.index()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != index.d:
            raise ValueError(f"query vectors have {queries.shape[1]} dimensions, the index {index.d}")
        selector = None
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            if excluded is not None and len(excluded):
                allowed = np.setdiff1d(allowed, np.asarray(excluded, dtype=np.int64))
            if not len(allowed):
                return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
            selector = faiss.IDSelectorBatch(allowed)
            limit = len(allowed)
        elif excluded is not None and len(excluded):
            batch = faiss.IDSelectorBatch(np.asarray(excluded, dtype=np.int64))
            selector = faiss.IDSelectorNot(batch)
            selector.__dict__["_keep"] = batch  # the Not selector does not own its inner selector
            limit = index.ntotal
        else:
            limit = index.ntotal
        k_eff = max(1, min(k, limit, index.ntotal)) if index.ntotal else 0
        if k_eff == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        params = search_params(index, selector, k_eff) if selector is not None or self.kind != "flat" else None
        scores, labels = index.search(queries, k_eff, params=params)
        return scores, labels

    def search_items(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
                     excluded: np.ndarray | None = None, group: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
        """The k best *items* per query, when each item has ``group`` rows (rotation-max models: 8).

        The score of an item is the max over the query's and the item's vectors (max over tau, tau' of
        <phi(tau x), phi(tau' x')>). Each query vector fetches ``k * group`` rows: an item missing from those
        would need ``k * group`` better rows, i.e. k better items, so the top k items are exact on a flat index.

        Parameters
        ----------
        queries : ndarray (q, group * h)
            One row per query item (its ``group`` vectors concatenated).
        k : int
        allowed, excluded : ndarray of item ids, optional
        group : int

        Returns
        -------
        list of (item ids, scores)
            Per query, best first, at most k.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        count = len(queries)
        allowed_rows = None if allowed is None else item_rows(allowed, group)
        excluded_rows = None if excluded is None else item_rows(excluded, group)
        scores, labels = self.search(queries.reshape(count * group, -1), k * group, allowed_rows, excluded_rows)
        results = []
        for number in range(count):
            rows = slice(number * group, (number + 1) * group)
            row_scores, row_labels = scores[rows].reshape(-1), labels[rows].reshape(-1)
            keep = row_labels >= 0
            items, item_scores = row_labels[keep] // group, row_scores[keep]
            order = np.argsort(-item_scores, kind="stable")
            items, item_scores = items[order], item_scores[order]
            _, first = np.unique(items, return_index=True)  # first occurrence = the item's best score
            first.sort()
            results.append((items[first][:k], item_scores[first][:k]))
        return results
