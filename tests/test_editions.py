"""Editions: the kNN graph of every item, the match threshold, groups, the edition matrix and the exports."""

import os

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from tiny_corpus import TINY_KEY, make_corpus

from corpus_index.editions import analyse
from corpus_index.editions import graph as graph_module
from corpus_index.editions.exports import edition_network, matrix_table, network_bytes, write_network
from corpus_index.editions.graph import knn_graph
from corpus_index.editions.groups import item_groups, shared_relevance
from corpus_index.editions.matrix import book_edges, book_order, described_edges, edition_matrix, pairs_between
from corpus_index.editions.threshold import distribution_threshold, match_threshold, pair_scores, separating_threshold


@pytest.fixture
def corpus(tmp_path):
    corpus = make_corpus(tmp_path, per_book=4)
    corpus.build(TINY_KEY)
    yield corpus
    corpus.close()


def brute_force(corpus, ids, k):
    """The k best other items of each of ``ids`` by inner product, from the stored vectors."""
    found, vectors = corpus.stored_vectors(TINY_KEY, ids.tolist())
    order = np.argsort(found)
    found, vectors = found[order], vectors[order].astype(np.float64)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return found[best], np.take_along_axis(scores, best, axis=1)


def test_knn_graph_equals_brute_force_and_leaves_out_the_item_itself(corpus):
    graph = knn_graph(corpus, TINY_KEY, k=4, batch_size=5)  # several batches
    assert graph.ids.tolist() == sorted(corpus.items()["id"].tolist())
    neighbours, scores = brute_force(corpus, graph.ids, 4)
    assert np.allclose(graph.scores, scores, rtol=1e-5)
    assert (graph.neighbours == neighbours).mean() > 0.95  # ties between equal scores may swap
    assert not (graph.neighbours == graph.ids[:, None]).any()


def test_knn_graph_of_one_kind_searches_only_that_kind(corpus):
    items = corpus.items()
    tables = set(items.loc[items["kind"] == "table", "id"].tolist())
    graph = knn_graph(corpus, TINY_KEY, kind="table", k=50)
    assert set(graph.ids.tolist()) == tables
    found = graph.neighbours[graph.neighbours >= 0]
    assert set(found.tolist()) <= tables
    # fewer other tables than k: each row holds every other table, the rest is padding
    assert ((graph.neighbours >= 0).sum(axis=1) == len(tables) - 1).all()


def test_knn_graph_is_cached_and_searched_again_when_the_index_changes(corpus, tmp_path, monkeypatch):
    first = knn_graph(corpus, TINY_KEY, k=3)
    assert corpus.layout.editions_graph(TINY_KEY, "all").is_file()
    calls = []
    real = graph_module.search_all
    monkeypatch.setattr(graph_module, "search_all", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    again = knn_graph(corpus, TINY_KEY, k=2)  # a smaller k comes from the cached graph
    assert not calls and np.array_equal(again.neighbours, first.neighbours[:, :2])
    knn_graph(corpus, TINY_KEY, k=5)  # a larger k cannot
    assert len(calls) == 1
    index_file = corpus.index(TINY_KEY).path  # rewritten, e.g. by a new version of the model: searched again
    stat = index_file.stat()
    os.utime(index_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    knn_graph(corpus, TINY_KEY, k=2)
    assert len(calls) == 2
    from tiny_corpus import write_source

    source = write_source(tmp_path / "more", per_book=1, seed=5)
    corpus.ingest_folder(source, source / "metadata.csv")
    corpus.build(TINY_KEY)
    grown = knn_graph(corpus, TINY_KEY, k=2)
    assert len(calls) == 3 and len(grown.ids) == len(first.ids) + 4


def test_edges_are_undirected_unique_and_above_the_threshold(corpus):
    graph = knn_graph(corpus, TINY_KEY, k=3)
    edges = graph.edges()
    assert (edges["item1"] < edges["item2"]).all()
    assert not edges.duplicated(["item1", "item2"]).any()
    cut = float(edges["score"].median())
    above = graph.edges(cut)
    assert (above["score"] >= cut).all() and len(above) == int((edges["score"] >= cut).sum())


def test_distribution_threshold_is_the_top_share_quantile_of_all_pairs():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(40, 6)).astype(np.float32)
    scores = (vectors.astype(np.float64) @ vectors.T.astype(np.float64))[np.triu_indices(40, k=1)]
    assert distribution_threshold(vectors, top_share=0.05) == pytest.approx(np.quantile(scores, 0.95))
    # a sample of pairs estimates it for many items
    many = rng.normal(size=(3000, 6))
    first, second = np.triu_indices(3000, k=1)
    exact = np.quantile(pair_scores(many[first[::7]], many[second[::7]]), 0.995)
    estimate = distribution_threshold(many, sample=100_000)
    assert estimate == pytest.approx(exact, rel=0.05)


def test_pair_scores_of_rotation_groups_take_the_best_transform():
    first = np.array([[1.0, 0.0, 0.0, 2.0]])  # two vectors of 2 dimensions
    second = np.array([[0.0, 1.0, 0.0, 3.0]])
    assert pair_scores(first, second, group=2)[0] == 6.0
    assert pair_scores(first, second, group=1)[0] == 6.0


def test_separating_threshold_lies_between_different_and_same():
    value = separating_threshold(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0, 3.0]))
    assert 3.0 < value < 5.0
    # one "different" pair scoring high: the best cut still keeps most pairs right
    value = separating_threshold(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0, 6.5]))
    assert 2.0 < value <= 5.0
    with pytest.raises(ValueError, match="one verdict of each"):
        separating_threshold(np.array([1.0]), np.array([]))


