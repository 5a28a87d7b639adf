"""Whole pages of an edition: a table page or a woodcut page, printed and scanned.

An *edition* of a group is the group's content as one book printed it: typeface, setting, woodcut re-cut and
turned, copying errors, and the defects of print and scan.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops

from .degrade import Defects, print_and_scan, sample_defects
from .diagrams import DiagramSpec, render_diagram
from .fonts import DIGITS, Pen
from .tables import TableSpec
from .typesetting import (
    LATIN_TEXT,
    TableStyle,
    inscriptional_caps,
    page_furniture,
    paragraph,
    render_table_page,
    sample_table_style,
)

# Digits early compositors confused: similar shapes in the case and in the manuscript copy.
CONFUSIONS = {"0": "69", "1": "74", "2": "37", "3": "82", "4": "19", "5": "63", "6": "50", "7": "12",
              "8": "30", "9": "04"}
CHAPTERS = ["CAPITVLVM PRIMVM", "CAPITVLVM SECVNDVM", "CAPITVLVM TERTIVM", "CAPITVLVM QVARTVM"]


@dataclass(frozen=True)
class HouseStyle:
    """What stays the same across the pages of one book."""

    typeface: str
    page_size: tuple[int, int]
    table: TableStyle
    defects: Defects
    severity: float


def sample_house_style(rng: np.random.Generator, typeface: str) -> HouseStyle:
    """Draw a book's typeface setting, page size, paper and scan quality."""
    height = int(rng.integers(700, 900))
    width = int(height * rng.uniform(0.64, 0.74))
    severity = float(rng.uniform(0.5, 1.4))
    return HouseStyle(typeface, (width, height), sample_table_style(rng, typeface, (width, height)),
                      sample_defects(rng, severity), severity)


def page_defects(rng: np.random.Generator, house: HouseStyle) -> Defects:
    """This page's defects: its own skew, crop and dirt on the book's paper, ink and scanner."""
    own = sample_defects(rng, house.severity)
    book = house.defects
    return dataclasses.replace(own, paper=book.paper, ink=book.ink, binarise=book.binarise,
                               show_through=book.show_through, bleed=book.bleed)


def copying_errors(spec: TableSpec, rng: np.random.Generator, count: int) -> tuple[list[list[str]], int]:
    """The spec's cells with ``count`` digits mistaken, as a compositor might; returns cells and changes made."""
    cells = [list(row) for row in spec.rows]
    slots = [(r, c) for r, row in enumerate(cells) for c, text in enumerate(row)
             if spec.numeric[c] and text and any(ch in DIGITS for ch in text)]
    made = 0
    if not slots or count <= 0:
        return cells, 0
    for k in rng.choice(len(slots), size=min(count, len(slots)), replace=False):
        r, c = slots[int(k)]
        text = cells[r][c]
        positions = [i for i, ch in enumerate(text) if ch in DIGITS]
        i = positions[int(rng.integers(len(positions)))]
        wrong = CONFUSIONS[text[i]][int(rng.integers(2))]
        cells[r][c] = text[:i] + wrong + text[i + 1:]
        made += 1
    return cells, made


def table_page(spec: TableSpec, house: HouseStyle, folio: int, rng: np.random.Generator,
               signature: str | None = None) -> tuple[Image.Image, list, dict]:
    """Print one edition of a table; return the scan, its digit boxes and edition facts."""
    style = dataclasses.replace(
        house.table, title_index=int(rng.integers(0, 3)), fleuron=bool(rng.random() < 0.4),
        note=bool(rng.random() < 0.6), block_every=int(rng.choice([0, 5, 6])))
    n_errors = int(rng.choice([0, 0, 1, 1, 2, 3]))
    cells, made = copying_errors(spec, rng, n_errors)
    gray, boxes = render_table_page(spec, style, folio, cells, signature)
    defects = page_defects(rng, house)
    scan, boxes = print_and_scan(gray, boxes, defects, rng)
    return scan, boxes, {"typeface": house.typeface, "copy_errors": made, "rotation": 0.0, "flip": False,
                         "skew": round(defects.skew, 2)}


def sample_woodcut_edition(rng: np.random.Generator) -> dict:
    """How an edition re-used or re-cut a block: turned, mirrored, line weight, hatching, scale."""
    quarter = float(rng.choice([0, 0, 0, 0, 90, 180, 270]))
    tilt = float(rng.normal(0, 2.0)) if rng.random() < 0.5 else 0.0
    return {"rotation": quarter + tilt, "flip": bool(rng.random() < 0.3), "line": float(rng.uniform(1.0, 2.8)),
            "hatch_spacing": float(rng.uniform(3.5, 7.0)), "scale": float(rng.uniform(0.6, 0.95))}


def illustration_page(spec: DiagramSpec, house: HouseStyle, folio: int, rng: np.random.Generator,
                      signature: str | None = None, edition: dict | None = None) -> tuple[Image.Image, list, dict]:
    """Print a page with a woodcut in running text; return the scan, its digit boxes and edition facts."""
    edition = edition or sample_woodcut_edition(rng)
    w, h = house.page_size
    page = Image.new("L", (w, h), 255)
    pen = Pen(page, house.typeface, house.table.long_s)
    body = max(10, int(h / 48))
    margin = house.table.margin
    top, bottom = page_furniture(pen, (w, h), margin, folio, house.table.running_head, body, signature)
    m = margin * w
    y = top + body * 0.5
    if rng.random() < 0.5:
        y += body * 1.6
        pen.centred(w / 2, y, str(rng.choice(CHAPTERS)), int(body * 1.2))
        y += body * 0.6
    texts = [LATIN_TEXT[int(i)] for i in rng.choice(len(LATIN_TEXT), 3, replace=False)]
    y = paragraph(pen, texts[0], m, y, w - 2 * m, body, y + body * 1.3 * int(rng.integers(2, 6)))
    caption_room = body * 2.2
    room_h = bottom - y - caption_room - body * 2.6
    side = int(min(w - 2 * m, room_h) * edition["scale"])
    side = max(side, 120)
    block = render_diagram(spec, size=side, line=edition["line"], flip=edition["flip"],
                           rotation=edition["rotation"], typeface=house.typeface,
                           hatch_spacing=edition["hatch_spacing"], seed=int(rng.integers(2**31)))
    fit = min(1.0, (w - 2 * m) / block.width, max(room_h, 120) / block.height)
    if fit < 1.0:
        block = block.resize((max(1, int(block.width * fit)), max(1, int(block.height * fit))),
                             Image.Resampling.LANCZOS)
    bx, by = int((w - block.width) / 2), int(y + body * 0.5)
    region = page.crop((bx, by, bx + block.width, by + block.height))
    page.paste(ImageChops.darker(region, block), (bx, by))
    y = by + block.height + body * 1.4
    pen.centred(w / 2, y, inscriptional_caps(spec.caption) if rng.random() < 0.4 else spec.caption, body,
                italic=True)
    paragraph(pen, texts[1] + " " + texts[2], m, y + body * 0.6, w - 2 * m, body, bottom)
    defects = page_defects(rng, house)
    scan, boxes = print_and_scan(page, pen.digit_boxes, defects, rng)
    return scan, boxes, {"typeface": house.typeface, "copy_errors": 0, "rotation": round(edition["rotation"], 2),
                         "flip": edition["flip"], "skew": round(defects.skew, 2)}
