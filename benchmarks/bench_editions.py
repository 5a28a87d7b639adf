"""Editions: time of the kNN graph of every item, and book pairs recovered on the demo corpus.

Measures:

- the kNN graph (k = 20) of 1e4 and 1e5 items: :func:`corpus_index.editions.graph.search_all`, the search
  :func:`~corpus_index.editions.graph.knn_graph` runs, through a real
  :class:`~corpus_index.storage.faiss_index.VectorIndex` (exact flat inner product). The vectors are random unit
  vectors of the default VGG model's dimension (h = 100), not features of real pages: the search time depends
  only on the number of items, k and h. One thread (OMP_NUM_THREADS=1 unless set).
- on the demo corpus (default 24 books; its metadata column ``group`` says which pages print the same table or
  woodcut): the pairs of books joined by the editions analysis (default threshold: top 0.5 % of all pairs of
  the kind, no verdicts) against the true pairs of books sharing a group of that kind, as precision and recall;
  the same for item pairs; and how both move with the share of top pairs kept. Tables under the bigram network,
  illustrations (woodcuts) under VGG-16-L17 with random weights — the latter is expected to be poor: untrained
  features do not tell one woodcut from another.

Usage: ``.venv/bin/python benchmarks/bench_editions.py [--root /tmp/demo24] [--quick]`` (writes
``benchmarks/results/editions.json``; ``--quick`` times 1e3 and 1e4 items only and writes
``editions_quick.json``). The demo root is reused when it holds a corpus, else built there (minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import command_line, write_results  # noqa: E402
from corpus_index.editions import analyse  # noqa: E402
from corpus_index.editions.graph import search_all  # noqa: E402
from corpus_index.editions.threshold import distribution_threshold  # noqa: E402
from corpus_index.storage.faiss_index import VectorIndex  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
K = 20
DIM = 100  # h of the default model vgg16-L17-h100-seed0
CASES = (("bigram", "table"), ("vgg16-L17-h100-seed0", "illustration"))
TOP_SHARES = (0.005, 0.01, 0.02, 0.05, 0.1)


def time_graph(count: int, dim: int = DIM, k: int = K) -> dict:
    """Seconds to search the kNN graph of ``count`` random unit vectors through a flat VectorIndex."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(count, dtype=np.int64)
    with tempfile.TemporaryDirectory() as folder:
        index = VectorIndex(folder, "bench-random", "flat")
        index.sync(ids, vectors)
        start = time.perf_counter()
        neighbours, _ = search_all(index, ids, vectors, k)
        seconds = time.perf_counter() - start
    assert not (neighbours == ids[:, None]).any()
    print(f"kNN graph of {count} items: {seconds:.1f} s", file=sys.stderr, flush=True)
    return {"items": count, "dim": dim, "k": k, "seconds": round(seconds, 2),
            "items_per_second": round(count / seconds, 1)}


def precision_recall(predicted: set, truth: set) -> dict:
    """Precision and recall of predicted pairs against true pairs (counts too)."""
    hits = len(predicted & truth)
    return {"predicted": len(predicted), "true": len(truth), "correct": hits,
            "precision": round(hits / len(predicted), 3) if predicted else None,
            "recall": round(hits / len(truth), 3) if truth else None}


def true_pairs(items, kind: str) -> tuple[set, set]:
    """Item pairs of one kind printing the same group (in different books), and the book pairs they join."""
    chosen = items[(items["kind"] == kind) & items["group"].notna() & items["book"].notna()]
    item_pairs, book_pairs = set(), set()
    for _, members in chosen.groupby("group"):
        rows = members[["id", "book"]].to_numpy().tolist()
        for a, (id1, book1) in enumerate(rows):
            for id2, book2 in rows[a + 1:]:
                if book1 != book2:
                    item_pairs.add((min(id1, id2), max(id1, id2)))
                    book_pairs.add(tuple(sorted((str(book1), str(book2)))))
    return item_pairs, book_pairs


