"""Training patches for a digit detector: strips of table-like print with the exact centre of every digit.

The "bigram network" learns to put a Gaussian blob on each digit centre. It needs positives (sexagesimal
columns in many founts and sizes) and negatives that look like print but are not digits (Latin words, rules,
ornaments, blank paper), all heavily degraded. ``fonts`` restricts the typefaces, so that one can be held out.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from .degrade import Defects, geometry_matrix, print_and_scan, sample_defects
from .diagrams import illustration_groups
from .fonts import Pen, resolve_typefaces
from .pages import illustration_page, sample_house_style, table_page
from .tables import CLIME_NAMES, MONTHS, ROMAN, SIGN_ABBREVIATIONS, table_groups
from .typesetting import LATIN_TEXT, RUNNING_HEADS

CONTENTS = ["numbers", "numbers", "mixed", "mixed", "labels", "words", "rules", "blank"]
ORNAMENTS = ["❧", "¶", "*", "—", "§"]
# Letters a detector confuses with figures (I l 1, o O 0, Z 2, S 5, g 9, B 8) and the words tables print around
# their numbers: row labels, column heads, headings. Seen in the detector's false positives on demo tables.
LOOKALIKES = ["I", "l", "i", "o", "O", "Z", "S", "s", "g", "B", "G", "b", "q", "z", "j", "J", "ij", "ll", "Il"]
LABELS = (SIGN_ABBREVIATIONS + MONTHS + CLIME_NAMES + ROMAN + RUNNING_HEADS + LOOKALIKES + [
    "Gra.", "Min.", "Hor.", "Sec.", "Princ.", "Medium", "Finis", "Dies", "Signa", "Clima", "CLIMATA", "Gradus",
    "Minuta", "Horae", "Latitudo", "Declinatio", "Aries", "Taurus", "TABVLA", "Ascensio", "Summa", "Mensis"])


def _sexagesimal_cell(rng: np.random.Generator) -> str:
    """A number as the tables print it: degrees or hours (0-359), or minutes (0-59)."""
    return str(int(rng.integers(0, 60 if rng.random() < 0.6 else 360)))


def _numbers(pen: Pen, rng: np.random.Generator, size: int, w: int, h: int, words: bool) -> None:
    gap = size * rng.uniform(0.5, 1.6)
    leading = size * rng.uniform(1.1, 1.6)
    y = rng.uniform(-0.5, 0.5) * leading + size
    while y < h + size:
        x = rng.uniform(-size, size)
        if words and rng.random() < 0.7:
            x += pen.text(x, y, str(rng.choice(LABELS)), size, bool(rng.random() < 0.3)) + gap
        while x < w + size:
            # Right-aligned columns: pad short numbers with the width of a digit.
            cell = _sexagesimal_cell(rng)
            if words and rng.random() < 0.25:  # a label or letter inside the run of numbers
                cell = str(rng.choice(LABELS if rng.random() < 0.5 else LOOKALIKES))
            x += pen.width("0" * (3 - len(cell)), size) * (rng.random() < 0.5)
            x += pen.text(x, y, cell, size) + gap
        if rng.random() < 0.15:
            pen.draw.line([(0, y + size * 0.4), (w, y + size * 0.4)], fill=0, width=int(rng.integers(1, 3)))
        y += leading


def _words(pen: Pen, rng: np.random.Generator, size: int, w: int, h: int) -> None:
    text = " ".join(LATIN_TEXT[int(i)] for i in rng.permutation(len(LATIN_TEXT))).split()
    leading = size * rng.uniform(1.1, 1.5)
    y, k = rng.uniform(0.6, 1.2) * size, int(rng.integers(len(text)))
    italic = bool(rng.random() < 0.3)
    while y < h + size:
        x = rng.uniform(-2 * size, 0)
        while x < w:
            x += pen.text(x, y, text[k % len(text)], size, italic) + size * 0.3
            k += 1
        y += leading


def _labels(pen: Pen, rng: np.random.Generator, size: int, w: int, h: int) -> None:
    """Headings, row labels and single letters in roman, italic and capitals at mixed sizes: no digits."""
    y = rng.uniform(0.6, 1.2) * size
    while y < h + size:
        line_size = int(size * rng.choice([1.0, 1.0, 1.2, 1.5]))
        x = rng.uniform(-size, size)
        while x < w:
            text = str(rng.choice(LABELS))
            x += pen.text(x, y, text.upper() if rng.random() < 0.2 else text, line_size, bool(rng.random() < 0.3))
            x += size * rng.uniform(0.3, 2.0)
        y += line_size * rng.uniform(1.1, 1.6)


def _rules(pen: Pen, rng: np.random.Generator, size: int, w: int, h: int) -> None:
    for _ in range(int(rng.integers(1, 5))):
        if rng.random() < 0.5:
            y = float(rng.uniform(0, h))
            pen.draw.line([(0, y), (w, y)], fill=0, width=int(rng.integers(1, 4)))
        else:
            x = float(rng.uniform(0, w))
            pen.draw.line([(x, 0), (x, h)], fill=0, width=int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(0, 4))):
        pen.text(float(rng.uniform(0, w)), float(rng.uniform(size, h)), str(rng.choice(ORNAMENTS)),
                 int(size * rng.uniform(0.8, 1.6)))
    for _ in range(int(rng.integers(0, 3))):  # hatching from a nearby woodcut
        x0, step = float(rng.uniform(0, w)), float(rng.uniform(3, 7))
        for k in range(int(rng.integers(3, 12))):
            pen.draw.line([(x0 + k * step, 0), (x0 + k * step - h, h)], fill=0, width=1)


def digit_training_pages(n: int, seed: int = 0, fonts=None, size: tuple[int, int] = (96, 192),
                         font_px: tuple[int, int] = (12, 30)):
    """Render ``n`` degraded patches of table-like print with the centre of every digit.

    Parameters
    ----------
    n : int
        Number of patches.
    seed : int
        Seed; the same arguments give the same patches.
    fonts : str or list of str, optional
        Typeface names from :data:`~.fonts.TYPEFACES` to use (default all), e.g. all but one held out.
    size : tuple of int
        Patch (height, width) in pixels.
    font_px : tuple of int
        Range of font sizes in pixels.

    Returns
    -------
    list of (PIL.Image.Image, list of (int, float, float))
        Grey patch (``"L"``, paper light) and ``(digit, cx, cy)`` for each digit whose ink centre lies inside it.
        About half of the patches are negatives or partly negative (labels, look-alike letters, words, rules,
        ornaments, blank paper).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (height, width) of at least 16 pixels, got {size!r}")
    if not 6 <= font_px[0] <= font_px[1]:
        raise ValueError(f"font_px must be (low, high) with 6 <= low <= high, got {font_px!r}")
    names = resolve_typefaces(fonts)
    h, w = int(size[0]), int(size[1])
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 3])
        typeface = names[int(rng.integers(len(names)))]
        page = Image.new("L", (w, h), 255)
        pen = Pen(page, typeface, use_long_s=bool(rng.random() < 0.5))
        px = int(rng.integers(font_px[0], font_px[1] + 1))
        content = CONTENTS[int(rng.integers(len(CONTENTS)))]
        if content in ("numbers", "mixed"):
            _numbers(pen, rng, px, w, h, words=content == "mixed")
        elif content == "words":
            _words(pen, rng, px, w, h)
        elif content == "labels":
            _labels(pen, rng, px, w, h)
        elif content == "rules":
            _rules(pen, rng, px, w, h)
        defects = dataclasses.replace(sample_defects(rng, float(rng.uniform(0.8, 1.8))),
                                      skew=float(rng.normal(0, 1.5)), scale=1.0, crop=(0.0, 0.0, 0.0, 0.0))
        scan, _ = print_and_scan(page, [], defects, rng, colour=False)
        centres = _centres(pen.digit_boxes, defects, (w, h))
        out.append((scan, centres))
    return out


