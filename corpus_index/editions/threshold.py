"""The match threshold of a model and kind of item: the score from which a pair counts as "the same table".

Three sources, in order of precedence:

``given``
    A threshold the user set (command line ``--threshold``, the page's slider).
``verdicts``
    Historians' current verdicts (table ``verdicts``, rows with ``superseded_by IS NULL``) on pairs of this kind:
    the score that best separates the pairs judged ``same`` from those judged ``different`` — the cut with the
    highest balanced accuracy (mean of the share of ``same`` pairs above it and of ``different`` pairs below
    it), placed midway between two neighbouring scores. Needs at least one verdict of each label.
``distribution``
    Otherwise: the score above which a pair lies in the top :data:`TOP_SHARE` (0.5 %) of all pairs of items of
    this kind. Estimated as that quantile of the scores of :data:`SAMPLE_PAIRS` pairs drawn uniformly at random
    (with replacement) from all pairs of two different items of the kind, or of every pair when there are fewer.
    With 200,000 pairs the top 0.5 % holds ~1,000 sampled pairs, so the estimate's rank error is about ±3 %
    of that tail (binomial standard deviation √1000 ≈ 32 pairs).

Scores are ``<φ(x), φ(x')>`` from the stored features (for rotation-max models the max over the flips and
rotations of both items), the scores the index and the kNN graph give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corpus_index.models import canonical_key, key_transform_count

TOP_SHARE = 0.005
SAMPLE_PAIRS = 200_000
SOURCES = ("given", "verdicts", "distribution")


@dataclass(frozen=True)
class Threshold:
    """A match threshold and what it means.

    Attributes
    ----------
    value : float
        Pairs with ``score >= value`` match.
    source : {"given", "verdicts", "distribution"}
    meaning : str
        One sentence saying where the value comes from, for captions and reports.
    """

    value: float
    source: str
    meaning: str


def pair_scores(vectors1: np.ndarray, vectors2: np.ndarray, group: int = 1) -> np.ndarray:
    """``<φ(x), φ(x')>`` of row-aligned pairs; with ``group`` vectors per item the max over both items' vectors."""
    first = np.asarray(vectors1, dtype=np.float64).reshape(len(vectors1), group, -1)
    second = np.asarray(vectors2, dtype=np.float64).reshape(len(vectors2), group, -1)
    return np.einsum("nah,nbh->nab", first, second).reshape(len(first), -1).max(axis=1)


def _pair_sample(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j), i != j`` of ``count`` items: all of them when there are at most ``size``, else
    ``size`` drawn uniformly (with replacement) from all unordered pairs."""
    total = count * (count - 1) // 2
    if total <= size:
        first, second = np.triu_indices(count, k=1)
        return first, second
    first = rng.integers(0, count, size)
    second = rng.integers(0, count - 1, size)
    second = second + (second >= first)  # uniform over the other items
    return first, second


def distribution_threshold(vectors: np.ndarray, group: int = 1, top_share: float = TOP_SHARE,
                           sample: int = SAMPLE_PAIRS, seed: int = 0) -> float:
    """The score above which a pair of these items lies in the top ``top_share`` of all their pairs (estimated
    from a uniform sample of ``sample`` pairs, exact for fewer pairs).

    Raises
    ------
    ValueError
        For fewer than two items.
    """
    if len(vectors) < 2:
        raise ValueError(f"a threshold from the score distribution needs at least two items, got {len(vectors)}")
    first, second = _pair_sample(len(vectors), sample, np.random.default_rng(seed))
    scores = np.concatenate([pair_scores(vectors[first[s:s + 20_000]], vectors[second[s:s + 20_000]], group)
                             for s in range(0, len(first), 20_000)])
    return float(np.quantile(scores, 1.0 - top_share))


def separating_threshold(same: np.ndarray, different: np.ndarray) -> float:
    """The score that best separates ``same`` scores (above) from ``different`` scores (below).

    Cuts lie midway between neighbouring distinct scores (and just outside the range); the one with the highest
    balanced accuracy wins, ties going to the middle one of the best cuts.
    """
    same, different = np.asarray(same, dtype=np.float64), np.asarray(different, dtype=np.float64)
    if not len(same) or not len(different):
        raise ValueError("separating same from different needs at least one verdict of each")
    values = np.unique(np.concatenate([same, different]))
    spread = max(float(values[-1] - values[0]), 1e-12)
    cuts = np.concatenate([[values[0] - 0.01 * spread], (values[:-1] + values[1:]) / 2, [values[-1] + 0.01 * spread]])
    same_above = (same[None, :] >= cuts[:, None]).mean(axis=1)
    different_below = (different[None, :] < cuts[:, None]).mean(axis=1)
    balanced = (same_above + different_below) / 2
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)
    return float(cuts[best[len(best) // 2]])


def current_verdicts(store, kind: str | None = None) -> list[tuple[int, int, str]]:
    """Current ``same`` and ``different`` verdicts ``(item1, item2, label)`` on pairs of existing items of
    ``kind`` (both items; any kind when None), read straight from the ``verdicts`` table.

    A verdict whose recorded content hash is no longer its item's (a replaced scan, an id reused after a
    re-ingest) is about other pictures and left out.
    """
    tables = {row[0] for row in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "verdicts" not in tables:
        return []
    sql = ("SELECT v.item1, v.item2, v.label FROM verdicts v JOIN items a ON a.id = v.item1"
           " JOIN items b ON b.id = v.item2 WHERE v.superseded_by IS NULL AND v.label IN ('same', 'different')"
           " AND v.hash1 IN (a.hash, a.hash || '@' || IFNULL(a.region, ''))"
           " AND v.hash2 IN (b.hash, b.hash || '@' || IFNULL(b.region, ''))")
    params: list = []
    if kind is not None:
        sql += " AND a.kind = ? AND b.kind = ?"
        params += [kind, kind]
    return [(int(r[0]), int(r[1]), str(r[2])) for r in store.query(sql + " ORDER BY v.id", params)]


def match_threshold(corpus, model_key: str, kind: str | None = None, given: float | None = None,
                    top_share: float = TOP_SHARE, sample: int = SAMPLE_PAIRS) -> Threshold:
    """The match threshold of a model and kind: ``given``, else from verdicts, else from the score distribution
    (see the module docstring).

    Raises
    ------
    ValueError
        When no threshold can be set (no verdicts and fewer than two items with features).
    """
    key = canonical_key(model_key)
    what = f"{kind} items" if kind else "items"
    if given is not None:
        if not np.isfinite(given):
            raise ValueError(f"--threshold must be a finite number, got {given}")
        return Threshold(float(given), "given", f"pairs of {what} with a score of at least {given:.4g} match (set "
                                                "by hand)")
    group = key_transform_count(key)
    verdicts = current_verdicts(corpus.store, kind)
    if verdicts:
        ids = sorted({i for pair in verdicts for i in pair[:2]})
        found_ids, vectors = corpus.stored_vectors(key, ids)
        row = {int(i): n for n, i in enumerate(found_ids.tolist())}
        usable = [(a, b, label) for a, b, label in verdicts if a in row and b in row]
        labels = np.asarray([label for _, _, label in usable])
        if {"same", "different"} <= set(labels.tolist()):
            scores = pair_scores(vectors[[row[a] for a, _, _ in usable]], vectors[[row[b] for _, b, _ in usable]],
                                 group)
            value = separating_threshold(scores[labels == "same"], scores[labels == "different"])
            same, different = int((labels == "same").sum()), int((labels == "different").sum())
            return Threshold(value, "verdicts", f"the score {value:.4g} best separates the {same} pairs of {what} "
                             f"judged 'same' from the {different} judged 'different'")
    ids = corpus.store.filtered_ids(kind=kind)
    _, vectors = corpus.stored_vectors(key, None if ids is None else ids.tolist())
    value = distribution_threshold(vectors, group, top_share, sample)
    count = len(vectors) * (len(vectors) - 1) // 2
    estimate = "of all" if count <= sample else f"estimated from {sample:,} random pairs among the"
    return Threshold(value, "distribution", f"a score of {value:.4g} puts a pair in the top {top_share:.1%} {estimate}"
                     f" {count:,} pairs of {what} (no verdicts separate 'same' from 'different' yet)")
