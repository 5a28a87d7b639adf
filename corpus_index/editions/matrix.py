"""From matching items to editions: the edition × edition matrix and the edges of the network of editions.

Two books (editions) share an item pair when an item of one matches an item of the other (an edge above the
threshold). Pairs within one book (a table printed twice in the same edition) are not reprints and are left out
of the matrix and the network; they stay in the item edges. Books are ordered by year (books without a year
last), then place, then book id.
"""

from __future__ import annotations

import pandas as pd

BOOK_FIELDS = ("title", "printer", "place", "year")
# The metadata of each side of an item pair, as columns ``<name>1`` and ``<name>2``.
PAIR_FIELDS = ("kind", "book", "title", "printer", "place", "year", "page", "label", "group")


def book_order(books: pd.DataFrame) -> pd.DataFrame:
    """``books`` (``book, title, printer, place, year, ...``) ordered by year (missing last), place, book."""
    return books.sort_values(["year", "place", "book"], na_position="last", kind="stable").reset_index(drop=True)


def described_edges(edges: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The item edges ``item1, item2, score`` with both items' metadata (``book1``, ``book2``, ``year1`` ...)."""
    fields = [f for f in PAIR_FIELDS if f in items.columns]
    meta = items[["id", *fields]].drop_duplicates("id")
    frame = edges[["item1", "item2", "score"]].copy()
    for side in ("1", "2"):
        renamed = meta.rename(columns={"id": f"item{side}", **{f: f"{f}{side}" for f in fields}})
        frame = frame.merge(renamed, on=f"item{side}", how="left")
    return frame


def between_books(described: pd.DataFrame) -> pd.DataFrame:
    """The described edges joining two different books, sides exchanged where needed so that ``book1 < book2``
    (by id): each pair of books has one spelling."""
    known = described.dropna(subset=["book1", "book2"])
    cross = known[known["book1"].astype(str) != known["book2"].astype(str)]
    swap = cross["book1"].astype(str) > cross["book2"].astype(str)
    return pd.concat([cross[~swap], swapped(cross[swap])], ignore_index=True)


def book_edges(described: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of books sharing items: ``book1, book2, shared`` (matching item pairs), ``best_score``."""
    cross = between_books(described)
    if cross.empty:
        return pd.DataFrame(columns=["book1", "book2", "shared", "best_score"])
    grouped = cross.groupby(["book1", "book2"], as_index=False).agg(shared=("score", "size"),
                                                                   best_score=("score", "max"))
    return grouped.sort_values(["shared", "best_score"], ascending=False, ignore_index=True)


def pairs_between(described: pd.DataFrame, book1: str, book2: str) -> pd.DataFrame:
    """The matching item pairs of two books, best first, with the item of ``book1`` as ``item1``."""
    cross = between_books(described)
    first, second = sorted([str(book1), str(book2)])
    chosen = cross[(cross["book1"].astype(str) == first) & (cross["book2"].astype(str) == second)].copy()
    if str(book1) != first:  # the caller's order: item1 is the item of book1
        chosen = swapped(chosen)
    return chosen.sort_values("score", ascending=False, ignore_index=True)


def swapped(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its sides 1 and 2 exchanged (``item1`` <-> ``item2``, ``book1`` <-> ``book2``, ...)."""
    names = {}
    for column in frame.columns:
        if column.endswith("1") and column[:-1] + "2" in frame.columns:
            names[column], names[column[:-1] + "2"] = column[:-1] + "2", column
    return frame.rename(columns=names)[list(frame.columns)]


def edition_matrix(described: pd.DataFrame, books: pd.DataFrame) -> pd.DataFrame:
    """The symmetric book × book matrix of matching item pairs, rows and columns in :func:`book_order`.

    Parameters
    ----------
    described : DataFrame
        :func:`described_edges`.
    books : DataFrame
        Every book (``book, title, printer, place, year``); books without matches get rows of zeros.
    """
    order = book_order(books)["book"].astype(str).tolist()
    matrix = pd.DataFrame(0, index=order, columns=order, dtype="int64")
    for row in book_edges(described).itertuples(index=False):
        if str(row.book1) in matrix.index and str(row.book2) in matrix.index:
            matrix.loc[str(row.book1), str(row.book2)] = row.shared
            matrix.loc[str(row.book2), str(row.book1)] = row.shared
    matrix.index.name = "book"
    return matrix
