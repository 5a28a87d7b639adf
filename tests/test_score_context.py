"""Scores with meaning (issue 16 §3): percentiles among pairs of the same kind, the best same-book/same-group pair,
the clear-gap rule, the untrained mark; and the metadata filters with several values and a text search."""

import math

import numpy as np
import pandas as pd
import pytest
from tiny_corpus import TINY_KEY, make_corpus

from corpus_index import score_context
from corpus_index.filters import split_values
from corpus_index.models import UNTRAINED_MARK
from corpus_index.score_context import (
    best_related,
    clear_gap,
    pair_scores,
    percentile,
    percentile_text,
    percentiles,
    untrained_note,
    with_untrained_mark,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("scores"))
    corpus.build(TINY_KEY)
    yield corpus
    corpus.close()


def brute_force(corpus, kind):
    ids, vectors = corpus.stored_vectors(TINY_KEY)
    kinds = corpus.items().set_index("id")["kind"]
    keep = [n for n, i in enumerate(ids) if kind is None or kinds[int(i)] == kind]
    gram = vectors[keep].astype(np.float64) @ vectors[keep].astype(np.float64).T
    return np.sort(gram[np.triu_indices(len(keep), k=1)])


@pytest.mark.parametrize("kind", [None, "table", "woodcut"])
def test_pair_scores_are_every_pair_of_the_kind(corpus, kind):
    expected = brute_force(corpus, kind)
    assert len(expected) == (66 if kind is None else 15)  # 12 items, 6 of each kind
    np.testing.assert_allclose(pair_scores(corpus, TINY_KEY, kind), expected, rtol=1e-6)


def test_a_model_without_stored_vectors_has_no_percentile(corpus):
    unbuilt = "vgg16-L5-h4-seed3-px32"  # explained on the fly, never built: nothing to compare a score with
    assert len(pair_scores(corpus, unbuilt, "table")) == 0
    assert math.isnan(percentile(corpus, unbuilt, 1.0, "table"))


def test_percentile_counts_lower_pairs(corpus):
    scores = brute_force(corpus, "table")
    assert percentile(corpus, TINY_KEY, scores[-1] + 1, "table") == 100.0
    assert percentile(corpus, TINY_KEY, scores[0] - 1e-3, "table") == 0.0
    between = (scores[4] + scores[5]) / 2  # not a score itself: rounding cannot move it across one
    assert percentile(corpus, TINY_KEY, between, "table") == pytest.approx(100 * 5 / 15)
    assert percentile(corpus, TINY_KEY, between, "poem") == pytest.approx(
        100 * np.searchsorted(brute_force(corpus, None), between) / 66)  # unknown kind: all pairs
    assert math.isnan(percentile(corpus, TINY_KEY, float("nan"), "table"))
    several = percentiles(corpus, TINY_KEY, [scores[-1] + 1, between, float("nan")], "table")  # one lookup, same
    assert several[0] == 100.0 and several[1] == pytest.approx(100 * 5 / 15) and math.isnan(several[2])
    assert percentile_text(99.31, "table") == "higher than 99.3 % of table pairs"
    assert percentile_text(50, None) == "higher than 50.0 % of pairs" and percentile_text(math.nan, "x") == ""


def test_large_corpora_use_a_fixed_sample(corpus, monkeypatch):
    monkeypatch.setattr(score_context, "MAX_PAIRS", 40)
    score_context._CACHE.clear()
    sample = pair_scores(corpus, TINY_KEY, None)
    assert len(sample) == 40 and set(np.round(sample, 4)) <= set(np.round(brute_force(corpus, None), 4))
    score_context._CACHE.clear()
    np.testing.assert_array_equal(pair_scores(corpus, TINY_KEY, None), sample)  # same seed, same sample
    score_context._CACHE.clear()


