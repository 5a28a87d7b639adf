"""Setting tables and text in type: column widths, rules, headings, page furniture.

A :class:`TableStyle` is one edition's way of setting a table (typeface, spacing, rules, headings, page size);
:func:`render_table_page` composes a whole grey page from a :class:`~.tables.TableSpec` and returns it with the
ink box of every digit printed on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .fonts import Pen
from .tables import TableSpec

RULES = ("grid", "columns", "header", "frame")

LATIN_TEXT = [
    "Tractatum de sphaera quattuor capitulis distinguimus, dicturi primo quid sit sphaera, quid eius centrum, "
    "quid axis sphaerae, quid sit polus mundi, quot sint sphaerae, et quae sit forma mundi.",
    "Sphaera igitur ab Euclide sic describitur: sphaera est transitus semicirculi, cuius diameter manens fixa "
    "circumducitur quousque ad locum suum redeat.",
    "Sphaera est corpus solidum una superficie contentum, in cuius medio punctum est a quo omnes lineae ductae "
    "ad circumferentiam sunt aequales, et illud punctum dicitur centrum sphaerae.",
    "Machina universalis mundi dividitur in duo, in aetheream scilicet et elementarem regionem.",
    "Est enim terra tanquam mundi centrum in medio omnium sita, circa quam aqua, circa aquam aer, circa aerem "
    "ignis illic purus et non turbidus orbem lunae attingens.",
    "Circa elementarem regionem aetherea lucida a variatione omni sua immutabili essentia immunis existens "
    "motu continuo circulariter incedit, et haec a philosophis quinta nuncupatur essentia.",
    "Cuius novem sunt sphaerae, scilicet lunae, Mercurii, Veneris, solis, Martis, Iovis, Saturni, stellarum "
    "fixarum et caeli ultimi.",
    "Quod autem terra sit rotunda sic patet: signa et stellae non aequaliter oriuntur et occidunt omnibus "
    "hominibus ubique existentibus, sed prius his qui sunt versus orientem.",
    "Eclipsis lunae est privatio luminis in luna propter interpositionem terrae inter solem et lunam.",
    "Zodiacus est circulus obliquus secans aequinoctialem in duas partes aequales, et una pars eius declinat "
    "versus septentrionem, altera versus austrum.",
    "Tropicus cancri et tropicus capricorni, circulus arcticus et antarcticus distinguunt quinque zonas in caelo, "
    "quarum media torrida dicitur, extremae frigidae, reliquae temperatae.",
]

RUNNING_HEADS = ["DE SPHAERA", "LIBER PRIMVS", "LIBER SECVNDVS", "CAPVT TERTIVM", "SPHAERA MVNDI",
                 "IN SPHAERAM"]


@dataclass(frozen=True)
class TableStyle:
    """How one edition sets a table.

    Attributes
    ----------
    typeface : str
        Name from :data:`~.fonts.TYPEFACES`.
    page_size : tuple of int
        Composed page (width, height) in pixels.
    margin : float
        Outer margin as a share of the page width.
    rules : str
        One of ``grid``, ``columns``, ``header``, ``frame``.
    double_rules : bool
        Frame and header rules doubled.
    rule_width : int
        Line width of the rules in pixels.
    block_every : int
        Extra space (and a thin rule for ``grid``) after every so many rows; 0 for none.
    column_gap : float
        Space between columns in ems.
    spread : float
        Share of the spare width of the text block given to the columns (0 keeps the table tight).
    fill : float
        Share of the spare height given to the rows (short tables are set with generous leading).
    leading : float
        Row height in ems.
    title_index : int
        Which of the spec's equivalent titles is printed.
    title_caps : bool
        Title set in capitals (with U for V as in inscriptions).
    header_italic : bool
        Column headers in italic.
    fleuron : bool
        Print a fleuron after the title.
    note : bool
        Print the Latin canon under the table when there is room.
    long_s : bool
        Use the long s in Latin text.
    running_head : str
        Text of the running head.
    """

    typeface: str
    page_size: tuple[int, int] = (520, 760)
    margin: float = 0.08
    rules: str = "columns"
    double_rules: bool = False
    rule_width: int = 1
    block_every: int = 0
    column_gap: float = 0.6
    spread: float = 0.0
    fill: float = 0.5
    leading: float = 1.3
    title_index: int = 0
    title_caps: bool = True
    header_italic: bool = True
    fleuron: bool = False
    note: bool = True
    long_s: bool = True
    running_head: str = "DE SPHAERA"


def sample_table_style(rng: np.random.Generator, typeface: str, page_size: tuple[int, int]) -> TableStyle:
    """Draw an edition's setting of a table."""
    return TableStyle(
        typeface=typeface, page_size=page_size,
        margin=float(rng.uniform(0.06, 0.11)),
        rules=str(rng.choice(RULES)),
        double_rules=bool(rng.random() < 0.35),
        rule_width=int(rng.choice([1, 1, 2])),
        block_every=int(rng.choice([0, 5, 6])),
        column_gap=float(rng.uniform(0.6, 1.2)),
        spread=float(rng.choice([0.0, rng.uniform(0.2, 0.9)])),
        fill=float(rng.uniform(0.2, 0.9)),
        leading=float(rng.uniform(1.05, 1.35)),
        title_index=int(rng.integers(0, 3)),
        title_caps=bool(rng.random() < 0.6),
        header_italic=bool(rng.random() < 0.6),
        fleuron=bool(rng.random() < 0.4),
        note=bool(rng.random() < 0.7),
        long_s=bool(rng.random() < 0.7),
        running_head=str(rng.choice(RUNNING_HEADS)),
    )


