"""The Explain page's zoomable pair view (explorer.pair_view): traces, image sizes, crops and digits."""

import base64
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw

from corpus_index.figure import placement
from explorer.pair_view import (
    CLICK_SPACING,
    CROP_HEIGHT,
    DIGITS,
    ENDS,
    LEVELS,
    VIEW_WIDTH,
    chosen_rank,
    data_uri,
    detected_digits,
    digits_in_patches,
    link_traces,
    pair_figure,
    patch_crops,
)
from tests.test_figure import pairs_table, scans


def drawn_ranks(figure) -> list[int]:
    """The ranks of the patch pairs drawn, in drawing order (the last lies on top)."""
    ranks = []
    for trace in link_traces(figure):
        for point in trace.customdata:
            if point is not None and (not ranks or ranks[-1] != point[0]):
                ranks.append(int(point[0]))
    return ranks


def test_every_pair_drawn_once_strongest_on_top_and_the_scans_at_their_own_size():
    originals = scans()
    table = pairs_table()
    figure = pair_figure(originals, table)
    assert drawn_ranks(figure) == [2, 1]  # each pair once, the strongest drawn last (on top)
    images = [trace for trace in figure.data if trace.type == "image"]
    assert len(images) == 2
    for trace, original in zip(images, originals, strict=True):
        shown = Image.open(io.BytesIO(base64.b64decode(trace.source.split(",")[1])))
        assert shown.size == original.size  # sent at full resolution: zoom reveals the scan's own pixels
    assert images[0].dx == 1 and images[1].dx == 2  # the shorter scan is scaled to the taller one's height
    assert drawn_ranks(pair_figure(originals, table.head(1))) == [1]
    assert not [t for t in figure.data if t.meta == DIGITS]


def many_pairs(count: int, rng) -> pd.DataFrame:
    """``count`` random patch pairs on :func:`scans` (16-px squares on A, 8-px on B), strongest first."""
    x1, y1 = rng.integers(0, 184, count), rng.integers(0, 284, count)
    x2, y2 = rng.integers(0, 112, count), rng.integers(0, 142, count)
    relevance = np.sort(rng.uniform(0.01, 1.0, count))[::-1] * rng.choice([-1.0, 1.0], count)
    return pd.DataFrame({"rank": np.arange(1, count + 1), "relevance": relevance, "orig1_x0": x1, "orig1_y0": y1,
                         "orig1_x1": x1 + 16, "orig1_y1": y1 + 16, "orig2_x0": x2, "orig2_y0": y2,
                         "orig2_x1": x2 + 8, "orig2_y1": y2 + 8})


def test_links_share_a_trace_per_sign_and_level_and_keep_their_own_points_and_colour():
    table = many_pairs(60, np.random.default_rng(1))
    figure = pair_figure(scans(), table)
    links = link_traces(figure)
    assert len(links) <= 2 * LEVELS  # a trace per sign and strength level, however many pairs are drawn
    assert sorted(drawn_ranks(figure)) == list(range(1, 61))
    strongest = abs(table["relevance"]).max()
    for trace in links:
        gaps = [i for i, x in enumerate(trace.x) if x is None]
        starts = [0] + [g + 1 for g in gaps[:-1]]
        assert gaps[-1] == len(trace.x) - 1 and all(y is None for y in (trace.y[g] for g in gaps))
        for start, gap in zip(starts, gaps, strict=True):
            ranks = {trace.customdata[i][0] for i in range(start, gap)}
            assert len(ranks) == 1  # a link's points name its pair (what a click on any of them chooses)
            row = table[table["rank"] == ranks.pop()].iloc[0]
            assert all(trace.customdata[i][1] == row["relevance"] for i in range(start, gap))
            level = trace.line.width  # the link's width and colour follow its sign and strength (to 1/LEVELS)
            assert abs((level - 1) / 3 - abs(row["relevance"]) / strongest) <= 1 / LEVELS + 1e-9
            assert trace.line.color.startswith("rgba(220,20,20," if row["relevance"] > 0 else "rgba(20,70,230,")
            assert gap - start >= 3
    dots = [t for t in figure.data if t.meta == ENDS]
    assert len(dots) == 1 and dots[0].marker.size == 9
    for rank, relevance in {tuple(point) for point in dots[0].customdata}:  # two dots a link, in its colour
        at = [i for i, point in enumerate(dots[0].customdata) if point[0] == rank]
        assert len(at) == 2 and all(dots[0].customdata[i][1] == relevance for i in at)
        assert all(dots[0].marker.color[i].startswith("rgba(220,20,20," if relevance > 0 else "rgba(20,70,230,")
                   for i in at)
    assert sorted(dots[0].customdata[i][0] for i in range(0, len(dots[0].x), 2)) == list(range(1, 61))