def add_verdict(corpus, item1, item2, label, superseded_by=None):
    hashes = dict(zip(corpus.items()["id"], corpus.items()["hash"], strict=True))
    with corpus.store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO verdicts (item1, item2, hash1, hash2, label, reviewer, created_at, superseded_by)"
            " VALUES (?, ?, ?, ?, ?, 'tester', '2026-01-01', ?)",
            (item1, item2, hashes[item1], hashes[item2], label, superseded_by))
        return cursor.lastrowid


def test_threshold_from_the_distribution_without_verdicts(corpus):
    threshold = match_threshold(corpus, TINY_KEY, kind="table")
    ids = corpus.store.filtered_ids(kind="table")
    _, vectors = corpus.stored_vectors(TINY_KEY, ids.tolist())
    assert threshold.source == "distribution"
    assert threshold.value == pytest.approx(distribution_threshold(vectors))
    assert "top 0.5%" in threshold.meaning


def test_threshold_from_verdicts_separates_same_from_different(corpus):
    graph = knn_graph(corpus, TINY_KEY, kind="table", k=10)
    edges = graph.edges()
    best, worst = edges.iloc[0], edges.iloc[-1]
    add_verdict(corpus, int(best.item1), int(best.item2), "same")
    old = add_verdict(corpus, int(worst.item1), int(worst.item2), "same")
    add_verdict(corpus, int(worst.item1), int(worst.item2), "different")
    with corpus.store.transaction() as conn:  # the first verdict on the worst pair was changed: only the new counts
        conn.execute("UPDATE verdicts SET superseded_by = ? WHERE id = ?", (old + 1, old))
    threshold = match_threshold(corpus, TINY_KEY, kind="table")
    assert threshold.source == "verdicts"
    assert worst.score < threshold.value < best.score
    # verdicts on other kinds do not count for tables; a given threshold beats them all
    assert match_threshold(corpus, TINY_KEY, kind="woodcut").source == "distribution"
    given = match_threshold(corpus, TINY_KEY, kind="table", given=1.5)
    assert (given.source, given.value) == ("given", 1.5)


def test_only_same_verdicts_fall_back_to_the_distribution(corpus):
    edges = knn_graph(corpus, TINY_KEY, kind="table", k=3).edges()
    add_verdict(corpus, int(edges.item1[0]), int(edges.item2[0]), "same")
    assert match_threshold(corpus, TINY_KEY, kind="table").source == "distribution"


def items_frame():
    return pd.DataFrame({"id": [1, 2, 3, 4, 5, 6], "year": pd.array([1550, 1500, None, 1520, 1600, 1601],
                                                                     dtype="Int64"),
                         "book": ["c", "a", "z", "b", "d", "e"], "page": [1, 1, 1, 1, 1, 1]})


def test_groups_are_components_with_members_by_year_and_no_year_last():
    edges = pd.DataFrame({"item1": [1, 2, 5], "item2": [2, 3, 6], "score": [3.0, 2.0, 1.0]})
    groups = item_groups(edges, items_frame())
    first = groups[groups["match_group"] == 1]
    assert first["id"].tolist() == [2, 1, 3] and first["position"].tolist() == [0, 1, 2]
    assert (first["size"] == 3).all()
    assert groups[groups["match_group"] == 2]["id"].tolist() == [5, 6]
    assert 4 not in groups["id"].tolist()  # an item with no match is in no group


def test_communities_split_two_cliques_joined_by_one_weak_edge():
    clique = [(a, b) for a in range(4) for b in range(a + 1, 4)]
    pairs = clique + [(a + 10, b + 10) for a, b in clique] + [(3, 10)]
    edges = pd.DataFrame({"item1": [a for a, _ in pairs], "item2": [b for _, b in pairs],
                          "score": [5.0] * (len(pairs) - 1) + [0.1]})
    items = pd.DataFrame({"id": list(range(4)) + list(range(10, 14)), "year": [1500] * 8})
    assert item_groups(edges, items)["match_group"].nunique() == 1
    communities = item_groups(edges, items, method="communities")
    assert sorted(sorted(g["id"]) for _, g in communities.groupby("match_group")) == [[0, 1, 2, 3], [10, 11, 12, 13]]
    with pytest.raises(ValueError, match="grouping method"):
        item_groups(edges, items, method="kmeans")


