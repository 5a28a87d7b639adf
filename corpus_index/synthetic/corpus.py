"""Books, editions and the writing of the demo corpus.

Every book has a printer, place, year, author and short title, one typeface and a house style; its pages are
editions of table groups and woodcut groups. Groups are spread over books so that every table group that
appears at all appears in at least two books with different typefaces (when the corpus has two books or more).
Everything is drawn from seeded generators keyed by (seed, book, page), so the same seed writes byte-identical
CSV files and images, whether the books are rendered in one process or several.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .diagrams import illustration_groups
from .fonts import TYPEFACES
from .pages import illustration_page, sample_house_style, table_page
from .tables import table_groups

METADATA_COLUMNS = ["path", "kind", "group", "book", "title", "author", "printer", "place", "year", "page",
                    "typeface", "copy_errors", "rotation", "flip", "skew", "width", "height"]
GLYPH_COLUMNS = ["path", "digit", "x0", "y0", "x1", "y1"]
MARKER = "corpus_info.json"

PRINTERS = [
    ("Andreas Belfortis", "Ferrara", 1472, 1493), ("Erhard Ratdolt", "Venice", 1476, 1486),
    ("Ottaviano Scoto", "Venice", 1490, 1552), ("Lucantonio Giunta", "Venice", 1500, 1538),
    ("Girolamo Scoto", "Venice", 1539, 1572), ("Jean Petit", "Paris", 1495, 1530),
    ("Simon de Colines", "Paris", 1520, 1546), ("Guillaume Cavellat", "Paris", 1548, 1576),
    ("Joseph Klug", "Wittenberg", 1531, 1552), ("Johann Krafft", "Wittenberg", 1550, 1578),
    ("Jean de Tournes", "Lyon", 1542, 1564), ("Guillaume Rouillé", "Lyon", 1545, 1589),
    ("Jan Steelsius", "Antwerp", 1540, 1562), ("Christophe Plantin", "Antwerp", 1555, 1589),
    ("Vittorio Eliano", "Rome", 1570, 1575), ("Domenico Basa", "Rome", 1581, 1596),
    ("Heinrich Petri", "Basel", 1530, 1579), ("Johannes Oporinus", "Basel", 1540, 1568),
    ("Giovanni Battista Ciotti", "Venice", 1590, 1625), ("Johann Gymnich", "Cologne", 1590, 1620),
    ("Reinhard Eltz", "Mainz", 1606, 1612), ("Jacques Cardon", "Lyon", 1617, 1650),
]
# (author, short titles, first year an edition of theirs is plausible, weight)
AUTHORS = [
    ("Johannes de Sacrobosco", ["Sphaera mundi", "Tractatus de sphaera", "Textus de sphaera"], 1472, 4.0),
    ("Georg Peurbach", ["Theoricae novae planetarum"], 1472, 1.0),
    ("Jacques Lefèvre d'Étaples", ["Textus de sphaera"], 1495, 1.0),
    ("Philipp Melanchthon", ["Libellus de sphaera"], 1531, 1.0),
    ("Alessandro Piccolomini", ["De la sfera del mondo"], 1540, 1.0),
    ("Oronce Fine", ["De mundi sphaera"], 1542, 1.0),
    ("Élie Vinet", ["Sphaera emendata"], 1551, 1.0),
    ("Christophorus Clavius", ["In sphaeram commentarius"], 1570, 2.0),
    ("Francesco Giuntini", ["In sphaeram commentaria"], 1577, 1.0),
]
SIGNATURE_LETTERS = "ABCDEFGHIKLMNOPQRSTVX"
SIGNATURE_LEAVES = ["", " ij", " iij", " iiij"]


def book_metadata(rng: np.random.Generator, index: int, width: int) -> dict:
    """Printer, place, year, author and short title of book number ``index``."""
    printer, place, first, last = PRINTERS[int(rng.integers(len(PRINTERS)))]
    year = int(rng.integers(first, last + 1))
    fits = [a for a in AUTHORS if a[2] <= year]
    weights = np.array([a[3] for a in fits])
    author, titles, _, _ = fits[int(rng.choice(len(fits), p=weights / weights.sum()))]
    return {"book": f"B{index + 1:0{width}d}", "title": titles[int(rng.integers(len(titles)))],
            "author": author, "printer": printer, "place": place, "year": year}


def assign_groups(n_books: int, seed: int) -> tuple[list[str], list[list[tuple[str, int]]]]:
    """Book typefaces and each book's pages as ``(kind, group index)`` in printing order.

    Every group placed at all gets at least two editions; table groups in books of different typefaces.
    """
    rng = np.random.default_rng([seed, 0])
    faces = sorted(TYPEFACES)
    order = [faces[int(i)] for i in rng.permutation(len(faces))]
    typefaces = [order[i % len(order)] for i in range(n_books)]
    n_pages = rng.integers(8, 13, n_books)
    n_tables = np.clip(np.round(n_pages * rng.uniform(0.45, 0.7, n_books)).astype(int), 1, n_pages - 1)
    slots = {"table": [int(t) for t in n_tables], "illustration": [int(p - t) for p, t in zip(n_pages, n_tables,
                                                                                              strict=True)]}
    counts = {"table": len(table_groups()), "illustration": len(illustration_groups())}
    pages: list[list[tuple[str, int]]] = [[] for _ in range(n_books)]
    for kind in ("table", "illustration"):
        free = list(slots[kind])
        candidates = [int(g) for g in rng.permutation(counts[kind])]
        candidates = candidates[:max(0, sum(free) // 2)] if n_books > 1 else candidates
        used: dict[int, int] = {}
        # With one book (or one typeface for tables) no group can have two fitting editions: print one each.
        single_books = n_books < 2 or (kind == "table" and len(set(typefaces)) < 2)
        for g in candidates:
            tie = rng.random(n_books)
            books = sorted(range(n_books), key=lambda b: (-free[b], tie[b]))
            first = next((b for b in books if free[b] > 0), None)
            if first is None:
                break
            second = next((b for b in books if b != first and free[b] > 0 and
                           (kind != "table" or typefaces[b] != typefaces[first])), None)
            if second is None and not single_books:
                continue
            for b in (first,) if second is None else (first, second):
                pages[b].append((kind, g))
                free[b] -= 1
            used[g] = 1 if second is None else 2
        # Fill the remaining slots with the least printed groups the book does not have yet.
        for b in range(n_books):
            while free[b] > 0:
                have = {g for k, g in pages[b] if k == kind}
                options = [g for g in used if g not in have]
                if not options:
                    break
                tie = rng.random(len(options))
                g = min(zip(options, tie, strict=True), key=lambda o: (used[o[0]], o[1]))[0]
                pages[b].append((kind, g))
                used[g] += 1
                free[b] -= 1
    for b in range(n_books):
        pages[b] = [pages[b][int(i)] for i in rng.permutation(len(pages[b]))]
    return typefaces, pages


def render_book(seed: int, index: int, n_books: int, typeface: str, plan: list[tuple[str, int]],
                images_dir: str) -> tuple[list[dict], list[dict]]:
    """Render and save every page of one book; return its metadata and glyph rows."""
    rng = np.random.default_rng([seed, index + 1, 0])
    meta = book_metadata(rng, index, max(2, len(str(n_books))))
    house = sample_house_style(rng, typeface)
    tables, diagrams = table_groups(), illustration_groups()
    folio = int(rng.integers(5, 60))
    rows, glyphs = [], []
    for p, (kind, g) in enumerate(plan):
        page_rng = np.random.default_rng([seed, index + 1, p + 1])
        folio += int(page_rng.integers(1, 7))
        signature = None
        if page_rng.random() < 0.3:
            signature = SIGNATURE_LETTERS[int(page_rng.integers(len(SIGNATURE_LETTERS)))] + \
                SIGNATURE_LEAVES[int(page_rng.integers(len(SIGNATURE_LEAVES)))]
        if kind == "table":
            spec = tables[g]
            scan, boxes, facts = table_page(spec, house, folio, page_rng, signature)
        else:
            spec = diagrams[g]
            scan, boxes, facts = illustration_page(spec, house, folio, page_rng, signature)
        rel = f"images/{meta['book']}_{folio:03d}.png"
        _save_png(scan, Path(images_dir).parent / rel)
        rows.append({"path": rel, "kind": kind, "group": spec.group, **meta, "page": folio, **facts,
                     "width": scan.width, "height": scan.height})
        glyphs.extend({"path": rel, "digit": int(d), "x0": x0, "y0": y0, "x1": x1, "y1": y1}
                      for d, x0, y0, x1, y1 in boxes)
    return rows, glyphs


def _save_png(image, path: Path) -> None:
    """Write to a temporary name and rename, so a crash never leaves half an image."""
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)


def check_output_dir(out_dir, overwrite: bool = False) -> Path:
    """Validate ``out_dir``: not a file; empty, new, or an earlier demo corpus (or ``overwrite``)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file() and not overwrite:
        raise FileExistsError(f"--out {out}: directory is not empty and holds no demo corpus ({MARKER}); "
                              "choose an empty or new directory, or pass overwrite")
    return out


