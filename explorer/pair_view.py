"""The zoomable pair view of the Explain page: both scans at their own resolution, the links, the digits.

A plotly figure (zoom and pan are plotly's own): the two scans as image traces placed side by side as in the
publication figure (:func:`corpus_index.figure.placement`: the shorter scan scaled to the taller one's
height), one line trace per patch pair of the explanation's table (:func:`corpus_index.figure.link_geometry`),
and, for the bigram network, the detected digits as boxes with their values. Selecting a link (a click on it)
or a row of the table chooses a pair, whose two patches :func:`patch_crops` cuts from the original scans,
enlarged enough to read a digit.

Everything here is built from ``Explanation.table(...)`` (boxes on the scans), never from the pair matrix.
No Streamlit: the page shows the figure; this module is testable on its own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from corpus_index.figure import Placement, arch_height, link_geometry, placement

LINK, ENDS, DIGITS = "link", "link ends", "digits"  # trace metas: what a trace shows
VIEW_WIDTH = 950  # about the width of the view on a laptop screen: sets the default height (no blank bands)
MIN_HEIGHT, MAX_HEIGHT = 360, 820
LEVELS = 8  # strength levels of the links drawn (each a trace per sign)
CLICK_SPACING = 32  # screen pixels between a link's clickable points (plotly's hover distance is 20)
CROP_HEIGHT = 240  # patches are enlarged to at least this height on screen: a digit becomes readable
Digit = tuple[int, float, float, float, float]  # (value, x0, y0, x1, y1) on a scan


_URIS: OrderedDict[tuple, str] = OrderedDict()  # recent scans' data URIs: every re-draw of a page sends them again
_URI_CACHE_SIZE = 8


def data_uri(image: Image.Image, quality: int = 90) -> str:
    """A scan as a JPEG data URI for plotly's image traces (sent at full resolution, zoomed in the browser).

    Encoding a full-resolution scan takes a quarter of a second and the Explain page re-draws on every change of
    a setting, so the URIs of recent scans are kept, keyed by a digest of their pixels (hashing is ~20× faster).
    """
    key = (hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest(), image.size, image.mode, quality)
    uri = _URIS.get(key)
    if uri is None:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
        uri = _URIS[key] = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
        while len(_URIS) > _URI_CACHE_SIZE:
            _URIS.popitem(last=False)
    return uri


def _rgba(colour, alpha: float) -> str:
    return f"rgba({colour[0]},{colour[1]},{colour[2]},{alpha:.3f})"


def pair_figure(originals: Sequence[Image.Image], table: pd.DataFrame, digits: Sequence[Sequence[Digit]] = (),
                height: int | None = None, mark: str | None = None) -> go.Figure:
    """The pair view: two image traces, the rows of ``table`` as links (meta ``"link"``, a trace per sign and
    strength level, strongest last so it lies on top) with dots at their ends (meta ``"link ends"``), and with
    ``digits`` one box trace and one label trace (meta ``"digits"``).

    Parameters
    ----------
    originals : (PIL.Image, PIL.Image)
        The scans the table's ``orig…`` boxes are on.
    table : pandas.DataFrame
        Rows of ``Explanation.table`` with boxes on ``originals`` (offsets 0).
    digits : (list, list), optional
        Detected digits of each scan (:data:`Digit` tuples), e.g. from :func:`detected_digits`.
    height : int, optional
        Height of the figure on the page, in screen pixels (default: the pair's shape on a page-wide view,
        between :data:`MIN_HEIGHT` and :data:`MAX_HEIGHT`).
    mark : str, optional
        A warning written across the top left (e.g. that the network is untrained).
    """
    where = placement([image.size for image in originals])
    traces = [{"type": "image", "source": data_uri(image), "x0": left, "y0": 0, "dx": scale, "dy": scale,
               "hoverinfo": "skip"} for image, scale, left in zip(originals, where.scales, where.lefts, strict=True)]
    curves = link_geometry(table, where)
    traces += _link_traces(curves, VIEW_WIDTH / where.width)
    if digits:
        traces += _digit_traces(digits, where)
    if height is None:
        height = round(min(MAX_HEIGHT, max(MIN_HEIGHT, VIEW_WIDTH * (where.height + arch_height(curves))
                                                        / where.width)))
    # uirevision: a re-draw (another link chosen, fewer pairs) keeps the user's zoom
    layout = {"height": height, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "dragmode": "zoom",
              "plot_bgcolor": "white", "clickmode": "event+select", "uirevision": "pair",
              "xaxis": {"visible": False, "range": [0, where.width], "constrain": "domain"},
              "yaxis": {"visible": False, "autorange": "reversed", "scaleanchor": "x", "scaleratio": 1}}
    if mark:
        layout["annotations"] = [{"text": mark.upper(), "xref": "paper", "yref": "paper", "x": 0, "y": 1,
                                  "xanchor": "left", "yanchor": "top", "showarrow": False,
                                  "font": {"color": "white", "size": 14}, "bgcolor": "rgb(190,0,0)"}]
    # Built from plain dicts without plotly's per-property validation (the keys above are fixed and tested):
    # validating ~30 traces costs more than the rest of a re-draw.
    return go.Figure(data=traces, layout=layout, _validate=False)


def _link_traces(curves: list[dict], screen_scale: float) -> list[dict]:
    """The links as a few line traces, one per sign and strength level (:data:`LEVELS`), weakest first so the
    strongest lie on top, then one trace of dots at their ends (meta ``"link ends"``); every point carries
    ``[rank, relevance]`` and within a line trace the links are separated by gaps.

    A software-rendered browser spends more on plotly's set-up of each trace and on each drawn marker than on the
    rest of the page. So a level's links share a trace (:data:`LEVELS` steps of colour and width look the same as
    exact ones), and the lines draw no markers: plotly lets a click select only a trace with markers, so theirs
    are transparent and at most one is drawn (``maxdisplayed``), while the points a click needs, one every
    :data:`CLICK_SPACING` screen pixels at the default zoom, stay in the data (a spline through them keeps the
    curve smooth).
    """
    levels: dict[tuple, list[dict]] = {}
    for curve in curves[::-1]:  # weakest first: within a level too, the stronger links are drawn later
        level = max(1, math.ceil(curve["weight"] * LEVELS - 1e-9))
        levels.setdefault((level, curve["colour"]), []).append(curve)
    hover = "pair %{customdata[0]}: relevance %{customdata[1]:.3g}<extra></extra>"
    traces, ends = [], {"x": [], "y": [], "customdata": [], "color": []}
    for (level, colour), members in sorted(levels.items(), key=lambda item: item[0][0]):
        weight = level / LEVELS
        xs, ys, data = [], [], []
        for curve in members:
            x, y = _click_points(curve["x"], curve["y"], screen_scale)
            xs += [*x, None]
            ys += [*y, None]
            data += [[curve["rank"], curve["relevance"]]] * len(x) + [None]
            ends["x"] += [x[0], x[-1]]
            ends["y"] += [y[0], y[-1]]
            ends["customdata"] += [[curve["rank"], curve["relevance"]]] * 2
            ends["color"] += [_rgba(colour, 0.9)] * 2
        traces.append({
            "type": "scatter", "x": xs, "y": ys, "mode": "lines+markers", "meta": LINK, "customdata": data,
            "line": {"color": _rgba(colour, max(weight, 0.15)), "width": 1 + 3 * weight, "shape": "spline"},
            "marker": {"size": 1, "color": "rgba(0,0,0,0)", "maxdisplayed": 1}, "showlegend": False,
            "hovertemplate": hover})
    if ends["x"]:
        traces.append({"type": "scatter", "x": ends["x"], "y": ends["y"], "mode": "markers", "meta": ENDS,
                       "customdata": ends["customdata"], "marker": {"size": 9, "color": ends["color"]},
                       "showlegend": False, "hovertemplate": hover})
    return traces


def _click_points(x, y, screen_scale: float) -> tuple[list[float], list[float]]:
    """Points along a sampled curve, evenly spaced by length, at most :data:`CLICK_SPACING` screen pixels apart
    (at least 3): a click on the line is then near a point, which is what plotly selects."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    along = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    count = max(3, math.ceil(along[-1] * screen_scale / CLICK_SPACING) + 1)
    if along[-1] == 0:  # both ends at one place
        return [float(x[0])] * count, [float(y[0])] * count
    at = np.linspace(0.0, along[-1], count)
    return np.interp(at, along, x).tolist(), np.interp(at, along, y).tolist()