def inscriptional_caps(text: str) -> str:
    """Capitals as early printers cut them: U set as V."""
    return text.upper().replace("U", "V")


def wrap(pen: Pen, text: str, size: int, width: float, italic: bool = False) -> list[str]:
    """Break ``text`` into lines no wider than ``width``."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and pen.width(trial, size, italic) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    if line:
        lines.append(line)
    return lines


def paragraph(pen: Pen, text: str, x: float, y: float, width: float, size: int, bottom: float,
              italic: bool = False, leading: float = 1.3, justify: bool = True) -> float:
    """Set ``text`` as a justified paragraph from top ``y``; stop before ``bottom``; return the next free y."""
    line_h = size * leading
    lines = wrap(pen, text, size, width, italic)
    for i, line in enumerate(lines):
        if y + line_h > bottom:
            break
        baseline = y + size
        words = line.split()
        if justify and i < len(lines) - 1 and len(words) > 1:
            gap = (width - sum(pen.width(w, size, italic) for w in words)) / (len(words) - 1)
            cx = x
            for word in words:
                cx += pen.text(cx, baseline, word, size, italic) + gap
        else:
            pen.text(x, baseline, line, size, italic)
        y += line_h
    return y


def page_furniture(pen: Pen, page_size: tuple[int, int], margin: float, folio: int, running_head: str,
                   size: int, signature: str | None = None) -> tuple[float, float]:
    """Running head with folio number on the outer side and an optional signature mark at the foot.

    Returns the y range (top, bottom) left free for the page's content.
    """
    w, h = page_size
    m = margin * w
    baseline = m * 0.6 + size
    pen.centred(w / 2, baseline, running_head, size)
    if folio % 2:
        pen.right(w - m, baseline, str(folio), size)
    else:
        pen.text(m, baseline, str(folio), size)
    bottom = h - m * 0.7
    if signature:
        pen.text(w * 0.55, bottom, signature, size)
    return baseline + size * 0.8, bottom - size * 1.4


def _measure(pen: Pen, spec: TableSpec, style: TableStyle, size: int) -> tuple[list[float], float]:
    """Column widths at ``size`` (widened so every group header fits its span) and the row height."""
    gap = style.column_gap * size
    widths = []
    for c in range(spec.n_columns):
        cells = [row[c] for row in spec.rows]
        widths.append(max([pen.width(t, size) for t in cells] + [1.0]))
    k = 0
    for header, subs in spec.columns:
        for j, sub in enumerate(subs):
            widths[k + j] = max(widths[k + j], pen.width(sub, int(size * 0.85), style.header_italic))
        span = sum(widths[k:k + len(subs)]) + gap * (len(subs) - 1)
        need = pen.width(header, size, style.header_italic)
        if need > span:
            extra = (need - span) / len(subs)
            for j in range(len(subs)):
                widths[k + j] += extra
        k += len(subs)
    return [wd + gap for wd in widths], style.leading * size


def _block(spec: TableSpec, style: TableStyle) -> int:
    """Rows per block: the table's natural grouping if it has one, else the edition's habit."""
    return spec.block or style.block_every


def _table_height(spec: TableSpec, style: TableStyle, row_h: float) -> float:
    block = _block(spec, style)
    blocks = (len(spec.rows) - 1) // block if block else 0
    return row_h * (len(spec.rows) + 2.4) + blocks * row_h * 0.35


def _fit_size(pen: Pen, spec: TableSpec, style: TableStyle, width: float, height: float) -> int:
    """Largest font size at which the table fits the box, estimated by scaling then checked."""
    ref = 40
    widths, row_h = _measure(pen, spec, style, ref)
    size = int(min(ref * width / sum(widths), ref * height / _table_height(spec, style, row_h), 30))
    size = max(size, 7)
    while size > 7:
        widths, row_h = _measure(pen, spec, style, size)
        if sum(widths) <= width and _table_height(spec, style, row_h) <= height:
            break
        size -= 1
    return size


def _hline(pen: Pen, x0: float, x1: float, y: float, width: int, double: bool) -> None:
    pen.draw.line([(x0, y), (x1, y)], fill=0, width=width)
    if double:
        pen.draw.line([(x0, y + width + 2), (x1, y + width + 2)], fill=0, width=width)


def draw_table(pen: Pen, spec: TableSpec, style: TableStyle, x_centre: float, top: float, width: float,
               height: float, cells: list[list[str]] | None = None) -> float:
    """Set ``spec`` (or the edition's ``cells``, which may carry copying errors) centred in a box.

    Returns the y just below the table.
    """
    cells = spec.rows if cells is None else cells
    size = _fit_size(pen, spec, style, width, height)
    widths, row_h = _measure(pen, spec, style, size)
    natural = _table_height(spec, style, row_h)
    if natural < height:
        row_h *= min(1.6, 1.0 + style.fill * (height / natural - 1.0))
    spare = max(0.0, width - sum(widths)) * style.spread
    widths = [wd + spare / len(widths) for wd in widths]
    total_w = sum(widths)
    x0 = x_centre - total_w / 2
    lefts = [x0 + sum(widths[:i]) for i in range(len(widths))]
    gap = style.column_gap * size
    head = int(size * 0.85)
    rw = style.rule_width
    y = top
    _hline(pen, x0, x0 + total_w, y, rw, style.double_rules)
    # Group headers centred on their spans, sub-headers centred on their columns.
    k, group_edges = 0, []
    for header, subs in spec.columns:
        span_l, span_r = lefts[k], lefts[k + len(subs) - 1] + widths[k + len(subs) - 1]
        pen.centred((span_l + span_r) / 2, y + row_h * 0.2 + size, header, size, style.header_italic)
        for j, sub in enumerate(subs):
            if sub:
                pen.centred(lefts[k + j] + widths[k + j] / 2, y + row_h * 1.15 + head, sub, head,
                            style.header_italic)
        group_edges.append(span_r)
        k += len(subs)
    header_bottom = y + row_h * 2.3
    _hline(pen, x0, x0 + total_w, header_bottom, rw, style.double_rules)
    y = header_bottom + row_h * 0.15
    block = _block(spec, style)
    for i, row in enumerate(cells):
        if block and i and i % block == 0:
            if style.rules == "grid":
                pen.draw.line([(x0, y + row_h * 0.15), (x0 + total_w, y + row_h * 0.15)], fill=0, width=1)
            y += row_h * 0.35
        elif style.rules == "grid" and i:
            pen.draw.line([(x0, y), (x0 + total_w, y)], fill=0, width=1)
        baseline = y + row_h * 0.5 + size * 0.33
        for c, text in enumerate(row):
            if not text:
                continue
            if spec.numeric[c]:
                pen.right(lefts[c] + widths[c] - gap / 2, baseline, text, size)
            else:
                pen.text(lefts[c] + gap / 2, baseline, text, size)
        y += row_h
    bottom = y + row_h * 0.1
    _hline(pen, x0, x0 + total_w, bottom, rw, style.double_rules)
    if style.rules in ("grid", "columns"):
        for edge in group_edges[:-1]:
            pen.draw.line([(edge, top), (edge, bottom)], fill=0, width=rw)
    if style.rules != "header":
        for edge in (x0, x0 + total_w):
            pen.draw.line([(edge, top), (edge, bottom)], fill=0, width=rw)
            if style.double_rules:
                outside = edge - rw - 2 if edge == x0 else edge + rw + 2
                pen.draw.line([(outside, top - rw - 2), (outside, bottom + rw + 2)], fill=0, width=rw)
    return bottom + rw + 4


def render_table_page(spec: TableSpec, style: TableStyle, folio: int, cells: list[list[str]] | None = None,
                      signature: str | None = None) -> tuple[Image.Image, list]:
    """Compose a grey page holding one table; return it and the digit boxes ``(digit, x0, y0, x1, y1)``."""
    w, h = style.page_size
    page = Image.new("L", (w, h), 255)
    pen = Pen(page, style.typeface, style.long_s)
    body = max(10, int(h / 48))
    top, bottom = page_furniture(pen, (w, h), style.margin, folio, style.running_head, body, signature)
    m = style.margin * w
    title = spec.titles[style.title_index % len(spec.titles)]
    title_size = int(body * 1.45)
    if style.title_caps:
        title = inscriptional_caps(title)
    lines = wrap(pen, title, title_size, w - 2 * m)
    y = top + body * 0.6
    for line in lines:
        y += title_size * 1.2
        pen.centred(w / 2, y, line, title_size)
    if style.fleuron:
        y += body * 1.3
        pen.centred(w / 2, y, "❧" if pen.width("❧", body) > 0 else "*", body)
    y += body * 1.4
    pen.centred(w / 2, y, spec.subtitle, body, italic=True)
    y += body * 0.9
    note_room = body * 4.2 if style.note and spec.note and len(spec.rows) < 25 else 0
    y = draw_table(pen, spec, style, w / 2, y, w - 2 * m, bottom - y - note_room, cells)
    if note_room:
        paragraph(pen, spec.note, m, y + body * 0.3, w - 2 * m, body, bottom)
    return page, pen.digit_boxes
