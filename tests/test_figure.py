"""Publication figures of a pair explanation (corpus_index.figure): full resolution, caption, untrained mark."""

import datetime
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from corpus_index.figure import (
    caption_text,
    figure_bytes,
    link_geometry,
    mark_annotation,
    mark_table,
    pair_figure,
    placement,
    stamp_untrained,
)
from corpus_index.models import UNTRAINED_MARK


def scans():
    rng = np.random.default_rng(0)
    return (Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 255, (150, 120, 3), dtype=np.uint8)))


def pairs_table():
    """Two patch pairs as Explanation.table gives them (boxes on the scans)."""
    rows = [{"rank": 1, "relevance": 2.0, "orig1_x0": 10, "orig1_y0": 20, "orig1_x1": 26, "orig1_y1": 36,
             "orig2_x0": 50, "orig2_y0": 60, "orig2_x1": 58, "orig2_y1": 68},
            {"rank": 2, "relevance": -1.0, "orig1_x0": 100, "orig1_y0": 200, "orig1_x1": 116, "orig1_y1": 216,
             "orig2_x0": 0, "orig2_y0": 0, "orig2_x1": 8, "orig2_y1": 8}]
    return pd.DataFrame(rows)


ITEMS = ({"book": "B01", "title": "De la sfera del mondo", "year": 1585.0, "page": 60}, None)
CAPTION = caption_text(ITEMS, ("#1", "the uploaded scan"), "Bigram network", "0.5", 0.987,
                       datetime.date(2026, 11, 30))


def test_caption_names_both_items_model_gamma_score_and_date():
    assert CAPTION.startswith("A: B01, De la sfera del mondo, 1585, p. 60. B: the uploaded scan.")
    for part in ("Bigram network", "γ 0.5", "0.987", "2026-11-30"):
        assert part in CAPTION
    marked = caption_text(ITEMS, ("#1", "#2"), "VGG-16", "default", 1.0, untrained=True)
    assert UNTRAINED_MARK.upper() in marked


def test_placement_keeps_the_taller_scan_at_full_resolution_and_curves_join_box_centres():
    where = placement([(200, 300), (120, 150)])
    assert where.scales == (1.0, 2.0) and where.height == 300
    assert where.width == pytest.approx(200 + 0.06 * (200 + 240) + 240)
    first, second = link_geometry(pairs_table(), where)
    assert (first["x"][0], first["y"][0]) == (18, 28)  # centre of box 1 on scan A
    assert first["x"][-1] == pytest.approx(where.lefts[1] + 54 * 2) and first["y"][-1] == pytest.approx(128)
    assert first["y"].min() < 28  # the curve arches above its ends
    assert first["weight"] == 1 and second["weight"] == 0.5 and second["colour"] != first["colour"]


def test_png_is_at_least_the_scans_resolution():
    originals = scans()
    figure = pair_figure(originals, pairs_table(), CAPTION)
    png = Image.open(io.BytesIO(figure_bytes(figure, "png")))
    where = placement([image.size for image in originals])
    assert png.width >= where.width and png.height >= where.height  # the caption adds height


def test_svg_and_pdf_carry_the_caption():
    figure = pair_figure(scans(), pairs_table(), CAPTION, untrained=True)
    svg = figure_bytes(figure, "svg", CAPTION).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "De la sfera del mondo" in svg and "2026-11-30" in svg  # text kept as text, not paths
    assert UNTRAINED_MARK.upper() in svg
    pdf = figure_bytes(figure, "pdf", CAPTION)
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    assert CAPTION.encode("utf-16-be") in pdf  # the document's Subject (a PDF text string in UTF-16)
    with pytest.raises(ValueError, match="figure format"):
        figure_bytes(figure, "gif")


def test_untrained_marks_on_pictures_tables_and_annotations():
    picture = Image.new("RGB", (400, 100), "white")
    stamped = np.asarray(stamp_untrained(picture))
    assert (stamped[:5, :, 0] > 150).all() and (stamped[:5, :, 1] < 50).all()  # a red band across the top
    assert np.asarray(picture).min() == 255  # the original is left alone
    table = pairs_table()
    assert mark_table(table, False) is table
    assert set(mark_table(table, True)["note"]) == {UNTRAINED_MARK}
    annotation = {"body": [{"type": "TextualBody", "value": "BiLRP explanation"}], "explanation": {"score": 1}}
    marked = mark_annotation(annotation, True)
    assert marked["body"][0]["value"].startswith(UNTRAINED_MARK.upper())
    assert marked["explanation"]["warning"] == UNTRAINED_MARK
    assert annotation["body"][0]["value"] == "BiLRP explanation"  # not changed in place
    json.dumps(marked)


def test_screen_picture_has_the_asked_height_and_draws_the_links():
    from corpus_index.figure import pair_picture

    originals = (Image.new("RGB", (200, 300), "white"), Image.new("RGB", (120, 150), "white"))
    picture = pair_picture(originals, pairs_table(), height=150)
    where = placement([image.size for image in originals])
    assert picture.width == round(where.width / 2) and picture.height > 150  # room for the arches above
    pixels = np.asarray(picture, dtype=int)
    assert (pixels[..., 0] - pixels[..., 2] > 60).any() and (pixels[..., 2] - pixels[..., 0] > 60).any()
    blank = np.asarray(pair_picture(originals, pairs_table().head(0), height=150))
    assert blank.min() == 255  # no table rows, no curves


@pytest.mark.slow  # ingests a tiny corpus and computes an explanation through the command line
def test_cli_explain_of_an_untrained_network_is_marked(tmp_path, capsys):
    from tiny_corpus import SMALL_VGG_KEY, write_source

    from corpus_index.cli import main
    from corpus_index.models import is_untrained

    assert is_untrained(SMALL_VGG_KEY)
    source = write_source(tmp_path / "source", per_book=1)
    root = tmp_path / "root"
    assert main(["--root", str(root), "ingest", str(source), "--csv", str(source / "metadata.csv")]) == 0
    png, csv = tmp_path / "pair.png", tmp_path / "pairs.csv"
    assert main(["--root", str(root), "explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", str(png), "--csv",
                 str(csv), "--pool", "8", "--pairs", "3"]) == 0
    assert UNTRAINED_MARK in capsys.readouterr().out
    band = np.asarray(Image.open(png).convert("RGB"))[:4]
    assert (band[..., 0] > 150).all() and (band[..., 1] < 50).all()  # the red band of the mark
    assert set(pd.read_csv(csv)["note"]) == {UNTRAINED_MARK}