def _digit_traces(digits: Sequence[Sequence[Digit]], where: Placement) -> list[dict]:
    """Boxes (one trace, rectangles separated by gaps) and values (one text trace) of the detected digits."""
    xs, ys, tx, ty, text = [], [], [], [], []
    for found, scale, left in zip(digits, where.scales, where.lefts, strict=True):
        for value, x0, y0, x1, y1 in found:
            a, b, c, d = left + x0 * scale, y0 * scale, left + x1 * scale, y1 * scale
            xs += [a, c, c, a, a, None]
            ys += [b, b, d, d, b, None]
            tx.append((a + c) / 2)
            ty.append(b)
            text.append(str(value))
    return [{"type": "scatter", "x": xs, "y": ys, "mode": "lines", "meta": DIGITS, "hoverinfo": "skip",
             "showlegend": False, "line": {"color": "rgba(0,140,60,0.6)", "width": 1}},
            {"type": "scatter", "x": tx, "y": ty, "mode": "text", "text": text, "meta": DIGITS, "hoverinfo": "skip",
             "showlegend": False, "textposition": "top center",
             "textfont": {"color": "rgba(0,110,45,0.9)", "size": 10}}]


def link_traces(figure: go.Figure) -> list:
    """The figure's link traces (each holds the links of one sign and strength level)."""
    return [trace for trace in figure.data if trace.meta == LINK]