def test_a_link_keeps_a_clickable_point_every_few_screen_pixels():
    originals = scans()
    figure = pair_figure(originals, many_pairs(20, np.random.default_rng(2)))
    where = placement([image.size for image in originals])
    screen = VIEW_WIDTH / where.width  # screen pixels per picture pixel at the default zoom
    for trace in link_traces(figure):
        points = np.array([(np.nan, np.nan) if x is None else (x, y) for x, y in zip(trace.x, trace.y, strict=True)])
        for link in np.split(points, np.flatnonzero(np.isnan(points[:, 0]))):
            link = link[~np.isnan(link[:, 0])]
            if not len(link):
                continue
            steps = np.hypot(*np.diff(link, axis=0).T) * screen
            assert steps.max() <= CLICK_SPACING + 1e-6  # a click on the line lands within plotly's reach of a point
            assert len(link) == 3 or steps.mean() > CLICK_SPACING / 2  # and no more points than that needs


def test_a_click_on_a_link_names_its_pair():
    figure = pair_figure(scans(), pairs_table())
    weakest = figure.data.index(link_traces(figure)[0])
    assert chosen_rank(figure, [{"curve_number": weakest, "point_index": 1}]) == 2
    assert chosen_rank(figure, [{"curve_number": weakest, "point_number": 0}]) == 2
    assert chosen_rank(figure, [{"curve_number": weakest, "customdata": [2, -1.0]}]) == 2
    dots = next(i for i, t in enumerate(figure.data) if t.meta == ENDS)
    assert chosen_rank(figure, [{"curve_number": dots, "point_index": 3}]) == 1  # the strongest link's end
    assert chosen_rank(figure, [{"curve_number": 0, "point_index": 5}]) is None  # a click on a scan: nothing
    gap = list(figure.data[weakest].x).index(None)
    assert chosen_rank(figure, [{"curve_number": weakest, "point_index": gap}]) is None
    assert chosen_rank(figure, []) is None


def test_patch_crops_are_cut_from_the_scans_with_a_margin_and_enlarged():
    page = Image.new("RGB", (200, 300), "white")
    page.paste((0, 0, 0), (12, 22, 24, 34))  # ink inside the first pair's patch on scan A (10, 20, 26, 36)
    originals = (page, scans()[1])
    first, second = patch_crops(originals, pairs_table().iloc[0].to_dict())
    assert first.height >= CROP_HEIGHT and second.height >= CROP_HEIGHT
    # one patch (16 px) of margin on each side, cut at the scan's left edge: x 0–42, y 4–52, enlarged 5×
    assert first.size == (42 * 5, 48 * 5)
    pixels = np.asarray(first)
    assert pixels[(28 - 4) * 5, 18 * 5].max() < 30  # the ink, where the scan has it
    assert pixels[(45 - 4) * 5, 35 * 5].min() > 225  # the margin: white paper, as on the scan
    assert second.size == (24 * 10, 24 * 10)  # an 8-px patch with its margin: 24 px, enlarged 10×


def test_digits_boxes_and_the_digits_inside_each_patch():
    table = pairs_table()
    digits = ([(2, 10, 20, 17, 34), (3, 18, 21, 25, 35), (9, 150, 150, 160, 160)], [(7, 50, 60, 58, 68)])
    named_a, named_b = digits_in_patches(table, digits)
    assert named_a == ["2 3", ""] and named_b == ["7", ""]
    figure = pair_figure(scans(), table, digits)
    boxes, labels = [t for t in figure.data if t.meta == DIGITS]
    assert list(labels.text) == ["2", "3", "9", "7"]
    assert sum(x is None for x in boxes.x) == 4  # one closed rectangle per digit


def test_the_figure_is_valid_plotly_although_built_without_validation():
    figure = pair_figure(scans(), pairs_table(), ([(2, 10, 20, 17, 34)], []), mark="untrained network")
    checked = go.Figure(figure.to_dict())  # validates every property: a misspelt key or bad value raises
    assert checked.to_dict() == figure.to_dict()
    assert checked.layout.annotations[0].text == "UNTRAINED NETWORK" and checked.layout.yaxis.autorange == "reversed"


def test_detected_digits_of_a_bigram_network_are_boxes_on_the_scan():
    from bilrp_core.bigram import bigram_network

    torch.manual_seed(0)
    model = bigram_network(pretrained=False, width=4)
    page = Image.new("L", (160, 80), 255)
    ImageDraw.Draw(page).text((20, 30), "12 34 56", fill=0)
    found = detected_digits(model, page, threshold=0.0)
    assert isinstance(found, list)
    for value, x0, y0, x1, y1 in found:
        assert 0 <= value <= 9 and x0 < x1 and y0 < y1
        assert -20 < (x0 + x1) / 2 < 180 and -20 < (y0 + y1) / 2 < 100  # on the scan, in its pixels


def test_data_uri_is_kept_per_pixels_not_per_object():
    page = Image.new("RGB", (60, 40), "white")
    first = data_uri(page)
    assert data_uri(page.copy()) == first  # a fresh copy of the same scan (the page's cached reads give copies)
    ImageDraw.Draw(page).rectangle((5, 5, 20, 20), fill="black")
    changed = data_uri(page)
    assert changed != first  # other pixels: encoded anew, never a stale picture
    decoded = Image.open(io.BytesIO(base64.b64decode(changed.split(",", 1)[1])))
    assert decoded.size == (60, 40) and decoded.getpixel((10, 10))[0] < 60