def _centres(boxes, defects: Defects, size: tuple[int, int]) -> list[tuple[int, float, float]]:
    """Centres of the digits' ink boxes after the page's skew, kept when they fall inside the patch."""
    matrix, _ = geometry_matrix(size, defects.skew, defects.scale, defects.crop)
    w, h = size
    centres = []
    for digit, x0, y0, x1, y1 in boxes:
        cx, cy, _ = matrix @ np.array([(x0 + x1) / 2, (y0 + y1) / 2, 1.0])
        if 0 <= cx < w and 0 <= cy < h:
            centres.append((int(digit), float(cx), float(cy)))
    return centres


def training_book_pages(n: int, seed: int = 0, fonts=None, tables_share: float = 0.8):
    """Whole demo pages (tables and woodcut pages) printed in ``fonts``, with the ink box of every digit.

    The detector meets whole pages at inference: headings, row labels, rules and woodcuts around the numbers.
    Cropping these pages (after the same scale normalisation as inference) gives it that context to learn from.

    Parameters
    ----------
    n : int
        Number of pages.
    seed : int
        Seed; the same arguments give the same pages.
    fonts : str or list of str, optional
        Typefaces to print in (default all demo typefaces); training fonts are accepted too.
    tables_share : float
        Share of table pages; the rest are woodcut pages (negatives but for folios and signatures).

    Yields
    ------
    (PIL.Image.Image, list of (int, float, float, float, float))
        Scan and ``(digit, x0, y0, x1, y1)`` ink boxes in scan pixels, one page at a time: thousands of
        whole scans would not fit in memory together (12,000 pages took more than 13 GB as a list).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    names = resolve_typefaces(fonts)
    return _book_pages(n, seed, names, tables_share)


def _book_pages(n, seed, names, tables_share):
    """The generator behind :func:`training_book_pages` (which checks its arguments eagerly)."""
    tables, diagrams = table_groups(), illustration_groups()
    for i in range(n):
        rng = np.random.default_rng([seed, i, 5])
        house = sample_house_style(rng, names[int(rng.integers(len(names)))])
        folio = int(rng.integers(1, 300))
        if rng.random() < tables_share:
            scan, boxes, _ = table_page(tables[int(rng.integers(len(tables)))], house, folio, rng)
        else:
            scan, boxes, _ = illustration_page(diagrams[int(rng.integers(len(diagrams)))], house, folio, rng)
        yield scan, [(int(d), x0, y0, x1, y1) for d, x0, y0, x1, y1 in boxes]