def test_best_related_finds_the_best_pair_of_the_book_and_group(corpus):
    items = corpus.items()
    query = int(items[items["book"] == "b1"]["id"].iloc[0])
    related = dict((r, (i, s)) for r, i, s in best_related(corpus, TINY_KEY, query))
    vector = corpus.query_vector(TINY_KEY, item_id=query)
    for relation, column in (("same book", "book"), ("same group", "group")):
        value = items.set_index("id").loc[query, column]
        others = [int(i) for i in items[items[column] == value]["id"] if int(i) != query]
        ids, vectors = corpus.stored_vectors(TINY_KEY, others)
        scores = vectors @ vector
        assert related[relation] == (int(ids[np.argmax(scores)]), pytest.approx(float(scores.max()), rel=1e-5))


@pytest.mark.parametrize(("scores", "expected"), [
    ([0.99, 0.98, 0.97, 0.965, 0.96, 0.955, 0.95, 0.87, 0.86, 0.85, 0.84], 7),  # reprints, then the rest
    ([1.0, 0.8, 0.6, 0.4, 0.2], None),  # evenly falling: no gap
    ([0.9, 0.5], None),  # too short to tell
    ([0.5, 0.5, 0.5], None),  # all equal
    ([1.0, 1.0, 1.0, 0.5], 3),
    ([1.0, 0.7, 0.4, 0.39], None),  # two equal large drops: neither stands out
])
def test_clear_gap(scores, expected):
    assert clear_gap(scores) == expected


def test_untrained_mark():
    assert untrained_note("vgg16-L17-h100-seed0") == f"vgg16-L17-h100-seed0: {UNTRAINED_MARK}"
    assert untrained_note("bigram") is None and untrained_note("vgg16in-L17-h100-seed0") is None
    frame = pd.DataFrame({"rank": [1], "score": [0.5]})
    marked = with_untrained_mark(frame, "vgg16-L17-h100-seed0")
    assert list(marked.columns) == ["warning", "rank", "score"] and marked["warning"].item() == UNTRAINED_MARK
    assert with_untrained_mark(frame, "bigram") is frame


def test_filters_take_several_values_and_text(corpus):
    def labels(**filters):
        return sorted(corpus.items(**filters)["id"].tolist())

    items = corpus.items()
    assert labels(book=["b0", "b2"]) == sorted(items[items["book"].isin(["b0", "b2"])]["id"].tolist())
    assert labels(text="title B1") == sorted(items[items["book"] == "b1"]["id"].tolist())
    assert labels(text="giunta venice") == sorted(items[items["book"] == "b0"]["id"].tolist())  # two fields
    assert labels(text="cavellat lyon") == []  # every word must match
    assert labels(text="50%") == [] and labels(text="b_") == []  # LIKE wildcards are literal
    assert corpus.count(text="PARIS") == 3
    assert split_values({"kind": "table, woodcut", "book": "b0", "year_min": 1500}) == {
        "kind": ["table", "woodcut"], "book": "b0", "year_min": 1500}


def test_cli_query_and_export_carry_the_untrained_mark(tmp_path, capsys):
    from tiny_corpus import SMALL_VGG_KEY

    from corpus_index.cli import main

    corpus = make_corpus(tmp_path)
    corpus.build(SMALL_VGG_KEY)
    corpus.close()
    root = str(tmp_path / "root")
    assert main(["--root", root, "query", "--model", SMALL_VGG_KEY, "--item", "1", "-k", "2", "--kind",
                 "table,woodcut", "--csv", str(tmp_path / "q.csv")]) == 0
    assert f"warning: {SMALL_VGG_KEY}: {UNTRAINED_MARK}" in capsys.readouterr().err
    assert main(["--root", root, "export", "--model", SMALL_VGG_KEY, "-k", "1", "--csv", str(tmp_path / "e.csv")]) == 0
    for name in ("q.csv", "e.csv"):
        table = pd.read_csv(tmp_path / name)
        assert table.columns[0] == "warning" and set(table["warning"]) == {UNTRAINED_MARK}
    assert len(pd.read_csv(tmp_path / "q.csv")) == 2
    assert main(["--root", root, "query", "--model", SMALL_VGG_KEY, "--item", "1", "--text", "paris",
                 "--csv", str(tmp_path / "t.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "t.csv")["place"]) == {"Paris"}
