"""Validating similarity models against historians' verdicts: recall@k, mean rank, false friends, Clever Hans.

For each model, against the current verdicts on pairs of items whose content is still what was judged
(:func:`corpus_index.verdicts.current`):

* each pair takes the label of its most recent current verdict (reviewers who disagree: the latest word counts);
* the **rank** of a pair is where one item comes among the other's neighbours (:meth:`Corpus.search`, the query
  itself excluded), the better of the two directions — a copy found from either side is found;
* **recall@k**: the share of ``same`` and ``partial`` pairs ranked within k; pairs not among the first
  ``limit`` neighbours (or without features) count as missed and are left out of the **mean rank**
  (``unranked`` says how many);
* **false friends**: how many ``different`` pairs the model ranks within k;
* **Clever-Hans rate**: the share of the verdicts made while looking at this model's explanation that are
  flagged ``wrong_reason`` (the similarity rests on something other than the content). γ changes the
  explanation, not the ranking, so :func:`clever_hans` also gives the rate per model *and* γ schedule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from corpus_index.models import canonical_key
from corpus_index.progress import Progress
from corpus_index.verdicts import current

RANK_LIMIT = 1000  # neighbours searched per query item: ranks beyond are "unranked"
POSITIVE = ("same", "partial")
COLUMNS = ("model", "k", "same_partial_pairs", "found_at_k", "recall_at_k", "mean_rank", "unranked",
           "different_pairs", "false_friends", "verdicts_on_model", "wrong_reason", "clever_hans_rate")


def pair_labels(store) -> pd.DataFrame:
    """One row per judged pair ``item1, item2, label``: the label of the pair's most recent current verdict."""
    verdicts = current(store, include_stale=False).sort_values("id")
    latest = verdicts.groupby(["item1", "item2"], as_index=False).last()
    return latest[["item1", "item2", "label"]].reset_index(drop=True)


def _neighbour_ranks(corpus, model_key: str, item_id: int, limit: int) -> dict[int, int]:
    """Neighbour id -> rank (1 = nearest) of one query item; empty when the item has no features."""
    try:
        frame = corpus.search(model_key, item_id=int(item_id), k=limit)
    except KeyError:  # ItemNotFoundError: no stored features for this item under this model
        return {}
    return {int(i): int(r) for i, r in zip(frame["id"], frame["rank"], strict=True)}


def pair_ranks(corpus, model_key: str, pairs: pd.DataFrame, limit: int = RANK_LIMIT,
               progress: Progress | None = None) -> np.ndarray:
    """The rank of each pair (``item1``, ``item2``) under a model, NaN when beyond ``limit`` in both directions.

    One search per distinct item of the pairs.
    """
    limit = max(1, min(int(limit), corpus.count() - 1))
    queries = sorted(set(pairs["item1"]).union(pairs["item2"]))
    neighbours = {}
    for done, item in enumerate(queries, start=1):
        neighbours[int(item)] = _neighbour_ranks(corpus, model_key, int(item), limit)
        if progress is not None:
            progress(done, len(queries), f"{model_key}: neighbours of item {item}")
    ranks = []
    for a, b in pairs[["item1", "item2"]].itertuples(index=False):
        found = [r for r in (neighbours[int(a)].get(int(b)), neighbours[int(b)].get(int(a))) if r is not None]
        ranks.append(min(found) if found else np.nan)
    return np.asarray(ranks, dtype=np.float64)


def validate(corpus, model_keys, k: int = 10, limit: int = RANK_LIMIT,
             progress: Progress | None = None) -> pd.DataFrame:
    """The validation table, one row per model (see the module docstring for the columns' meaning).

    Parameters
    ----------
    corpus : corpus_index.corpus.Corpus
    model_keys : sequence of str
        Models to compare; each needs a built index.
    k : int
        The neighbourhood size of recall@k and false friends.
    limit : int
        How many neighbours are searched per item for ranks.
    """
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    keys = [canonical_key(key) for key in model_keys]
    if not keys:
        raise ValueError("validate: name at least one model")
    for key in keys:
        corpus.index(key)  # a model without an index fails here, before any search
    pairs = pair_labels(corpus.store)
    verdicts = current(corpus.store, include_stale=False)
    shown_keys = [None if key is None or pd.isna(key) else _canonical_or_none(key) for key in verdicts["model_key"]]
    rows = []
    for key in keys:
        ranks = pair_ranks(corpus, key, pairs, limit, progress) if len(pairs) else np.zeros(0)
        positive = pairs["label"].isin(POSITIVE).to_numpy()
        different = (pairs["label"] == "different").to_numpy()
        found = int(np.sum(ranks[positive] <= k))
        ranked = ranks[positive][~np.isnan(ranks[positive])]
        on_model = verdicts[[shown == key for shown in shown_keys]]
        flagged = int(on_model["wrong_reason"].sum())
        rows.append({
            "model": key, "k": int(k), "same_partial_pairs": int(positive.sum()), "found_at_k": found,
            "recall_at_k": found / positive.sum() if positive.any() else np.nan,
            "mean_rank": float(ranked.mean()) if len(ranked) else np.nan,
            "unranked": int(positive.sum() - len(ranked)), "different_pairs": int(different.sum()),
            "false_friends": int(np.sum(ranks[different] <= k)), "verdicts_on_model": len(on_model),
            "wrong_reason": flagged, "clever_hans_rate": flagged / len(on_model) if len(on_model) else np.nan,
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _canonical_or_none(key: str) -> str | None:
    """A stored verdict's model key in canonical form (a key this code no longer knows stays as it is)."""
    try:
        return canonical_key(key)
    except (KeyError, ValueError):
        return key


def clever_hans(store) -> pd.DataFrame:
    """The Clever-Hans rate per model and γ schedule: ``model, gamma, verdicts, wrong_reason, clever_hans_rate``
    over the current verdicts recorded with a model (γ as the canonical JSON text stored with them)."""
    verdicts = current(store, include_stale=False)
    verdicts = verdicts[verdicts["model_key"].notna()]
    columns = ["model", "gamma", "verdicts", "wrong_reason", "clever_hans_rate"]
    if verdicts.empty:
        return pd.DataFrame(columns=columns)
    table = (verdicts.assign(model=[_canonical_or_none(k) for k in verdicts["model_key"]],
                             gamma=verdicts["gamma"].fillna("model default"))
             .groupby(["model", "gamma"], as_index=False)
             .agg(verdicts=("id", "size"), wrong_reason=("wrong_reason", "sum")))
    table["clever_hans_rate"] = table["wrong_reason"] / table["verdicts"]
    return table[columns]
