"""Publication figures of a pair explanation: both scans at full resolution, the strongest links, a caption.

The figure is drawn from the explanation's table of patch pairs (:meth:`Explanation.table`, boxes on the
scans), not from the pair matrix, so it is the same for dense and sparse explanations, and the curves lie on
the original scans at their own resolution (the model may have seen them smaller). The curves follow the
explorer's picture (:func:`bilrp_core.render.draw_pair`): red where a pair makes the scans more similar, blue
where less, opacity and width growing with |R| / max |R|.

:func:`link_geometry` is the one place that places the two scans side by side and computes the curves; the
explorer's zoomable view (``explorer.pair_view``) draws the same geometry with plotly. Figures are written with
matplotlib's object API (no pyplot state: safe from several Streamlit sessions at once) as PNG, PDF or SVG.

Outputs of a network with random weights carry :data:`corpus_index.models.UNTRAINED_MARK` (on the picture, in
the caption, in table exports and in Web Annotations): :func:`stamp_untrained`, :func:`mark_table`,
:func:`mark_annotation`.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from corpus_index.models import UNTRAINED_MARK

FORMATS = {"png": "image/png", "pdf": "application/pdf", "svg": "image/svg+xml"}
RED = (220, 20, 20)  # as bilrp_core.render: red adds to the similarity, blue takes from it
BLUE = (20, 70, 230)
BEND = 0.25  # control point height per horizontal distance (bilrp_core.render.PairStyle.bend)
FIGURE_WIDTH_INCHES = 10.0


@dataclass(frozen=True)
class Placement:
    """Where the two scans lie in a side-by-side picture: each is scaled to the taller one's height.

    Attributes
    ----------
    scales : (float, float)
        Picture pixels per scan pixel (1 for the taller scan: it keeps its full resolution).
    lefts : (float, float)
        x of each scan's left edge in the picture.
    height : float
        Height of both scans in the picture.
    width : float
        Width of the picture (both scans and the gap).
    """

    scales: tuple[float, float]
    lefts: tuple[float, float]
    height: float
    width: float


def placement(sizes: Sequence[tuple[int, int]], gap: float | None = None) -> Placement:
    """Side-by-side placement of two scans of ``sizes`` ((w1, h1), (w2, h2)), 6 % of the width apart."""
    (w1, h1), (w2, h2) = sizes
    height = float(max(h1, h2))
    scales = (height / h1, height / h2)
    widths = (w1 * scales[0], w2 * scales[1])
    gap = 0.06 * sum(widths) if gap is None else float(gap)
    return Placement(scales, (0.0, widths[0] + gap), height, widths[0] + gap + widths[1])


def box_centre(row: Mapping, side: int) -> tuple[float, float]:
    """Centre of a table row's patch on scan ``side`` (1 or 2), in that scan's pixels."""
    return ((row[f"orig{side}_x0"] + row[f"orig{side}_x1"]) / 2, (row[f"orig{side}_y0"] + row[f"orig{side}_y1"]) / 2)


def link_geometry(table: pd.DataFrame, where: Placement, steps: int = 24) -> list[dict]:
    """The curve of every row of ``table`` in picture coordinates (y down), strongest first.

    Returns
    -------
    list of dict
        ``rank``, ``relevance``, ``weight`` (|R| / the strongest |R| of the table, in (0, 1]), ``colour`` (RGB),
        ``x`` and ``y`` (arrays of ``steps`` points of a quadratic Bézier curve arching above its higher end),
        ``ends`` (start, control point, end) of that curve.
    """
    scale = float(table["relevance"].abs().max()) if len(table) else 0.0
    curves = []
    for row in table.to_dict("records"):
        (x1, y1), (x2, y2) = box_centre(row, 1), box_centre(row, 2)
        start = np.array([where.lefts[0] + x1 * where.scales[0], y1 * where.scales[0]])
        end = np.array([where.lefts[1] + x2 * where.scales[1], y2 * where.scales[1]])
        control = np.array([(start[0] + end[0]) / 2, min(start[1], end[1]) - BEND * abs(end[0] - start[0])])
        t = np.linspace(0.0, 1.0, steps)[:, None]
        points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        value = float(row["relevance"])
        curves.append({"rank": int(row["rank"]), "relevance": value,
                       "weight": abs(value) / scale if scale else 0.0,
                       "colour": RED if value > 0 else BLUE, "x": points[:, 0], "y": points[:, 1],
                       "ends": (tuple(start), tuple(control), tuple(end))})
    return curves


def arch_height(curves: Sequence[dict]) -> float:
    """How far the highest of :func:`link_geometry`'s curves rises above the scans (0 when none does), in
    picture pixels: the room a figure of the pair leaves above them."""
    return -min([0.0, *(float(np.min(c["y"])) for c in curves)])


def side_by_side(originals: Sequence[Image.Image], where: Placement) -> Image.Image:
    """Both scans on one white canvas as :func:`placement` puts them (the shorter scaled up to the taller)."""
    canvas = Image.new("RGB", (round(where.width), round(where.height)), "white")
    for image, scale, left in zip(originals, where.scales, where.lefts, strict=True):
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        scaled = image.convert("RGB") if size == image.size else image.convert("RGB").resize(
            size, Image.Resampling.LANCZOS)
        canvas.paste(scaled, (round(left), 0))
    return canvas


def pair_picture(originals: Sequence[Image.Image], table: pd.DataFrame, height: int | None = None) -> Image.Image:
    """A small raster picture of the pair for screens (e.g. the Compare page): the scans side by side, scaled to
    ``height``, and the table's links as curves (PIL only, so safe from several threads)."""
    where = placement([image.size for image in originals])
    curves = link_geometry(table, where)
    zoom = 1.0 if height is None else height / where.height
    margin = arch_height(curves) + 4
    scans = side_by_side(originals, where)
    scans = scans.resize((max(1, round(scans.width * zoom)), max(1, round(scans.height * zoom))),
                         Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (scans.width, scans.height + round(margin * zoom)), "white")
    canvas.paste(scans, (0, round(margin * zoom)))
    draw = ImageDraw.Draw(canvas, "RGBA")  # RGBA drawing on an RGB image blends by alpha
    for curve in curves[::-1]:  # weakest first, so the strongest lie on top
        points = list(zip(curve["x"] * zoom, (curve["y"] + margin) * zoom, strict=True))
        draw.line(points, fill=(*curve["colour"], round(255 * max(curve["weight"], 0.08))),
                  width=max(1, round(1 + 2 * curve["weight"])), joint="curve")
    return canvas


