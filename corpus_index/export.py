"""Neighbour tables for many queries at once (``python -m corpus_index export``).

Uses only the public side of a :class:`~corpus_index.corpus.Corpus` (its verified index, current vectors, items)
and its :class:`~corpus_index.storage.store.Store` (filters, books).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from corpus_index.models import key_transform_count
from corpus_index.progress import Progress

if TYPE_CHECKING:
    from corpus_index.corpus import Corpus

QUERY_CHUNK = 256  # queries per faiss call: batched search is much faster than one query at a time


def export_neighbours(corpus: Corpus, model_key: str, item_ids: Sequence[int] | None = None, k: int = 10,
                      exclude_same_book: bool = False, index: str | None = None,
                      progress: Progress | None = None, **filters) -> pd.DataFrame:
    """Neighbours of many items as one long table (see :meth:`corpus_index.corpus.Corpus.export`).

    Each query over-fetches by one (itself) plus, with ``exclude_same_book``, the size of the largest book, so
    the k neighbours left after dropping those are still the true top k of an exact index.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    vector_index = corpus.index(model_key, index)
    if item_ids is None:
        query_ids, query_vectors = corpus.stored_vectors(model_key)
    else:
        wanted = [int(i) for i in item_ids]
        for item_id in wanted:
            corpus.item(item_id)  # unknown id -> ItemNotFoundError, before any work
        query_ids, query_vectors = corpus.stored_vectors(model_key, wanted)
        missing = sorted(set(wanted) - set(query_ids.tolist()))
        if missing:
            raise KeyError(f"items {missing[:10]} have no features of their current scan for {model_key}; "
                           f"run 'python -m corpus_index --root {corpus.root} build --model {model_key}' first")
    meta = corpus.store.query_items(ids=query_ids.tolist()) if len(query_ids) else corpus.store.query_items(ids=[])
    book_of = dict(zip(meta["id"].astype(int), meta["book"], strict=True))
    extra = 1
    if exclude_same_book:
        extra += int(corpus.store.books()["n_items"].max() or 0)
    allowed = corpus.store.filtered_ids(**filters)
    group = key_transform_count(model_key)
    parts = []
    for start in range(0, len(query_ids), QUERY_CHUNK):
        ids = query_ids[start:start + QUERY_CHUNK]
        found = vector_index.search_items(query_vectors[start:start + QUERY_CHUNK], k + extra, allowed=allowed,
                                          group=group)
        for query_id, (row_labels, row_scores) in zip(ids, found, strict=True):
            query_book = book_of.get(int(query_id))
            keep = row_labels != query_id
            if exclude_same_book and query_book is not None:
                same = np.array([book_of_neighbour(corpus, book_of, int(n)) == query_book for n in row_labels])
                keep &= ~same
            hits = row_labels[keep][:k]
            parts.append(pd.DataFrame({"query_id": int(query_id), "query_book": query_book,
                                       "rank": np.arange(1, len(hits) + 1), "id": hits,
                                       "score": row_scores[keep][:k].astype(np.float64)}))
        if progress is not None:
            progress(min(start + QUERY_CHUNK, len(query_ids)), len(query_ids), f"neighbours {model_key}")
    columns = ["query_id", "query_book", "rank", "id", "score"]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    neighbours = corpus.store.query_items(ids=sorted(set(table["id"].astype(int)))) if len(table) else None
    if neighbours is not None:
        table = table.merge(neighbours.drop(columns=["hash"], errors="ignore"), on="id", how="left")
    table.attrs["exact"] = vector_index.exact
    return table


def book_of_neighbour(corpus: Corpus, cache: dict, item_id: int):
    """The book of an item, looked up once and remembered in ``cache``."""
    if item_id < 0:
        return None
    if item_id not in cache:
        frame = corpus.store.query_items(ids=[item_id])
        cache[item_id] = frame["book"].iloc[0] if len(frame) else None
    return cache[item_id]


def explanation_evidence(store, table: pd.DataFrame, item1: int | None, item2: int, model_key: str, gamma,
                         pool: int, score: float) -> pd.DataFrame:
    """The top patch pairs of an explanation as a CSV that stands on its own: each row with both items' metadata
    (``book1, title1, …, source2``, :func:`corpus_index.verdicts.with_items`) and the parameters (model, γ, patch
    size, score). ``item1`` None: an uploaded scan, which has no metadata."""
    from corpus_index.verdicts import with_items

    frame = table.assign(item1=-1 if item1 is None else int(item1), item2=int(item2))  # -1 names no item
    frame = with_items(store, frame)
    if item1 is None:
        frame["item1"] = "upload"
    gamma_text = gamma if isinstance(gamma, str) else json.dumps(gamma, sort_keys=True, default=float)
    return frame.assign(model=model_key, gamma=gamma_text, pool=int(pool), score=float(score))