def generate_corpus(out_dir, books: int = 24, seed: int = 0, progress=None, workers: int | None = None,
                    overwrite: bool = False) -> pd.DataFrame:
    """Write the demo corpus and return its metadata.

    Parameters
    ----------
    out_dir : str or path
        Folder to write ``images/``, ``metadata.csv``, ``glyphs.csv`` and ``corpus_info.json`` into.
    books : int
        Number of books (about ten pages each).
    seed : int
        Seed; the same seed gives byte-identical files.
    progress : callable, optional
        ``progress(done, total, message)`` after each book.
    workers : int, optional
        Processes rendering books in parallel (default: up to 2); the output does not depend on it.
    overwrite : bool
        Allow writing into a non-empty folder that is not an earlier demo corpus.

    Returns
    -------
    pandas.DataFrame
        One row per page, columns :data:`METADATA_COLUMNS`.
    """
    if isinstance(books, bool) or not isinstance(books, (int, np.integer)) or books < 0:
        raise ValueError(f"books must be a non-negative integer, got {books!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out = check_output_dir(out_dir, overwrite)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    typefaces, plans = assign_groups(int(books), int(seed))
    jobs = [(int(seed), i, int(books), typefaces[i], plans[i], str(images)) for i in range(books)]
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    rows, glyphs = [], []
    if workers > 1 and books > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(render_book, *job) for job in jobs]
            for done, future in enumerate(futures, 1):
                book_rows, book_glyphs = future.result()
                rows += book_rows
                glyphs += book_glyphs
                if progress:
                    progress(done, books, f"book {done}/{books}")
    else:
        for done, job in enumerate(jobs, 1):
            book_rows, book_glyphs = render_book(*job)
            rows += book_rows
            glyphs += book_glyphs
            if progress:
                progress(done, books, f"book {done}/{books}")
    meta = pd.DataFrame(rows, columns=METADATA_COLUMNS)
    _write_csv(meta, out / "metadata.csv")
    _write_csv(pd.DataFrame(glyphs, columns=GLYPH_COLUMNS), out / "glyphs.csv")
    info = {"generator": "corpus_index.synthetic", "books": int(books), "seed": int(seed), "pages": len(meta)}
    (out / MARKER).write_text(json.dumps(info, indent=1) + "\n")
    return meta