def _cross_book_pairs(items, kind: str):
    """Every pair of two items of ``kind`` in different books (the pairs a match can join)."""
    rows = items.loc[(items["kind"] == kind) & items["book"].notna(), ["id", "book"]].to_numpy().tolist()
    for a, (id1, book1) in enumerate(rows):
        for id2, book2 in rows[a + 1:]:
            if book1 != book2:
                yield id1, id2


def predicted_pairs(edges) -> tuple[set, set]:
    """Item pairs (in different books) and book pairs of the analysis' edges."""
    cross = edges[edges["book1"].astype(str) != edges["book2"].astype(str)].dropna(subset=["book1", "book2"])
    items = {(int(a), int(b)) for a, b in zip(cross["item1"], cross["item2"], strict=True)}
    books = {tuple(sorted((str(a), str(b)))) for a, b in zip(cross["book1"], cross["book2"], strict=True)}
    return items, books


def evaluate(corpus, key: str, kind: str) -> dict:
    """Book and item pairs recovered by the editions analysis of ``key`` on items of ``kind``."""
    items = corpus.items()
    truth_items, truth_books = true_pairs(items, kind)
    start = time.perf_counter()
    result = analyse(corpus, key, kind=kind, k=K)
    seconds = time.perf_counter() - start
    found_items, found_books = predicted_pairs(result.edges)
    _, vectors = corpus.stored_vectors(key, corpus.store.filtered_ids(kind=kind).tolist())
    sweep = []
    for share in TOP_SHARES:
        value = distribution_threshold(vectors, top_share=share)
        items_at, books_at = predicted_pairs(analyse(corpus, key, kind=kind, k=K, threshold=value).edges)
        sweep.append({"top_share": share, "threshold": round(value, 4),
                      "book_pairs": precision_recall(books_at, truth_books),
                      "item_pairs": precision_recall(items_at, truth_items)})
    books = items.loc[items["kind"] == kind, "book"].dropna().nunique()
    pairs_of_items = sum(1 for _ in _cross_book_pairs(items, kind))
    return {"model": key, "kind": kind, "items": int((items["kind"] == kind).sum()), "k": K,
            "book_pairs_possible": books * (books - 1) // 2, "item_pairs_possible": pairs_of_items,
            "threshold": round(result.threshold.value, 4), "threshold_meaning": result.threshold.meaning,
            "analysis_seconds": round(seconds, 2), "groups_found": int(result.groups["match_group"].nunique()),
            "book_pairs": precision_recall(found_books, truth_books),
            "item_pairs": precision_recall(found_items, truth_items), "by_top_share": sweep}


def demo_corpus(root: Path, books: int):
    """The demo corpus at ``root``, built there first if it holds none."""
    from corpus_index.corpus import Corpus
    from corpus_index.storage.layout import Layout

    if not Layout(root).db.is_file():
        from corpus_index.demo import build_demo

        build_demo(root, books=books, models=[key for key, _ in CASES])
    return Corpus.open(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/demo24"), help="demo corpus root (reused)")
    parser.add_argument("--books", type=int, default=24, help="demo books when the root must be built")
    parser.add_argument("--quick", action="store_true", help="small sizes; writes editions_quick.json")
    args = parser.parse_args()
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    results = {"command": command_line(), "load_before": os.getloadavg()[0],
               "machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
               "vectors": "random unit vectors (not page features) in an exact flat VectorIndex",
               "knn_graph": [time_graph(count) for count in sizes]}
    corpus = demo_corpus(args.root, args.books)
    results["demo"] = {"root": str(args.root), "books": len(corpus.store.books()), "items": corpus.count(),
                       "ground_truth": "items' metadata column 'group' (same table or woodcut)",
                       "cases": [evaluate(corpus, key, kind) for key, kind in CASES
                                 if key in corpus.models()]}
    corpus.close()
    write_results(RESULTS / ("editions_quick.json" if args.quick else "editions.json"), results)


if __name__ == "__main__":
    main()
