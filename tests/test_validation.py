"""Model validation against verdicts filled from the tiny corpus's ground-truth groups, checked against a direct
computation from the stored feature vectors."""

import numpy as np
import pandas as pd
import pytest
from tiny_corpus import SMALL_VGG_KEY, TINY_KEY, make_corpus

from corpus_index import verdicts
from corpus_index.validation import pair_labels, validate

K = 3


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """A tiny corpus (4 books × 3 pages; group = page number) with two models and verdicts from its groups."""
    corpus = make_corpus(tmp_path_factory.mktemp("validation"))
    for key in (TINY_KEY, SMALL_VGG_KEY):
        corpus.build(key, batch_size=6)
    items = corpus.items()
    groups = dict(zip(items["id"], items["group"], strict=True))
    ids = sorted(groups)
    store = corpus.store
    for number, a in enumerate(ids):
        for b in ids[number + 1:]:
            if groups[a] == groups[b]:  # the ground truth: same group, same page of another book
                verdicts.record(store, a, b, "same" if (a + b) % 3 else "partial", "Ada", model_key=TINY_KEY,
                                wrong_reason=(a + b) % 4 == 0)
            elif (a + b) % 2:  # half of the other pairs judged different
                verdicts.record(store, a, b, "different", "Bea", model_key=SMALL_VGG_KEY)
    verdicts.record(store, ids[0], ids[1], "related", "Bea")  # no model: counts for no Clever-Hans rate
    # A reviewer changing their mind: only the latest label of a pair counts.
    verdicts.record(store, ids[0], ids[3], "different", "Ada", model_key=TINY_KEY)
    verdicts.record(store, ids[0], ids[3], "same", "Ada", model_key=TINY_KEY, wrong_reason=True)
    yield corpus
    corpus.close()


def direct_ranks(corpus, key, pairs):
    """Rank of each pair from the stored vectors: 1 + how many other items score higher, best direction."""
    ids, vectors = corpus.stored_vectors(key)
    position = {int(i): n for n, i in enumerate(ids)}
    scores = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    ranks = []
    for a, b in pairs[["item1", "item2"]].itertuples(index=False):
        both = []
        for query, other in ((a, b), (b, a)):
            row = scores[position[query]].copy()
            row[position[query]] = -np.inf  # the query itself is no neighbour
            both.append(1 + int(np.sum(row > row[position[other]])))
        ranks.append(min(both))
    return np.asarray(ranks)


def test_validation_numbers_equal_a_direct_computation(judged):
    table = validate(judged, [TINY_KEY, SMALL_VGG_KEY], k=K).set_index("model")
    pairs = pair_labels(judged.store)
    assert (pairs["item1"] < pairs["item2"]).all() and not pairs.duplicated(["item1", "item2"]).any()
    positive = pairs["label"].isin(["same", "partial"]).to_numpy()
    different = (pairs["label"] == "different").to_numpy()
    now = verdicts.current(judged.store)
    for key in (TINY_KEY, SMALL_VGG_KEY):
        ranks = direct_ranks(judged, key, pairs)
        row = table.loc[key]
        assert row["same_partial_pairs"] == positive.sum() > 0 and row["different_pairs"] == different.sum() > 0
        assert row["recall_at_k"] == pytest.approx(np.mean(ranks[positive] <= K))
        assert row["mean_rank"] == pytest.approx(ranks[positive].mean())
        assert row["false_friends"] == np.sum(ranks[different] <= K) and row["unranked"] == 0
        on_model = now[now["model_key"] == key]
        assert row["verdicts_on_model"] == len(on_model) > 0
        assert row["clever_hans_rate"] == pytest.approx(on_model["wrong_reason"].mean())
    assert table.loc[TINY_KEY, "clever_hans_rate"] > 0 and table.loc[SMALL_VGG_KEY, "clever_hans_rate"] == 0


def test_the_latest_verdict_on_a_pair_counts(judged):
    ids = sorted(judged.items()["id"])
    labels = pair_labels(judged.store).set_index(["item1", "item2"])["label"]
    assert labels[(ids[0], ids[3])] == "same" and labels[(ids[0], ids[1])] == "related"


def test_ranks_beyond_the_limit_are_unranked_misses(judged):
    table = validate(judged, [TINY_KEY], k=1, limit=1).iloc[0]
    pairs = pair_labels(judged.store)
    ranks = direct_ranks(judged, TINY_KEY, pairs)
    positive = pairs["label"].isin(["same", "partial"]).to_numpy()
    assert table["unranked"] == np.sum(ranks[positive] > 1)
    assert table["recall_at_k"] == pytest.approx(np.mean(ranks[positive] == 1))


def test_bad_requests_are_refused(judged):
    with pytest.raises(ValueError, match="k must be at least 1"):
        validate(judged, [TINY_KEY], k=0)
    with pytest.raises(Exception, match="no index for model"):
        validate(judged, ["vgg16-L10-h8-seed0"])
    assert isinstance(validate(judged, [TINY_KEY]), pd.DataFrame)


def test_clever_hans_rate_per_model_and_gamma(judged):
    from corpus_index.validation import clever_hans

    verdicts.record(judged.store, 1, 2, "different", "Cleo", model_key=TINY_KEY, gamma={0: 0.5}, wrong_reason=True)
    try:
        table = clever_hans(judged.store).set_index(["model", "gamma"])
        now = verdicts.current(judged.store)
        default = now[(now["model_key"] == TINY_KEY) & now["gamma"].isna()]
        assert table.loc[(TINY_KEY, '{"0":0.5}'), "clever_hans_rate"] == 1.0
        assert table.loc[(TINY_KEY, "model default"), "verdicts"] == len(default)
        rate = table.loc[(TINY_KEY, "model default"), "clever_hans_rate"]
        assert rate == pytest.approx(default["wrong_reason"].mean())
    finally:  # the module's other tests count this pair's latest verdict
        verdicts.record(judged.store, 1, 2, "related", "Cleo")
