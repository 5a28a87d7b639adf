"""The k-nearest-neighbour graph of every item under a model: each item searched through the model's index.

Every item (of one kind, or all) is a query of :meth:`~corpus_index.storage.faiss_index.VectorIndex.search`, in
batches, for its k best other items of the same selection; the scores are the index's ``<φ(x), φ(x')>``, the
similarity BiLRP explains. Rotation-max models search through
:meth:`~corpus_index.storage.faiss_index.VectorIndex.search_items` (the max over flips and rotations).

The graph is cached per model and selection in ``ROOT/editions/<key>-<all or kind-K>.npz``
(:meth:`~corpus_index.storage.layout.Layout.editions_graph`) together with a *signature*: a digest of the index
file's version (size, modification time), its rows and the content tags they were computed from
(:mod:`corpus_index.storage.integrity`), and of the items selected. Any build that changes the index (new items,
a replaced scan, a new version of the model) or an edited kind changes the signature, and the graph is searched
again; a cached graph of a larger k serves every smaller k.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from corpus_index.models import canonical_key, key_transform_count
from corpus_index.progress import Progress
from corpus_index.storage.atomic import atomic_save_npz
from corpus_index.storage.integrity import READ_ERRORS
from corpus_index.storage.npy_files import load_npz

DEFAULT_K = 20
BATCH_SIZE = 1024  # queries per faiss call: large enough for BLAS, small enough for a (batch, n) score block


@dataclass
class KnnGraph:
    """The k nearest other items of every item.

    Attributes
    ----------
    ids : ndarray (n,) int64
        The query items (ascending).
    neighbours : ndarray (n, k) int64
        Their neighbours, best first; -1 where an item has fewer than k.
    scores : ndarray (n, k) float32
        ``<φ(x), φ(x')>`` of each neighbour.
    model_key : str
    kind : str or None
        The kind of item searched (None: every item).
    exact : bool
        Whether the index searched is exact (an approximate one may miss neighbours).
    signature : str
        Digest of the index rows, their content tags and the items selected (see the module docstring).
    """

    ids: np.ndarray
    neighbours: np.ndarray
    scores: np.ndarray
    model_key: str
    kind: str | None
    exact: bool
    signature: str

    @property
    def k(self) -> int:
        """Neighbours per item."""
        return int(self.neighbours.shape[1])

    def limited(self, k: int) -> KnnGraph:
        """The same graph with only the ``k`` best neighbours of each item."""
        return KnnGraph(self.ids, self.neighbours[:, :k], self.scores[:, :k], self.model_key, self.kind, self.exact,
                        self.signature)

    def edges(self, threshold: float | None = None) -> pd.DataFrame:
        """The graph's undirected edges ``item1 < item2, score`` with ``score >= threshold`` (all when None).

        A pair found from both sides is one edge; its score is the larger of the two (equal on an exact index).
        """
        sources = np.repeat(self.ids, self.k)
        targets = self.neighbours.reshape(-1)
        scores = self.scores.reshape(-1).astype(np.float64)
        keep = targets >= 0
        if threshold is not None:
            keep &= scores >= threshold
        sources, targets, scores = sources[keep], targets[keep], scores[keep]
        frame = pd.DataFrame({"item1": np.minimum(sources, targets), "item2": np.maximum(sources, targets),
                              "score": scores})
        frame = frame.groupby(["item1", "item2"], as_index=False)["score"].max()
        return frame.sort_values(["score", "item1", "item2"], ascending=[False, True, True], ignore_index=True)


def selection_name(kind: str | None) -> str:
    """The file-name part of a selection: the kind itself when it is a plain word, else a digest of it."""
    if kind is None:
        return "all"
    if re.fullmatch(r"[A-Za-z0-9_.]{1,40}", kind):
        return f"kind-{kind}"
    return "kind-" + hashlib.sha256(kind.encode()).hexdigest()[:16]


def _signature(index, kind: str | None, ids: np.ndarray) -> str:
    """Digest of the index (kind, file version, rows, their content tags) and of the selected items.

    The file's size and modification time stand for its vectors: a rebuild with a new version of the model keeps
    the rows and tags but rewrites the file.
    """
    stat = index.path.stat()
    digest = hashlib.sha256(f"{index.model_key}|{index.kind}|{kind}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    tags = index.row_tags() or {}
    for row in sorted(tags):
        digest.update(f"{row}:{tags[row]};".encode())
    digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _load_cached(path, signature: str, k: int) -> dict | None:
    """The cached arrays when they match ``signature`` and hold at least ``k`` neighbours; else None."""
    try:
        cached = load_npz(path)  # not np.load: it parses headers with ast (see corpus_index/storage/npy_files)
        if str(cached["signature"]) != signature or cached["neighbours"].shape[1] < k:
            return None
        return {name: cached[name] for name in ("ids", "neighbours", "scores", "exact")}
    except FileNotFoundError:
        return None
    except READ_ERRORS:  # a damaged cache is only a cache: search again and overwrite it
        return None


def _drop_self(queries: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int):
    """Each row's neighbours without the query itself (and padding), the first ``k`` kept, -1 padded."""
    keep = (labels >= 0) & (labels != queries[:, None])
    order = np.argsort(~keep, axis=1, kind="stable")  # kept entries first, in their ranked order
    labels = np.take_along_axis(labels, order, axis=1)[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)[:, :k]
    kept = np.take_along_axis(keep, order, axis=1)[:, :k]
    labels = np.where(kept, labels, -1)
    scores = np.where(kept, scores, -np.inf).astype(np.float32)
    if labels.shape[1] < k:
        pad = k - labels.shape[1]
        labels = np.pad(labels, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return labels, scores


def search_all(index, ids: np.ndarray, vectors: np.ndarray, k: int, group: int = 1,
               batch_size: int = BATCH_SIZE, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other items among ``ids`` of every item of ``ids``, searched in batches.

    Parameters
    ----------
    index : VectorIndex
        Holds (at least) the rows of ``ids``.
    ids : ndarray (n,) int64
    vectors : ndarray (n, group * h)
        The items' stored φ (their ``group`` vectors concatenated).
    k : int
    group : int
        Vectors per item (8 for rotation-max models).
    batch_size : int
    progress : Progress, optional

    Returns
    -------
    neighbours : ndarray (n, k) int64
    scores : ndarray (n, k) float32
    """
    allowed = None if len(index) == len(ids) * group else ids  # every row is a selected item: no id filter
    neighbours = np.full((len(ids), k), -1, dtype=np.int64)
    scores = np.full((len(ids), k), -np.inf, dtype=np.float32)
    for start in range(0, len(ids), batch_size):
        if progress is not None:
            progress(start, len(ids), f"nearest neighbours of items {start + 1}-{min(start + batch_size, len(ids))}")
        batch_ids, batch = ids[start:start + batch_size], vectors[start:start + batch_size]
        if group == 1:
            found_scores, labels = index.search(batch, k + 1, allowed=allowed)
        else:
            found = index.search_items(batch, k + 1, allowed=allowed, group=group)
            width = max((len(items) for items, _ in found), default=0)
            labels = np.full((len(found), width), -1, dtype=np.int64)
            found_scores = np.full((len(found), width), -np.inf, dtype=np.float32)
            for row, (items, item_scores) in enumerate(found):
                labels[row, :len(items)], found_scores[row, :len(items)] = items, item_scores
        rows = slice(start, start + len(batch_ids))
        neighbours[rows], scores[rows] = _drop_self(batch_ids, labels, found_scores, k)
    if progress is not None:
        progress(len(ids), len(ids), "nearest neighbours found")
    return neighbours, scores


def knn_graph(corpus, model_key: str, kind: str | None = None, k: int = DEFAULT_K, batch_size: int = BATCH_SIZE,
              progress: Progress | None = None) -> KnnGraph:
    """The k-nearest-neighbour graph of the items of ``kind`` (default: all) under a model, cached on disk.

    Parameters
    ----------
    corpus : Corpus
    model_key : str
        A model with a built index (:class:`~corpus_index.storage.faiss_index.IndexMissingError` otherwise).
    kind : str, optional
        Only items of this kind, each searched among items of this kind.
    k : int
        Neighbours per item (at least 1).
    batch_size : int
        Queries per faiss search.
    progress : Progress, optional

    Raises
    ------
    ValueError
        For ``k < 1``.
    StaleContentError
        If the index holds rows computed from other content than the items have now (rebuild the model).
    """
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = int(k)
    key = canonical_key(model_key)
    index = corpus.index(key)  # checked against the items' current content
    group = key_transform_count(key)
    ids, vectors = corpus.stored_vectors(key)
    indexed = np.unique(index.ids() // group)
    keep = np.isin(ids, indexed)
    if kind is not None:
        keep &= np.isin(ids, corpus.store.filtered_ids(kind=kind))
    order = np.argsort(ids[keep], kind="stable")
    ids, vectors = ids[keep][order], vectors[keep][order]
    signature = _signature(index, kind, ids)
    path = corpus.layout.editions_graph(key, selection_name(kind))
    cached = _load_cached(path, signature, k)
    if cached is not None:
        graph = KnnGraph(cached["ids"], cached["neighbours"], cached["scores"], key, kind, bool(cached["exact"]),
                         signature)
        return graph.limited(k)
    neighbours, scores = search_all(index, ids, vectors, k, group, batch_size, progress)
    try:
        atomic_save_npz(path, ids=ids, neighbours=neighbours, scores=scores, exact=np.asarray(index.exact),
                        signature=np.asarray(signature))
    except OSError:  # a read-only root: the graph is still returned, only not cached
        pass
    return KnnGraph(ids, neighbours, scores, key, kind, index.exact, signature)