def chosen_rank(figure: go.Figure, points: Sequence[dict]) -> int | None:
    """The rank of the patch pair a plotly selection (``event.selection.points``) picked, or None."""
    for point in points:
        if point.get("customdata") is not None:
            value = point["customdata"]
            return int(value[0] if isinstance(value, list | tuple) else value)
        number, index = point.get("curve_number"), point.get("point_index", point.get("point_number"))
        if number is not None and index is not None and number < len(figure.data) \
                and figure.data[number].meta in (LINK, ENDS) and index < len(figure.data[number].customdata):
            picked = figure.data[number].customdata[index]
            if picked is not None:
                return int(picked[0])
    return None


def patch_crops(originals: Sequence[Image.Image], row: dict, margin: float = 1.0) -> tuple[Image.Image, Image.Image]:
    """The two patches of a table row cut from the original scans with a margin, enlarged, the patch outlined.

    Parameters
    ----------
    originals : (PIL.Image, PIL.Image)
    row : dict
        A row of ``Explanation.table`` (boxes ``orig1_x0 …`` on ``originals``).
    margin : float
        Margin on each side, in patch sizes: the context around the patch.
    """
    crops = []
    for side, image in enumerate(originals, start=1):
        x0, y0, x1, y1 = (float(row[f"orig{side}_{c}"]) for c in ("x0", "y0", "x1", "y1"))
        dx, dy = margin * (x1 - x0), margin * (y1 - y0)
        box = (max(0, round(x0 - dx)), max(0, round(y0 - dy)), min(image.width, round(x1 + dx)),
               min(image.height, round(y1 + dy)))
        crop = image.convert("RGB").crop(box)
        zoom = max(1.0, CROP_HEIGHT / max(1, crop.height))
        crop = crop.resize((max(1, round(crop.width * zoom)), max(1, round(crop.height * zoom))),
                           Image.Resampling.LANCZOS)
        outline = (220, 20, 20) if float(row["relevance"]) > 0 else (20, 70, 230)
        ImageDraw.Draw(crop).rectangle(((x0 - box[0]) * zoom, (y0 - box[1]) * zoom, (x1 - box[0]) * zoom - 1,
                                        (y1 - box[1]) * zoom - 1), outline=outline, width=2)
        crops.append(crop)
    return crops[0], crops[1]


def detected_digits(model, image: Image.Image, threshold: float = 0.4) -> list[Digit]:
    """The digits the bigram network's detector finds on a scan, as boxes in the scan's pixels.

    :func:`bilrp_core.bigram.detect_digits` gives centres on the scan; a box is one print height (measured on
    the scan as the page normalisation does) tall and 0.7 of it wide.
    """
    from bilrp_core.bigram import detect_digits
    from bilrp_core.page_ink import estimate_component_height, to_ink

    network = getattr(model, "model", model)  # a rotation/flip-max wrapper: its network
    measured = estimate_component_height(to_ink(image)) or network.component_height
    half_h, half_w = measured / 2, 0.35 * measured
    return [(int(value), x - half_w, y - half_h, x + half_w, y + half_h)
            for value, x, y, _ in detect_digits(network, image, threshold)]


def digits_in_patches(table: pd.DataFrame, digits: Sequence[Sequence[Digit]]) -> tuple[list[str], list[str]]:
    """For each row of ``table``, the digits whose centres lie in its patch on scan A and on scan B, in reading
    order (top to bottom by line, then left to right), e.g. ``"2 3"``."""
    named = ([], [])
    for row in table.to_dict("records"):
        for side, found in enumerate(digits, start=1):
            x0, y0, x1, y1 = (row[f"orig{side}_{c}"] for c in ("x0", "y0", "x1", "y1"))
            inside = [(value, (a + c) / 2, (b + d) / 2, d - b) for value, a, b, c, d in found
                      if x0 <= (a + c) / 2 < x1 and y0 <= (b + d) / 2 < y1]
            inside.sort(key=lambda d: (round(d[2] / max(d[3], 1.0)), d[1]))
            named[side - 1].append(" ".join(str(d[0]) for d in inside))
    return named