def caption_text(items: Sequence[Mapping | None], labels: Sequence[str], model: str, gamma: str,
                 score: float, date: datetime.date | None = None, untrained: bool = False) -> str:
    """The caption of a figure: both items' book, title, year and page, the model, γ, the score and the date.

    ``items`` are the items' metadata (None for an uploaded scan: its ``labels`` entry names it).
    """
    def describe(item, label):
        if item is None:
            return label
        parts = [item.get("book"), item.get("title"), item.get("year"), f"p. {item['page']}" if _given(
            item.get("page")) else None]
        shown = [_plain(p) for p in parts if _given(p)]
        return ", ".join(shown) or label

    mark = f"[{UNTRAINED_MARK.upper()}] " if untrained else ""
    return (f"{mark}A: {describe(items[0], labels[0])}. B: {describe(items[1], labels[1])}. BiLRP explanation "
            f"under {model}, γ {gamma}; similarity {score:.4g}. Red: pairs of places that make the pages similar, "
            f"blue: less similar. {(date or datetime.date.today()).isoformat()}.")


def _given(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value).strip() != ""


def _plain(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def pair_figure(originals: Sequence[Image.Image], table: pd.DataFrame, caption: str, untrained: bool = False):
    """A matplotlib Figure: both scans at full resolution, the table's links as curves, and the caption.

    Parameters
    ----------
    originals : (PIL.Image, PIL.Image)
        The two scans the table's ``orig…`` boxes are on (offsets 0: the images themselves).
    table : pandas.DataFrame
        Rows of :meth:`Explanation.table` (strongest first).
    caption : str
        Text under the picture (:func:`caption_text`).
    untrained : bool
        Put :data:`UNTRAINED_MARK` on the picture.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as CurvePath

    where = placement([image.size for image in originals])
    curves = link_geometry(table, where)
    top = -arch_height(curves) - 4
    picture_height = where.height - top
    caption_inches = 0.22 * (1 + len(caption) // 150) + 0.2
    width = FIGURE_WIDTH_INCHES
    picture_inches = width * picture_height / where.width
    figure = Figure(figsize=(width, picture_inches + caption_inches))
    axes = figure.add_axes((0, caption_inches / (picture_inches + caption_inches), 1,
                            picture_inches / (picture_inches + caption_inches)))
    axes.imshow(np.asarray(side_by_side(originals, where)), extent=(0, where.width, where.height, 0),
                interpolation="none")
    for curve in curves[::-1]:  # weakest first, so the strongest lie on top
        colour = tuple(c / 255 for c in curve["colour"])
        path = CurvePath(curve["ends"], [CurvePath.MOVETO, CurvePath.CURVE3, CurvePath.CURVE3])
        axes.add_patch(PathPatch(path, facecolor="none", edgecolor=colour, alpha=max(curve["weight"], 0.08),
                                 linewidth=0.6 + 1.4 * curve["weight"]))
    axes.set_xlim(0, where.width)
    axes.set_ylim(where.height, top)
    axes.axis("off")
    if untrained:
        axes.text(0.01, 0.99, UNTRAINED_MARK.upper(), transform=axes.transAxes, va="top", ha="left",
                  color="white", fontsize=11, fontweight="bold", bbox={"facecolor": (0.75, 0, 0), "pad": 4})
    figure.text(0.01, (caption_inches - 0.1) / (picture_inches + caption_inches), caption, ha="left", va="top",
                fontsize=8, wrap=True)
    return figure


def figure_bytes(figure, fmt: str, caption: str = "") -> bytes:
    """A :func:`pair_figure` as PNG (the scans at ≥ their own resolution), PDF or SVG bytes (text kept as text)."""
    import matplotlib

    if fmt not in FORMATS:
        raise ValueError(f"figure format must be one of {sorted(FORMATS)}, got {fmt!r}")
    buffer = io.BytesIO()
    metadata = {"Title": "BiLRP pair explanation", "Subject": caption} if fmt == "pdf" else None
    if fmt == "svg":
        metadata = {"Title": "BiLRP pair explanation", "Description": caption}
    pixels = figure.axes[0].images[0].get_array().shape[1]  # the scans' width: the PNG keeps their resolution
    dpi = max(72.0, np.ceil(pixels / FIGURE_WIDTH_INCHES)) if fmt == "png" else 150
    with matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def stamp_untrained(picture: Image.Image) -> Image.Image:
    """``picture`` with :data:`UNTRAINED_MARK` in a red band across its top (a copy)."""
    marked = picture.convert("RGB").copy()
    size = max(12, marked.width // 60)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without scalable default font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(marked)
    draw.rectangle((0, 0, marked.width, int(size * 1.8)), fill=(190, 0, 0))
    draw.text((size // 2, int(size * 0.35)), UNTRAINED_MARK.upper(), fill="white", font=font)
    return marked


def mark_table(table: pd.DataFrame, untrained: bool) -> pd.DataFrame:
    """The table with a ``note`` column holding :data:`UNTRAINED_MARK` on every row, for an untrained model."""
    if not untrained:
        return table
    return table.assign(note=UNTRAINED_MARK)


def mark_annotation(annotation: dict, untrained: bool) -> dict:
    """One Web Annotation of an explanation (:func:`bilrp_core.annotation.pair_annotations`) with its description
    and explanation saying that the network is untrained."""
    if not untrained:
        return annotation
    marked = dict(annotation, explanation=dict(annotation["explanation"], warning=UNTRAINED_MARK))
    body = [dict(part) for part in annotation["body"]]
    body[0]["value"] = f"{UNTRAINED_MARK.upper()}. {body[0]['value']}"
    marked["body"] = body
    return marked