BOOKS = pd.DataFrame({"book": ["B3", "B1", "B2", "B4"], "title": ["T3", "T1", "T2", "T4"],
                      "printer": ["P3", "P1", "P2", None], "place": ["Venice", "Paris", "Lyon", "Rome"],
                      "year": pd.array([1550, 1500, 1550, None], dtype="Int64")})


def described():
    items = pd.DataFrame({"id": [1, 2, 3, 4, 5], "book": ["B1", "B2", "B3", "B2", "B1"],
                          "year": [1500, 1550, 1550, 1550, 1500], "kind": ["table"] * 5})
    edges = pd.DataFrame({"item1": [1, 2, 3, 4, 1], "item2": [2, 3, 4, 5, 5], "score": [4.0, 3.0, 2.0, 5.0, 9.0]})
    return described_edges(edges, items)


def test_edition_matrix_counts_shared_pairs_between_books_in_year_then_place_order():
    assert book_order(BOOKS)["book"].tolist() == ["B1", "B2", "B3", "B4"]  # 1500; 1550 Lyon, Venice; no year
    matrix = edition_matrix(described(), BOOKS)
    assert matrix.index.tolist() == matrix.columns.tolist() == ["B1", "B2", "B3", "B4"]
    assert matrix.loc["B1", "B2"] == matrix.loc["B2", "B1"] == 2  # pairs (1, 2) and (4, 5)
    assert matrix.loc["B2", "B3"] == 2 and matrix.loc["B1", "B1"] == 0  # (1, 5): the same book, left out
    assert matrix.loc["B4"].sum() == 0
    edges = book_edges(described())
    assert set(map(tuple, edges[["book1", "book2", "shared"]].to_numpy().tolist())) == {("B1", "B2", 2),
                                                                                       ("B2", "B3", 2)}
    pairs = pairs_between(described(), "B2", "B1")
    assert pairs["book1"].tolist() == ["B2", "B2"] and pairs["item1"].tolist() == [4, 2]  # best first


def test_graphml_and_gexf_read_back_equal(tmp_path):
    network = edition_network(book_edges(described()), BOOKS)
    write_network(network, tmp_path / "out" / "editions.graphml", "graphml")
    back = nx.read_graphml(tmp_path / "out" / "editions.graphml")
    assert dict(back.nodes(data=True)) == dict(network.nodes(data=True))  # attributes and their types
    assert nx.utils.edges_equal(back.edges(data=True), network.edges(data=True))
    assert back.nodes["B4"] == {"label": "B4", "title": "T4", "place": "Rome"}  # unknown year/printer left off
    assert back.edges["B1", "B2"]["shared"] == 2
    (tmp_path / "n.gexf").write_bytes(network_bytes(network, "gexf"))
    gexf = nx.read_gexf(tmp_path / "n.gexf")
    assert sorted(gexf.nodes) == sorted(network.nodes) and gexf.number_of_edges() == network.number_of_edges()
    with pytest.raises(ValueError, match="network format"):
        network_bytes(network, "dot")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_network(network, tmp_path, "graphml")
    assert matrix_table(edition_matrix(described(), BOOKS)).columns[0] == "book"


def test_analyse_ties_it_together(corpus):
    result = analyse(corpus, TINY_KEY, kind="table", k=5, threshold=-1e9)  # every kNN edge matches
    assert len(result.edges) == len(result.graph.edges())
    assert set(result.groups["id"]) == set(result.graph.ids.tolist())
    assert int(result.matrix.to_numpy().sum()) == 2 * int(result.book_edges["shared"].sum())


def test_shared_relevance_averages_normalised_maps_of_the_earliest_side():
    strong = np.zeros((2, 2, 3, 3))
    strong[0, 0] = 10.0  # all relevance of pair 1 on patch (0, 0), summed over the other page
    weak = np.zeros((2, 2, 1, 1))
    weak[1, 1] = 0.5
    shared = shared_relevance([strong, weak])
    assert shared == pytest.approx(np.array([[0.5, 0.0], [0.0, 0.5]]))  # each printing counts alike
    with pytest.raises(ValueError, match="one patch size"):
        shared_relevance([strong, np.zeros((3, 3, 1, 1))])


def test_search_all_of_rotation_groups_scores_the_best_transform_pair(tmp_path):
    from corpus_index.storage.faiss_index import VectorIndex, expand_rows

    rng = np.random.default_rng(3)
    ids = np.arange(10, 40, dtype=np.int64)
    vectors = rng.normal(size=(len(ids), 2 * 5)).astype(np.float32)  # 2 transforms of 5 dimensions per item
    index = VectorIndex(tmp_path, "rot-test", "flat")
    index.sync(*expand_rows(ids, vectors, 2))
    neighbours, scores = graph_module.search_all(index, ids, vectors, k=4, group=2, batch_size=7)
    for row, item in enumerate(ids):
        others = ids != item
        expected = pair_scores(np.repeat(vectors[row:row + 1], others.sum(), axis=0), vectors[others], group=2)
        best = np.argsort(-expected, kind="stable")[:4]
        assert np.allclose(scores[row], expected[best], rtol=1e-5)
        assert set(neighbours[row].tolist()) == set(ids[others][best].tolist())
