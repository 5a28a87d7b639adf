"""Editions: from pairs of similar items to the corpus — who reprinted which table or woodcut.

One call, :func:`analyse`, runs the steps for a model and a kind of item:

1. the k-nearest-neighbour graph of every item (:mod:`.graph`, cached on disk per model and kind);
2. the match threshold (:mod:`.threshold`: given, from verdicts, or from the score distribution);
3. the edges above it and the groups of matching items (:mod:`.groups`, networkx);
4. the edition × edition matrix and the network of editions (:mod:`.matrix`, :mod:`.exports`).

The command line's ``editions`` (:mod:`corpus_index.cli_editions`) and the explorer's Editions page both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from corpus_index.editions.graph import DEFAULT_K, KnnGraph, knn_graph
from corpus_index.editions.groups import item_groups
from corpus_index.editions.matrix import book_edges, described_edges, edition_matrix
from corpus_index.editions.threshold import Threshold, match_threshold
from corpus_index.progress import Progress


@dataclass
class Editions:
    """The editions analysis of one model and kind.

    Attributes
    ----------
    graph : KnnGraph
    threshold : Threshold
    edges : DataFrame
        Matching item pairs (score at or above the threshold) with both items' metadata
        (:func:`~corpus_index.editions.matrix.described_edges`).
    groups : DataFrame
        :func:`~corpus_index.editions.groups.item_groups`.
    book_edges : DataFrame
        Pairs of books sharing items (:func:`~corpus_index.editions.matrix.book_edges`).
    matrix : DataFrame
        :func:`~corpus_index.editions.matrix.edition_matrix`.
    books : DataFrame
        Every book's metadata.
    """

    graph: KnnGraph
    threshold: Threshold
    edges: pd.DataFrame
    groups: pd.DataFrame
    book_edges: pd.DataFrame
    matrix: pd.DataFrame
    books: pd.DataFrame


def analyse(corpus, model_key: str, kind: str | None = None, k: int = DEFAULT_K, threshold: float | None = None,
            method: str = "components", progress: Progress | None = None) -> Editions:
    """The editions analysis of a model over the items of ``kind`` (default: every item).

    Parameters
    ----------
    corpus : Corpus
    model_key : str
        A model with a built index.
    kind : str, optional
        E.g. ``table`` or ``illustration``.
    k : int
        Neighbours per item in the kNN graph.
    threshold : float, optional
        Match threshold; default from verdicts or the score distribution (:func:`match_threshold`).
    method : {"components", "communities"}
        How groups are formed.
    progress : Progress, optional
    """
    graph = knn_graph(corpus, model_key, kind=kind, k=k, progress=progress)
    chosen = match_threshold(corpus, model_key, kind, given=threshold)
    items = corpus.items()
    edges = described_edges(graph.edges(chosen.value), items)
    books = corpus.store.books()
    return Editions(graph=graph, threshold=chosen, edges=edges, groups=item_groups(edges, items, method),
                    book_edges=book_edges(edges), matrix=edition_matrix(edges, books), books=books)


__all__ = ["DEFAULT_K", "Editions", "KnnGraph", "Threshold", "analyse", "knn_graph", "match_threshold"]
