"""FAISS indexes: exact top-k by dot product, filters, atomic writes, concurrent searches, approximate kinds."""

import os
import threading

import numpy as np
import pytest
from tiny_corpus import TINY_KEY, make_corpus

from corpus_index.storage import atomic
from corpus_index.storage.faiss_index import IndexMissingError, VectorIndex, expand_rows


def random_vectors(n, d=12, seed=0):
    rng = np.random.default_rng(seed)
    # Different norms on purpose: inner product and cosine rank these differently.
    return (rng.standard_normal((n, d)) * rng.uniform(0.2, 3.0, (n, 1))).astype(np.float32)


def test_exact_search_is_true_top_k_by_dot_product(tmp_path):
    vectors = random_vectors(500)
    ids = np.arange(500, dtype=np.int64) * 7 + 3
    index = VectorIndex(tmp_path, "m")
    assert index.sync(ids, vectors) == 500
    queries = random_vectors(5, seed=1)
    scores, labels = index.search(queries, 10)
    dots = queries @ vectors.T
    for row in range(5):
        best = np.argsort(-dots[row], kind="stable")[:10]
        assert labels[row].tolist() == ids[best].tolist()
        np.testing.assert_allclose(scores[row], dots[row, best], rtol=1e-5)
    # The stored vectors are not normalised: reconstruct gives them back unchanged.
    np.testing.assert_array_equal(index.vector(int(ids[42])), vectors[42])


def test_search_with_allowed_and_excluded_ids(tmp_path):
    vectors = random_vectors(200)
    ids = np.arange(200, dtype=np.int64)
    index = VectorIndex(tmp_path, "m")
    index.sync(ids, vectors)
    allowed = np.arange(0, 200, 3)
    excluded = allowed[:5]
    scores, labels = index.search(vectors[0], 8, allowed=allowed, excluded=excluded)
    candidates = np.setdiff1d(allowed, excluded)
    best = candidates[np.argsort(-(vectors[candidates] @ vectors[0]), kind="stable")[:8]]
    assert labels[0].tolist() == best.tolist()
    _, labels = index.search(vectors[0], 3, excluded=np.array([0]))
    assert 0 not in labels[0]
    _, labels = index.search(vectors[0], 3, allowed=np.array([], dtype=np.int64))
    assert labels.shape == (1, 0)


def test_failed_write_leaves_previous_index_readable(tmp_path, monkeypatch):
    index = VectorIndex(tmp_path, "m")
    old = random_vectors(50)
    index.sync(np.arange(50), old)
    before = index.search(old[:2], 5)

    def crash(src, dst):
        raise OSError("simulated crash between writing the temporary file and renaming it")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        index.sync(np.arange(60), random_vectors(60, seed=5))
    monkeypatch.undo()
    leftovers = [name for name in os.listdir(index.path.parent) if name.endswith(".tmp")]
    assert leftovers == []
    reopened = VectorIndex(tmp_path, "m")
    assert len(reopened) == 50
    after = reopened.search(old[:2], 5)
    np.testing.assert_array_equal(before[1], after[1])


def test_sync_adds_new_items_and_rebuilds_when_items_vanish(tmp_path):
    vectors = random_vectors(30)
    index = VectorIndex(tmp_path, "m")
    assert index.sync(np.arange(20), vectors[:20]) == 20
    assert index.sync(np.arange(30), vectors) == 10  # only the new ones
    assert sorted(index.ids().tolist()) == list(range(30))
    assert index.sync(np.arange(5, 30), vectors[5:]) == 25  # items 0-4 deleted: rebuilt without them
    assert sorted(index.ids().tolist()) == list(range(5, 30))


def test_searches_from_several_threads_during_writes(tmp_path):
    vectors = random_vectors(2000, d=16)
    index = VectorIndex(tmp_path, "m")
    index.sync(np.arange(1000), vectors[:1000])
    errors, results = [], []

    def searcher():
        try:
            for _ in range(30):
                scores, labels = index.search(vectors[:4], 5)
                results.append(bool((labels >= 0).all()))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for stop in range(1100, 2001, 100):
        index.sync(np.arange(stop), vectors[:stop])
    for thread in threads:
        thread.join()
    assert errors == [] and all(results)
    assert len(VectorIndex(tmp_path, "m")) == 2000


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_indexes_find_most_true_neighbours(tmp_path, kind):
    vectors = random_vectors(2000, d=16)
    index = VectorIndex(tmp_path, "m", kind)
    index.sync(np.arange(2000), vectors)
    assert not index.exact and index.path.name.endswith(f".{kind}.faiss")
    queries = random_vectors(20, d=16, seed=3)
    _, labels = index.search(queries, 10)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(labels, truth, strict=True)])
    assert recall >= (0.9 if kind == "hnsw" else 0.5), recall
    _, labels = index.search(queries[:1], 5, allowed=np.arange(0, 2000, 2))
    assert all(label % 2 == 0 for label in labels[0] if label >= 0)


