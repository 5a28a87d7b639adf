"""Exports of the editions analysis: the network of editions as GraphML or GEXF (networkx; Gephi opens both),
tables (item edges, groups, the edition matrix) as CSV through :mod:`corpus_index.csv_export` (spreadsheet-safe).

The network has one node per book (attributes ``title, printer, place, year`` where known, ``label`` for Gephi)
and one edge per pair of books sharing items (``shared``: matching item pairs, ``best_score``). GraphML and GEXF
have no "missing" value, so an unknown attribute is left off the node rather than written as an empty string.
"""

from __future__ import annotations

import io
from pathlib import Path

import networkx as nx
import pandas as pd

FORMATS = ("graphml", "gexf")


def edition_network(book_edges: pd.DataFrame, books: pd.DataFrame) -> nx.Graph:
    """The network of editions: books as nodes (every book, matched or not), shared items as weighted edges."""
    graph = nx.Graph()
    for book in books.itertuples(index=False):
        attributes = {"label": str(book.book)}
        for name in ("title", "printer", "place", "year"):
            value = getattr(book, name, None)
            if value is not None and not pd.isna(value):
                attributes[name] = int(value) if name == "year" else str(value)
        graph.add_node(str(book.book), **attributes)
    for edge in book_edges.itertuples(index=False):
        graph.add_edge(str(edge.book1), str(edge.book2), shared=int(edge.shared), weight=int(edge.shared),
                       best_score=float(edge.best_score))
    return graph


def network_bytes(graph: nx.Graph, format: str) -> bytes:
    """The network as GraphML or GEXF file content (UTF-8 XML)."""
    if format not in FORMATS:
        raise ValueError(f"unknown network format {format!r}; choose one of {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    (nx.write_graphml if format == "graphml" else nx.write_gexf)(graph, buffer)
    return buffer.getvalue()


def write_network(graph: nx.Graph, destination: str | Path, format: str) -> None:
    """Write the network to a GraphML or GEXF file (creating its folder)."""
    destination = Path(destination)
    if destination.is_dir():
        raise IsADirectoryError(f"{destination} is a folder; give a file name such as "
                                f"{destination / ('editions.' + format)}")
    content = network_bytes(graph, format)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(content)


def matrix_table(matrix: pd.DataFrame) -> pd.DataFrame:
    """The edition matrix as a flat table: a ``book`` column, then one column per book."""
    return matrix.reset_index()
