"""Historians' verdicts on pairs of items: recorded with who, when and what was shown; history kept; groups.

A verdict says of two items that they are the ``same`` table or illustration (another printing), share a
``partial`` part, are ``related`` (same subject, another source) or ``different``; it may be flagged
``wrong_reason`` — the model's similarity rests on something other than the content (a page frame, rules,
headings: a Clever Hans) — with the ranks of the explanation's region pairs the reviewer points at. It records
what the reviewer was shown (model key, γ schedule, patch size, score) and :func:`params_hash` of these.

Rows live in the store's ``verdicts`` table (schema version 4, :mod:`corpus_index.storage.store_migrations`),
which no rebuild touches. A pair is stored with ``item1 < item2``, with both items' content tags
(:func:`~corpus_index.storage.integrity.content_tag`), so a verdict about a scan that was later replaced (or an
id reused after a re-ingest) is recognised as being about other pictures (``stale``) and left out of groups and
validation. A new verdict by the same reviewer on the same pair supersedes the older row (``superseded_by``),
which stays: the history is never lost. Several reviewers may judge the same pair.

Groups of copies: current ``same`` verdicts link items; the groups are the connected components of those links
(transitively: a ~ b and b ~ c puts a, b, c in one group). A pair on which some reviewer's current verdict is
``different`` links nothing: a contested pair does not merge two groups.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from corpus_index.errors import ItemNotFoundError

LABELS = ("same", "partial", "related", "different")
LABEL_HELP = {"same": "the same table or illustration, another printing", "partial": "shares a part",
              "related": "the same subject, a different source", "different": "not related"}
COLUMNS = ("id", "item1", "item2", "hash1", "hash2", "label", "wrong_reason", "regions", "note", "reviewer",
           "model_key", "gamma", "pool", "score", "params_hash", "created_at", "superseded_by")
ITEM_METADATA = ("book", "title", "year", "page", "source")  # of both items, in every CSV export


def canonical_gamma(gamma) -> str | None:
    """The γ choice as canonical JSON text: a number, or ``{"layer": γ}`` sorted by layer; None stays None."""
    if gamma is None:
        return None
    if isinstance(gamma, str):
        gamma = json.loads(gamma)
    if isinstance(gamma, dict):
        return json.dumps({str(int(k)): float(v) for k, v in sorted(gamma.items(), key=lambda kv: int(kv[0]))},
                          separators=(",", ":"))
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise ValueError(f"gamma must be a number or {{layer index: gamma}}, not {gamma!r}")
    return json.dumps(float(gamma))


def params_hash(model_key: str | None, gamma=None, pool: int | None = None) -> str:
    """SHA-256 (hex) of the canonical JSON of what a verdict was made under: model key, γ schedule, patch size.

    Two verdicts with the same hash were made looking at the same explanation parameters (AIKON keeps such a
    hash too), whatever the order of the γ layers or the form (string or dict) they were given in.
    """
    gamma_text = canonical_gamma(gamma)
    shown = {"model_key": model_key, "gamma": None if gamma_text is None else json.loads(gamma_text),
             "pool": None if pool is None else int(pool)}
    return hashlib.sha256(json.dumps(shown, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check(label: str, reviewer: str, item1: int, item2: int, regions) -> list[int]:
    if label not in LABELS:
        raise ValueError(f"label {label!r} is not one of {', '.join(LABELS)}")
    if not str(reviewer or "").strip():
        raise ValueError("reviewer: a verdict needs the reviewer's name")
    if int(item1) == int(item2):
        raise ValueError(f"a verdict is about two different items, got item {item1} twice")
    ranks = []
    for rank in regions or ():
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or int(rank) < 1:
            raise ValueError(f"regions: {rank!r} is not the rank (1, 2, …) of a region pair of the explanation")
        ranks.append(int(rank))
    return sorted(set(ranks))


def _tags(store, item1: int, item2: int) -> dict[int, str]:
    tags = store.content_tags([item1, item2])
    for item in (item1, item2):
        if item not in tags:
            raise ItemNotFoundError(f"no item with id {item} in the corpus at {store.root}")
    return tags


def record(store, item1: int, item2: int, label: str, reviewer: str, wrong_reason: bool = False, regions=(),
           note: str = "", model_key: str | None = None, gamma=None, pool: int | None = None,
           score: float | None = None, created_at: str | None = None) -> int:
    """Record a verdict on the pair (item1, item2) (either order); returns the new verdict's id.

    The reviewer's previous current verdict on the pair, if any, is superseded by the new one (kept as history).

    Raises
    ------
    ItemNotFoundError
        If an id names no item.
    ValueError
        For an unknown label, an empty reviewer name, a pair of one item, or region ranks that are not 1, 2, ….
    """
    item1, item2 = sorted((int(item1), int(item2)))
    ranks = _check(label, reviewer, item1, item2, regions)
    tags = _tags(store, item1, item2)
    reviewer = str(reviewer).strip()
    values = (item1, item2, tags[item1], tags[item2], label, int(bool(wrong_reason)), json.dumps(ranks),
              str(note or ""), reviewer, model_key, canonical_gamma(gamma), None if pool is None else int(pool),
              None if score is None else float(score),
              params_hash(model_key, gamma, pool) if model_key is not None else None,
              created_at or datetime.now(UTC).isoformat(timespec="seconds"))
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO verdicts (item1, item2, hash1, hash2, label, wrong_reason, regions, note, reviewer,"
            " model_key, gamma, pool, score, params_hash, created_at) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        new_id = int(cursor.lastrowid)
        conn.execute("UPDATE verdicts SET superseded_by = ? WHERE item1 = ? AND item2 = ? AND reviewer = ?"
                     " AND superseded_by IS NULL AND id != ?", (new_id, item1, item2, reviewer, new_id))
    return new_id


def history(store, item1: int | None = None, item2: int | None = None, current_only: bool = False) -> pd.DataFrame:
    """Verdicts, oldest first: all of them, or those on one pair (either order), optionally only current ones.

    Columns are :data:`COLUMNS` and ``stale`` (True when an item's content is no longer what was judged, or the
    item is gone); ``regions`` is a list of ranks, ``wrong_reason`` a bool.
    """
    sql = ("SELECT v.*, (a.id IS NULL OR b.id IS NULL OR v.hash1 != (a.hash || IFNULL('@' || a.region, ''))"
           " OR v.hash2 != (b.hash || IFNULL('@' || b.region, ''))) AS stale FROM verdicts v"
           " LEFT JOIN items a ON a.id = v.item1 LEFT JOIN items b ON b.id = v.item2")
    where, params = [], []
    if item1 is not None and item2 is not None:
        where.append("v.item1 = ? AND v.item2 = ?")
        params += sorted((int(item1), int(item2)))
    if current_only:
        where.append("v.superseded_by IS NULL")
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = store.query(sql + " ORDER BY v.id", params)
    frame = pd.DataFrame([tuple(r) for r in rows], columns=[*COLUMNS, "stale"])
    frame["regions"] = [json.loads(text) for text in frame["regions"]]
    for name in ("wrong_reason", "stale"):
        frame[name] = frame[name].astype(bool)
    for name in ("pool", "superseded_by"):
        frame[name] = frame[name].astype("Int64")
    frame["score"] = frame["score"].astype("float64")
    return frame


def current(store, label: str | None = None, reviewer: str | None = None, model_key: str | None = None,
            include_stale: bool = True) -> pd.DataFrame:
    """Current (not superseded) verdicts, with the filters given, as :func:`history` returns them."""
    frame = history(store, current_only=True)
    if label:
        frame = frame[frame["label"] == label]
    if reviewer:
        frame = frame[frame["reviewer"] == reviewer]
    if model_key:
        frame = frame[frame["model_key"] == model_key]
    if not include_stale:
        frame = frame[~frame["stale"]]
    return frame.reset_index(drop=True)


def with_items(store, frame: pd.DataFrame, columns=("item1", "item2")) -> pd.DataFrame:
    """``frame`` with :data:`ITEM_METADATA` of the items in ``columns`` joined as ``book1, title1, …``."""
    ids = sorted({int(i) for column in columns for i in frame[column]})
    meta = store.query_items(ids=ids).set_index("id") if ids else pd.DataFrame(columns=list(ITEM_METADATA))
    result = frame.copy()
    for number, column in enumerate(columns, start=1):
        for name in ITEM_METADATA:
            values = meta[name] if name in meta.columns else pd.Series(dtype=object)
            result[f"{name}{number}"] = [values.get(int(i)) for i in frame[column]]
            if name in ("year", "page"):
                result[f"{name}{number}"] = result[f"{name}{number}"].astype("Int64")
    return result


def export_table(store, include_history: bool = False) -> pd.DataFrame:
    """Verdicts (current ones, or all with ``include_history``) with both items' metadata and the parameters,
    as written by ``verdicts --csv``; ``regions`` as JSON text so the CSV reads back unchanged."""
    frame = history(store, current_only=not include_history)
    frame["regions"] = [json.dumps(ranks) for ranks in frame["regions"]]
    return with_items(store, frame)


def groups(store) -> pd.DataFrame:
    """Groups of copies: the connected components of current ``same`` verdicts (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        One row per member: ``group`` (1 = the largest group), ``size``, ``id`` and ``hash`` of the item, then
        :data:`ITEM_METADATA`; ordered by group, then by year and id. Empty without ``same`` verdicts.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    verdicts = current(store, include_stale=False)
    contested = set(map(tuple, verdicts.loc[verdicts["label"] == "different", ["item1", "item2"]].to_numpy()))
    same = verdicts[verdicts["label"] == "same"]
    links = [(int(a), int(b)) for a, b in same[["item1", "item2"]].to_numpy() if (a, b) not in contested]
    columns = ["group", "size", "id", "hash", *ITEM_METADATA]
    if not links:
        return pd.DataFrame(columns=columns)
    nodes = sorted({i for link in links for i in link})
    index = {item: n for n, item in enumerate(nodes)}
    rows = np.array([index[a] for a, _ in links])
    cols = np.array([index[b] for _, b in links])
    graph = coo_matrix((np.ones(len(links)), (rows, cols)), shape=(len(nodes), len(nodes)))
    _, component = connected_components(graph, directed=False)
    members = pd.DataFrame({"id": nodes, "component": component})
    sizes = members["component"].map(members["component"].value_counts())
    members["size"] = sizes
    # Largest group first; among equal sizes the one holding the smallest id first, so numbering is stable.
    order = members.groupby("component").agg(size=("size", "first"), first=("id", "min"))
    order = order.sort_values(["size", "first"], ascending=[False, True])
    members["group"] = members["component"].map({c: n for n, c in enumerate(order.index, start=1)})
    meta = store.query_items(ids=nodes)
    members = members.merge(meta[["id", "hash", *ITEM_METADATA]], on="id", how="left")
    members = members.sort_values(["group", "year", "id"], na_position="last")
    return members[columns].reset_index(drop=True)
