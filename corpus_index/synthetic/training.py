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
from .fonts import Pen, resolve_typefaces
from .tables import SIGN_ABBREVIATIONS
from .typesetting import LATIN_TEXT

CONTENTS = ["numbers", "numbers", "numbers", "mixed", "words", "rules", "blank"]
ORNAMENTS = ["❧", "¶", "*", "—", "§"]


def _sexagesimal_cell(rng: np.random.Generator) -> str:
    """A number as the tables print it: degrees or hours (0-359), or minutes (0-59)."""
    return str(int(rng.integers(0, 60 if rng.random() < 0.6 else 360)))


def _numbers(pen: Pen, rng: np.random.Generator, size: int, w: int, h: int, words: bool) -> None:
    gap = size * rng.uniform(0.5, 1.6)
    leading = size * rng.uniform(1.1, 1.6)
    y = rng.uniform(-0.5, 0.5) * leading + size
    while y < h + size:
        x = rng.uniform(-size, size)
        if words and rng.random() < 0.6:
            x += pen.text(x, y, str(rng.choice(SIGN_ABBREVIATIONS + ["Aries", "Gr.", "Min.", "Hor."])), size)
            x += gap
        while x < w + size:
            # Right-aligned columns: pad short numbers with the width of a digit.
            cell = _sexagesimal_cell(rng)
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
        About 40% of the patches are negatives or partly negative (words, rules, ornaments, blank paper).
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
