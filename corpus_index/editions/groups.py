"""Groups of matching items — every printing of one table or woodcut — from the edges above the threshold.

Groups are the connected components of the match graph (networkx), or, to split chains of loosely linked items,
its Louvain communities weighted by score (networkx, fixed seed, so the same graph gives the same groups). Items
with no match are in no group. Each group's members are ordered by year (items without a year last), then book,
page and id, so its first member is the earliest printing.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd

METHODS = ("components", "communities")
# What the groups table tells about each member (the items' metadata columns, when present).
MEMBER_COLUMNS = ("id", "kind", "book", "year", "place", "printer", "title", "page", "label", "group")


def match_graph(edges: pd.DataFrame) -> nx.Graph:
    """The undirected graph of items joined by the edges ``item1, item2, score`` (edge attribute ``score``)."""
    graph = nx.Graph()
    graph.add_weighted_edges_from(zip(edges["item1"].astype(int), edges["item2"].astype(int),
                                      edges["score"].astype(float), strict=True), weight="score")
    return graph


def chronological(items: pd.DataFrame) -> pd.DataFrame:
    """``items`` ordered by year (missing years last), then book, page and id."""
    keys = [c for c in ("year", "book", "page", "id") if c in items.columns]
    return items.sort_values(keys, na_position="last", kind="stable")


def item_groups(edges: pd.DataFrame, items: pd.DataFrame, method: str = "components") -> pd.DataFrame:
    """The groups of matching items, one row per member.

    Parameters
    ----------
    edges : DataFrame
        ``item1, item2, score``: the matches (edges above the threshold).
    items : DataFrame
        The items' metadata (``id`` and e.g. ``year, book, place, printer, title``).
    method : {"components", "communities"}

    Returns
    -------
    DataFrame
        ``match_group`` (1 = largest group; ties by earliest year), ``size``, ``position`` (0 = earliest
        member) and the member's metadata (:data:`MEMBER_COLUMNS`; ``group`` is the metadata's own group
        column, e.g. the demo's ground truth).
    """
    if method not in METHODS:
        raise ValueError(f"unknown grouping method {method!r}; choose one of {', '.join(METHODS)}")
    graph = match_graph(edges)
    if method == "components":
        sets = list(nx.connected_components(graph))
    else:
        sets = nx.community.louvain_communities(graph, weight="score", seed=0) if len(graph) else []
    columns = [c for c in MEMBER_COLUMNS if c in items.columns]
    meta = items[columns].drop_duplicates("id")
    groups = []
    for members in sets:
        frame = chronological(meta[meta["id"].isin(members)]).reset_index(drop=True)
        known = set(frame["id"].tolist())
        unknown = pd.DataFrame({"id": sorted(set(members) - set(known))})  # items gone from the store since
        groups.append(pd.concat([frame, unknown], ignore_index=True) if len(unknown) else frame)
    groups.sort(key=lambda g: (-len(g), _first_year(g), int(g["id"].min())))
    frames = []
    for number, frame in enumerate(groups, start=1):
        frame.insert(0, "position", np.arange(len(frame)))
        frame.insert(0, "size", len(frame))
        frame.insert(0, "match_group", number)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["match_group", "size", "position", *columns])
    return pd.concat(frames, ignore_index=True)


def _first_year(group: pd.DataFrame) -> float:
    years = pd.to_numeric(group.get("year", pd.Series(dtype=float)), errors="coerce").dropna()
    return float(years.min()) if len(years) else float("inf")


def shared_relevance(pair_matrices) -> np.ndarray:
    """Where a group's printings agree, on its earliest member: the BiLRP relevance of the pairs (earliest,
    other) summed over the other page's patches, each pair's map divided by its total absolute relevance (so
    every printing counts alike, whatever its score), averaged over the pairs.

    Parameters
    ----------
    pair_matrices : sequence of ndarray (H1, W1, H2, W2)
        The explanations' pair matrices, the earliest member always first (same H1, W1: same patch size).

    Returns
    -------
    ndarray (H1, W1)
        Positive where the printings share what made them match, negative where they differ from it.
    """
    maps = []
    for matrix in pair_matrices:
        relevance = np.asarray(matrix, dtype=np.float64).sum(axis=(2, 3))
        maps.append(relevance / max(float(np.abs(relevance).sum()), 1e-12))
    if not maps:
        raise ValueError("shared regions need at least one explained pair")
    shapes = {m.shape for m in maps}
    if len(shapes) > 1:
        raise ValueError(f"the pairs' relevance maps differ in shape ({sorted(shapes)}): explain them with one patch "
                         "size")
    return np.mean(maps, axis=0)
