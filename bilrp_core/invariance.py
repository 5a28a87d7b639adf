"""The invariance measure of Eq. (7): Inv = <y(x, x')>_local / <y(x, x')>_global (Sec. 5.2 of the paper).

The paper's local pairs are nearby frames of the same video; in a corpus of printed books they are the same
page in different editions (transformed versions of each other: reset type, re-cut or mirrored woodcuts),
i.e. items sharing a ``group``. The global average runs over all pairs of distinct items, from any group.
A model invariant to the transformations *and* selective scores high: transformed versions are more similar to
each other than pages are on average.
"""

from __future__ import annotations

import numpy as np

__all__ = ["invariance", "local_band_mask", "local_pairs", "similarity_matrix"]


def similarity_matrix(features) -> np.ndarray:
    """y(x_i, x_j) = <φ(x_i), φ(x_j)> for all pairs: features (n, h) -> (n, n)."""
    phi = np.asarray(features, dtype=np.float64)
    if phi.ndim != 2:
        raise ValueError(f"features must be a 2-D array (items, h); got shape {phi.shape}")
    return phi @ phi.T


def local_band_mask(groups, width=None) -> np.ndarray:
    """Which pairs (i, j) are local: same group, i ≠ j (and |i - j| ≤ width if given).

    Parameters
    ----------
    groups : sequence
        Group label of each item (items of one group are transformed versions of each other). Missing labels
        (None or NaN) make an item local to no other.
    width : int, optional
        Band half-width in item order, as the paper's Δt ≤ 5 for frames of one video.

    Returns
    -------
    ndarray (n, n) bool
        Symmetric, False on the diagonal. Ordering the items by group makes it a band of blocks.
    """
    labels = np.asarray([None if _missing(g) else g for g in groups], dtype=object)
    known = np.array([g is not None for g in labels])
    mask = (labels[:, None] == labels[None, :]) & known[:, None] & known[None, :]
    np.fill_diagonal(mask, False)
    if width is not None:
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width!r}")
        index = np.arange(len(labels))
        mask &= np.abs(index[:, None] - index[None, :]) <= width
    return mask


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def invariance(features, groups, width=None, similarity=None) -> float:
    """Inv of Eq. (7): mean similarity over local pairs / mean similarity over all pairs of distinct items.

    Parameters
    ----------
    features : array (n, h) or None
        φ of each item (ignored when ``similarity`` is given).
    groups : sequence
        Group label of each item (see :func:`local_band_mask`).
    width : int, optional
        Band half-width (see :func:`local_band_mask`).
    similarity : array (n, n), optional
        A precomputed similarity matrix.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If no two items share a group (no local pairs) or the global mean is not positive, where the ratio
        would mean nothing.
    """
    sim = similarity_matrix(features) if similarity is None else np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square matrix; got shape {sim.shape}")
    if len(groups) != sim.shape[0]:
        raise ValueError(f"groups has {len(groups)} labels but there are {sim.shape[0]} items")
    local = local_band_mask(groups, width)
    if not local.any():
        raise ValueError("no two items share a group: Inv needs local pairs (transformed versions of a page)")
    distinct = ~np.eye(sim.shape[0], dtype=bool)
    global_mean = sim[distinct].mean()
    if not global_mean > 0:
        raise ValueError(f"the mean similarity over all pairs is {global_mean:.4g}; Inv needs it positive")
    return float(sim[local].mean() / global_mean)


def local_pairs(similarity, groups, width=None, n=None) -> list[tuple[int, int, float, float]]:
    """The local pairs (i < j) ranked by their contribution to <y>_local, strongest first.

    Returns
    -------
    list of (i, j, similarity, share)
        ``share`` is the pair's part of the local sum (the decomposition step (i) of Sec. 5.2).
    """
    sim = np.asarray(similarity, dtype=np.float64)
    mask = np.triu(local_band_mask(groups, width), k=1)
    rows, cols = np.nonzero(mask)
    values = sim[rows, cols]
    order = np.argsort(-values, kind="stable")[:n]
    total = values.sum()
    return [(int(rows[k]), int(cols[k]), float(values[k]), float(values[k] / total) if total else float("nan"))
            for k in order]