def test_corpus_search_filters_and_excludes_the_query(tmp_path):
    corpus = make_corpus(tmp_path, per_book=4)
    corpus.build(TINY_KEY, batch_size=8)
    items = corpus.items().set_index("id")
    ids, vectors = corpus.features(TINY_KEY).load()
    phi = dict(zip(ids.tolist(), vectors, strict=True))
    query = int(items.index[0])

    def brute_force(mask, k):
        candidates = [i for i in items.index[mask] if i != query]
        scores = {i: float(phi[i] @ phi[query]) for i in candidates}
        return sorted(candidates, key=lambda i: -scores[i])[:k]

    everything = corpus.search(TINY_KEY, item_id=query, k=100)
    assert query not in everything["id"].tolist() and len(everything) == len(items) - 1
    np.testing.assert_allclose(everything["score"], [phi[i] @ phi[query] for i in everything["id"]], rtol=1e-5)
    cases = [
        ({"kind": "table"}, items["kind"] == "table"),
        ({"book": "b2"}, items["book"] == "b2"),
        ({"year_min": 1520, "year_max": 1550}, items["year"].between(1520, 1550)),
        ({"place": "Venice"}, items["place"] == "Venice"),
        ({"printer": "Giunta", "kind": "woodcut"}, (items["printer"] == "Giunta") & (items["kind"] == "woodcut")),
    ]
    for filters, mask in cases:
        found = corpus.search(TINY_KEY, item_id=query, k=3, **filters)
        assert found["id"].tolist() == brute_force(mask.to_numpy(), 3), filters
        assert found["rank"].tolist() == list(range(1, len(found) + 1))
    other_books = corpus.search(TINY_KEY, item_id=query, k=100, exclude_same_book=True)
    assert items.loc[query, "book"] not in set(other_books["book"])
    assert other_books["id"].tolist() == brute_force((items["book"] != items.loc[query, "book"]).to_numpy(), 100)
    by_image = corpus.search(TINY_KEY, image=corpus.image(query), k=4)  # an uploaded copy of the item
    expected = sorted(items.index, key=lambda i: -float(phi[i] @ phi[query]))[:4]  # the item itself included
    assert by_image["id"].tolist() == expected


def test_search_errors_are_clear(tmp_path):
    corpus = make_corpus(tmp_path, per_book=1)
    with pytest.raises(IndexMissingError, match="run"):
        corpus.search(TINY_KEY, item_id=1)
    corpus.build(TINY_KEY)
    with pytest.raises(KeyError, match="no item with id 999"):
        corpus.search(TINY_KEY, item_id=999)
    with pytest.raises(TypeError, match="unknown filter"):
        corpus.search(TINY_KEY, item_id=1, colour="red")


def test_grouped_search_is_max_over_all_pairs(tmp_path):
    group, h = 8, 6
    vectors = random_vectors(60 * group, d=h, seed=4).reshape(60, group * h)  # 60 items, 8 vectors each
    item_ids = np.arange(60, dtype=np.int64) + 100
    index = VectorIndex(tmp_path, "m-rot")
    index.sync(*expand_rows(item_ids, vectors, group))
    assert len(index) == 60 * group
    query = random_vectors(group, d=h, seed=9).reshape(1, group * h)
    allowed = item_ids[::2]
    (found, scores), = index.search_items(query, 5, allowed=allowed, excluded=item_ids[:1], group=group)
    best = (query.reshape(group, h) @ vectors.reshape(60, group, h).transpose(0, 2, 1)).max(axis=(1, 2))
    candidates = [i for i in range(60) if item_ids[i] in allowed and i != 0]
    expected = sorted(candidates, key=lambda i: -best[i])[:5]
    assert found.tolist() == item_ids[expected].tolist()
    np.testing.assert_allclose(scores, best[expected], rtol=1e-5)
