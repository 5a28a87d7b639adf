"""What a similarity score means in this corpus: its percentile among pairs of the same kind, the query's best
pair in its own book or group, a clear gap in a ranked list, and the mark of an untrained network.

A score ⟨φ(x), φ(x')⟩ = 0.87 says nothing by itself: its scale depends on the model, the layer and h. Compared
with the scores of every other pair of the same kind under the same model it does ("higher than 99.3 % of table
pairs"). No Streamlit here: the explorer and the command line share it.

Pair scores
-----------
:func:`pair_scores` scores the pairs of distinct items with stored vectors (:meth:`Corpus.stored_vectors`):
all pairs when there are at most :data:`MAX_PAIRS`, otherwise a fixed random sample of :data:`MAX_PAIRS` pairs
(seed 0, so the same corpus always gives the same percentiles). Rotation-max models score a pair as the best of
its 8 × 8 flips/rotations, as their search does. The sorted scores are cached per corpus root, model and data
version (the feature files, the number of items and the last metadata edit: a changed kind regroups the pairs).

The clear-gap rule
------------------
In a ranked list s₁ ≥ s₂ ≥ … ≥ sₙ the drops are dᵢ = sᵢ − sᵢ₊₁. The largest drop d* is a *clear gap* when it
is at least :data:`GAP_FACTOR` times the median of the other drops and at least :data:`GAP_SHARE` of the whole
range s₁ − sₙ: ten reprints at 0.95–0.99 followed by 0.87, 0.86 … give one; evenly falling scores do not. Lists of
fewer than three scores have no gap.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from corpus_index.metadata_edit import last_edit
from corpus_index.models import UNTRAINED_MARK, is_untrained, key_transform_count

if TYPE_CHECKING:
    from corpus_index.corpus import Corpus

MAX_PAIRS = 200_000  # pairs scored per model and kind: all of them up to here, a fixed sample beyond
GAP_FACTOR = 3.0
GAP_SHARE = 0.25
_CHUNK = 20_000  # pairs scored at once (rotation-max: 64 products each)
_CACHE: OrderedDict[tuple, dict] = OrderedDict()
_CACHE_SIZE = 8


def _version(corpus: Corpus, model_key: str) -> tuple:
    """What the cached pair scores depend on: the feature files, the items, the last metadata edit."""
    files = corpus.features(model_key).batch_files()
    stamps = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return str(corpus.root), model_key, stamps, corpus.count(), last_edit(corpus.store)


def _scores(vectors: np.ndarray, first: np.ndarray, second: np.ndarray, group: int) -> np.ndarray:
    """Scores of the pairs (first[i], second[i]) of rows of ``vectors`` (n, group·h): the best of group × group."""
    out = np.empty(len(first), dtype=np.float64)
    shaped = vectors.reshape(len(vectors), group, -1).astype(np.float64)
    for start in range(0, len(first), _CHUNK):
        a, b = shaped[first[start:start + _CHUNK]], shaped[second[start:start + _CHUNK]]
        out[start:start + _CHUNK] = np.einsum("pth,puh->ptu", a, b).reshape(len(a), -1).max(axis=1)
    return out


def _pairs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """All pairs i < j of n items, or :data:`MAX_PAIRS` random pairs of distinct items when there are more."""
    if n * (n - 1) // 2 <= MAX_PAIRS:
        return np.triu_indices(n, k=1)
    first = rng.integers(0, n, MAX_PAIRS)
    second = (first + rng.integers(1, n, MAX_PAIRS)) % n  # never the item itself
    return first, second


def _all_pair_scores(corpus: Corpus, model_key: str) -> dict:
    ids, vectors = corpus.stored_vectors(model_key)
    if len(ids) < 2:  # e.g. a model explained on the fly, never built: no pairs to compare with
        return {}
    kinds = corpus.items(ids=ids.tolist()).set_index("id")["kind"] if len(ids) else pd.Series(dtype=object)
    item_kinds = np.asarray([kinds.get(int(i)) for i in ids], dtype=object)
    group = key_transform_count(model_key)
    result: dict = {}
    for kind in [None, *sorted({k for k in item_kinds if isinstance(k, str)})]:
        members = np.arange(len(ids)) if kind is None else np.flatnonzero(item_kinds == kind)
        first, second = _pairs(len(members), np.random.default_rng(0))
        result[kind] = np.sort(_scores(vectors, members[first], members[second], group))
    return result


def pair_scores(corpus: Corpus, model_key: str, kind: str | None = None) -> np.ndarray:
    """Sorted scores of the pairs of distinct items of ``kind`` (None: of any kinds) under a model (see the module
    docstring); empty when fewer than two such items have stored vectors."""
    version = _version(corpus, model_key)
    if version not in _CACHE:
        _CACHE[version] = _all_pair_scores(corpus, model_key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(version)
    return _CACHE[version].get(kind, np.empty(0))


def percentile(corpus: Corpus, model_key: str, score: float, kind: str | None) -> float:
    """The percentage of the pairs of ``kind`` (None or an unknown kind: all pairs) that score *lower* than
    ``score`` under ``model_key``; NaN when the corpus has no such pairs with stored vectors."""
    return float(percentiles(corpus, model_key, [score], kind)[0])


def percentiles(corpus: Corpus, model_key: str, scores: Sequence[float], kind: str | None) -> np.ndarray:
    """:func:`percentile` of several scores at once (the pair scores are looked up once: a page of neighbours)."""
    values = np.asarray(list(scores), dtype=np.float64)
    pairs = pair_scores(corpus, model_key, kind)
    if kind is not None and len(pairs) == 0:
        pairs = pair_scores(corpus, model_key, None)
    if len(pairs) == 0:
        return np.full(len(values), math.nan)
    found = 100.0 * np.searchsorted(pairs, values, side="left") / len(pairs)
    return np.where(np.isfinite(values), found, math.nan)


def percentile_text(value: float, kind: str | None) -> str:
    """``"higher than 99.3 % of table pairs"`` (one decimal; "all pairs" without a kind; "" for NaN)."""
    if not math.isfinite(value):
        return ""
    what = f"{kind} pairs" if kind else "pairs"
    return f"higher than {value:.1f} % of {what}"


def best_related(corpus: Corpus, model_key: str, item_id: int) -> list[tuple[str, int, float]]:
    """The query's best pair within its own book and within its own group (copies of one table), where the
    metadata names them: ``(relation, item id, score)`` with relation ``"same book"`` or ``"same group"``."""
    item = corpus.item(item_id)
    query = corpus.query_vector(model_key, item_id=int(item_id))
    group = key_transform_count(model_key)
    found = []
    for relation, column in (("same book", "book"), ("same group", "group")):
        value = item.get(column)
        if not value:
            continue
        members = [int(i) for i in corpus.items(**{column: value})["id"] if int(i) != int(item_id)]
        ids, vectors = corpus.stored_vectors(model_key, members) if members else (np.empty(0), None)
        if len(ids) == 0:
            continue
        stacked = np.vstack([query[None, :], vectors])
        scores = _scores(stacked, np.zeros(len(ids), dtype=np.int64), np.arange(1, len(ids) + 1), group)
        best = int(np.argmax(scores))
        found.append((relation, int(ids[best]), float(scores[best])))
    return found


def related_text(corpus: Corpus, model_key: str, item_id: int, kind: str | None) -> str:
    """One sentence with the query's best same-book and same-group pairs and their percentiles (:func:`best_related`);
    "" when the metadata names neither."""
    parts = []
    for relation, other, score in best_related(corpus, model_key, item_id):
        share = percentile_text(percentile(corpus, model_key, score, kind), kind)
        parts.append(f"in its {relation.removeprefix('same ')}: #{other}, score {score:.4g}"
                     + (f" ({share})" if share else ""))
    return ("For comparison, the query's best pair " + "; ".join(parts) + ".") if parts else ""


def clear_gap(scores: Sequence[float]) -> int | None:
    """How many of the ranked ``scores`` (highest first) stand above a clear gap (rule: module docstring); None
    when there is none."""
    values = np.asarray(list(scores), dtype=np.float64)
    if len(values) < 3 or not np.isfinite(values).all():
        return None
    drops = values[:-1] - values[1:]
    spread = values[0] - values[-1]
    largest = int(np.argmax(drops))
    others = np.delete(drops, largest)
    if spread <= 0 or drops[largest] < GAP_SHARE * spread or drops[largest] < GAP_FACTOR * np.median(others):
        return None
    return largest + 1


def untrained_note(model_key: str) -> str | None:
    """``"<key>: untrained network — not meaningful for research"`` for an untrained model, else None."""
    return f"{model_key}: {UNTRAINED_MARK}" if is_untrained(model_key) else None


def with_untrained_mark(frame: pd.DataFrame, model_key: str) -> pd.DataFrame:
    """``frame`` with a first column ``warning`` holding :data:`UNTRAINED_MARK` when the model is untrained (so a
    CSV of its scores cannot travel without it); unchanged otherwise."""
    if not is_untrained(model_key):
        return frame
    marked = frame.copy()
    marked.insert(0, "warning", UNTRAINED_MARK)
    return marked


__all__ = ["GAP_FACTOR", "GAP_SHARE", "MAX_PAIRS", "best_related", "clear_gap", "pair_scores", "percentile",
           "percentiles", "percentile_text", "related_text", "untrained_note", "with_untrained_mark"]
