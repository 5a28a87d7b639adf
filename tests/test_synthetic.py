"""Tests of the embedded demo corpus (corpus_index.synthetic): values, editions, files, glyph boxes, CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from corpus_index.synthetic import (
    TYPEFACES,
    clime_latitude,
    digit_training_pages,
    generate_corpus,
    illustration_groups,
    render_diagram,
    render_table_page,
    sexagesimal,
    solar_declination,
    sun_longitude,
    table_groups,
)
from corpus_index.synthetic.__main__ import main
from corpus_index.synthetic.degrade import geometry_matrix, map_boxes, warp
from corpus_index.synthetic.pages import copying_errors
from corpus_index.synthetic.tables import declination_table, rising_signs_table
from corpus_index.synthetic.typesetting import TableStyle

REQUIRED = ["path", "kind", "group", "book", "title", "author", "printer", "place", "year", "page"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    meta = generate_corpus(out, books=3, seed=0, workers=1)
    return out, meta


# --- table values --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,deg,minutes", [("2328", 23, 28), ("2330", 23, 30), ("2333", 23, 33)])
def test_declination_at_ninety_degrees_is_the_obliquity(key, deg, minutes):
    assert sexagesimal(solar_declination(90.0, deg + minutes / 60)) == (deg, minutes)
    spec = declination_table(key)
    last = spec.rows[-1]  # 30 degrees of Gemini = longitude 90
    assert last[0] == "30" and last[5:7] == [str(deg), str(minutes)]
    # 30 degrees of Aries: sin(dec) = sin(eps) sin(30) -> about 11 degrees 30 minutes
    expected = math.degrees(math.asin(math.sin(math.radians(deg + minutes / 60)) / 2))
    assert spec.rows[-1][1:3] == [str(v) for v in sexagesimal(expected)]


def test_climata_latitudes():
    lat13 = clime_latitude(13.0, 23 + 33 / 60)
    assert abs(lat13 - (16 + 40 / 60)) < 5 / 60  # Meroe, first clime: about 16 degrees 40 minutes
    assert clime_latitude(12.0, 23.5) == pytest.approx(0.0, abs=1e-9)
    assert 47.5 < clime_latitude(16.0, 23.5) < 49.5  # seventh clime
    spec = next(t for t in table_groups() if t.group == "climata-2333")
    medium_i = next(r for r in spec.rows if r[0] == "I")
    assert medium_i[3:5] == ["13", "0"] and medium_i[5:7] == ["11", "0"] and medium_i[7:9] == ["16", "40"]
    with pytest.raises(ValueError, match="longest_day_hours"):
        clime_latitude(25.0, 23.5)


def test_rising_times_and_sun_place():
    spec = rising_signs_table("2330", (45.0,), ("Venetiae",))
    right = [spec.values[(s, "recta")] for s in range(12)]
    oblique = [spec.values[(s, 45.0)] for s in range(12)]
    assert sum(right) == pytest.approx(360.0) and sum(oblique) == pytest.approx(360.0)
    assert oblique[0] < right[0] < oblique[6]  # Aries rises quickly, Libra slowly in the northern oblique sphere
    assert right[0] == pytest.approx(27.9, abs=0.1)
    # Julian calendar, 1500: the vernal equinox falls on 11 March
    assert sun_longitude(1500, 3, 10) > 355 and sun_longitude(1500, 3, 11) < 1.0


def test_every_table_spec_is_rectangular():
    for spec in table_groups():
        assert all(len(row) == spec.n_columns == len(spec.numeric) for row in spec.rows), spec.group
    assert len({t.group for t in table_groups()}) == len(table_groups())
    assert len({d.group for d in illustration_groups()}) == len(illustration_groups())


def test_copying_errors_change_exactly_that_many_digits():
    spec = declination_table("2330")
    cells, made = copying_errors(spec, np.random.default_rng(3), 3)
    changed = [(a, b) for ra, rb in zip(spec.rows, cells, strict=True) for a, b in zip(ra, rb, strict=True)
               if a != b]
    assert made == 3 and len(changed) == 3
    assert all(len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1 for a, b in changed)


# --- the written corpus --------------------------------------------------------------------------------------

def test_csv_columns_kinds_and_files(corpus):
    out, meta = corpus
    on_disk = pd.read_csv(out / "metadata.csv")
    assert set(REQUIRED) <= set(on_disk.columns)
    assert len(on_disk) == len(meta) > 0
    assert set(on_disk["kind"]) == {"table", "illustration"}
    assert on_disk.groupby("book")["kind"].nunique().min() == 2  # every book mixes tables and woodcuts
    assert on_disk["year"].between(1472, 1650).all()
    assert on_disk["path"].is_unique
    for row in on_disk.itertuples():
        assert row.path.startswith("images/") and row.path == f"images/{row.book}_{row.page:03d}.png"
        with Image.open(out / row.path) as im:
            assert im.size == (row.width, row.height)
            assert 550 <= im.height <= 950
    glyphs = pd.read_csv(out / "glyphs.csv")
    assert list(glyphs.columns) == ["path", "digit", "x0", "y0", "x1", "y1"]
    assert set(glyphs["path"]) <= set(on_disk["path"])
    assert set(glyphs["digit"]) == set(range(10))


def test_table_groups_have_editions_in_different_typefaces(corpus):
    _, meta = corpus
    tables = meta[meta["kind"] == "table"]
    assert tables["group"].nunique() >= 4
    for group, rows in tables.groupby("group"):
        assert len(rows) >= 2, group
        assert rows["typeface"].nunique() >= 2, group
        assert rows["book"].nunique() == len(rows), group


@pytest.mark.slow
def test_same_seed_same_files_other_seed_differs(tmp_path):
    a = generate_corpus(tmp_path / "a", books=2, seed=7, workers=1)
    b = generate_corpus(tmp_path / "b", books=2, seed=7, workers=2)
    c = generate_corpus(tmp_path / "c", books=2, seed=8, workers=1)
    for name in ("metadata.csv", "glyphs.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    first = a["path"].iloc[0]
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / first).read_bytes()
    assert a.equals(b) and not a.equals(c)


def test_glyph_boxes_lie_in_the_image_and_cover_ink(corpus):
    out, meta = corpus
    glyphs = pd.read_csv(out / "glyphs.csv")
    assert len(glyphs) > 500
    sizes = meta.set_index("path")[["width", "height"]]
    rng = np.random.default_rng(0)
    for path, boxes in glyphs.groupby("path"):
        w, h = sizes.loc[path]
        assert (boxes.x0 >= 0).all() and (boxes.y0 >= 0).all()
        assert (boxes.x1 <= w).all() and (boxes.y1 <= h).all()
        assert ((boxes.x1 > boxes.x0) & (boxes.y1 > boxes.y0)).all()
        grey = np.asarray(Image.open(out / path).convert("L"), dtype=float)
        paper, ink = np.median(grey), np.percentile(grey, 0.5)
        darkness = (paper - grey) / (paper - ink)
        inside, elsewhere = [], []
        for b in boxes.itertuples():
            patch = darkness[b.y0:b.y1, b.x0:b.x1]
            assert patch.max() > 0.4, (path, b)  # every box holds clearly inked pixels
            inside.append(patch.mean())
            bw, bh = b.x1 - b.x0, b.y1 - b.y0
            x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
            elsewhere.append(darkness[y:y + bh, x:x + bw].mean())
        if len(boxes) >= 50:  # a table page: its digits are far darker than random spots of the same size
            assert np.mean(inside) > 3 * max(np.mean(elsewhere), 0.02), path


def test_composed_boxes_are_tight_on_ink():
    spec = table_groups()[0]
    for name in TYPEFACES:
        page, boxes = render_table_page(spec, TableStyle(typeface=name, page_size=(500, 740)), folio=12)
        ink = np.asarray(page) < 195
        assert len(boxes) > 300
        for _, x0, y0, x1, y1 in boxes:
            patch = ink[y0:y1, x0:x1]
            # Tight: ink touches all four sides of the box.
            assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()


def test_boxes_follow_skew_crop_and_scale():
    image = np.full((100, 200), 255, np.uint8)
    image[40:50, 60:70] = 0
    for skew, scale, crop in [(0.0, 0.5, (0, 0, 0, 0)), (0.0, 1.3, (0.1, 0.1, 0, 0)), (4.0, 0.9, (0.05, 0, 0, 0.1))]:
        matrix, size = geometry_matrix((200, 100), skew, scale, crop)
        out = np.asarray(warp(Image.fromarray(image), matrix, size)) < 128
        ys, xs = np.nonzero(out)
        (_, x0, y0, x1, y1), = map_boxes([("1", 60, 40, 70, 50)], matrix, size)
        assert abs(xs.min() - x0) <= 1 and abs(ys.min() - y0) <= 1
        assert abs(xs.max() + 1 - x1) <= 1 and abs(ys.max() + 1 - y1) <= 1


# --- woodcuts ------------------------------------------------------------------------------------------------

def test_diagram_editions_rotate_and_mirror():
    spec = next(d for d in illustration_groups() if d.group == "eclipsis-lunae")
    base = np.asarray(render_diagram(spec, size=240, seed=1)) < 128
    turned = np.asarray(render_diagram(spec, size=240, rotation=90, seed=1)) < 128
    assert np.array_equal(turned, np.rot90(base))
    flipped = np.asarray(render_diagram(spec, size=240, flip=True, seed=1)) < 128

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    assert iou(flipped, base[:, ::-1]) > 0.5 > iou(flipped, base)  # mirrored geometry, not the same cut
    for d in illustration_groups():
        ink = (np.asarray(render_diagram(d, size=200)) < 128).mean()
        assert 0.02 < ink < 0.6, d.group


# --- detector training patches -------------------------------------------------------------------------------

def test_digit_training_pages_centres_inside_and_on_ink():
    pages = digit_training_pages(12, seed=1, size=(64, 128))
    assert len(pages) == 12
    total = 0
    for image, centres in pages:
        assert image.mode == "L" and image.size == (128, 64)
        grey = np.asarray(image, dtype=float)
        paper = np.median(grey)
        for digit, cx, cy in centres:
            assert 0 <= digit <= 9 and 0 <= cx < 128 and 0 <= cy < 64
            y, x = int(cy), int(cx)
            window = grey[max(0, y - 3):y + 4, max(0, x - 3):x + 4]
            assert window.min() < paper - 40  # ink near every centre
        total += len(centres)
    assert total > 20
    assert any(not c for _, c in pages)  # negatives without digits are part of the mix
    again = digit_training_pages(3, seed=1, size=(64, 128))
    assert all(np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and a[1] == b[1]
               for a, b in zip(pages[:3], again, strict=True))


def test_digit_training_pages_font_selection():
    held_out = "Crimson Text"
    others = [n for n in TYPEFACES if n != held_out]
    assert len(digit_training_pages(2, seed=0, fonts=others, size=(48, 96))) == 2
    assert TYPEFACES["EB Garamond"].oldstyle and not TYPEFACES["Crimson Text"].oldstyle
    with pytest.raises(ValueError, match="unknown typeface"):
        digit_training_pages(1, fonts=["Comic Sans"])
    with pytest.raises(ValueError, match="n must be"):
        digit_training_pages(-1)


def test_training_typefaces_print_digits_with_tight_boxes_and_stay_out_of_the_demo_corpus():
    from corpus_index.synthetic.fonts import TRAINING_TYPEFACES

    assert not set(TRAINING_TYPEFACES) & set(TYPEFACES)
    spec = table_groups()[0]
    for name in TRAINING_TYPEFACES:
        page, boxes = render_table_page(spec, TableStyle(typeface=name, page_size=(500, 740)), folio=12)
        ink = np.asarray(page) < 195
        assert len(boxes) > 300, name
        _, x0, y0, x1, y1 = boxes[0]
        assert ink[y0:y1, x0:x1].mean() > 0.1, name


def test_training_book_pages_give_whole_pages_with_digit_boxes_on_ink():
    from corpus_index.synthetic.training import training_book_pages

    pages = list(training_book_pages(4, seed=3, fonts=["Vollkorn", "Spectral"], tables_share=0.5))
    assert len(pages) == 4 and max(len(b) for _, b in pages) > 100
    for scan, boxes in pages:
        grey = np.asarray(scan.convert("L"), dtype=float)
        for digit, x0, y0, x1, y1 in boxes[:20]:
            assert 0 <= digit <= 9 and grey[int(y0):int(y1) + 1, int(x0):int(x1) + 1].min() < np.median(grey) - 40
    again = next(training_book_pages(1, seed=3, fonts=["Vollkorn", "Spectral"], tables_share=0.5))
    assert np.array_equal(np.asarray(again[0]), np.asarray(pages[0][0]))


# --- bad input -----------------------------------------------------------------------------------------------

def test_cli_rejects_bad_out_and_negative_books(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    assert main(["--out", str(a_file), "--books", "1"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x"), "--books", "-2"])
    assert exit_info.value.code == 2
    assert "--books" in capsys.readouterr().err


def test_refuses_foreign_non_empty_folder(tmp_path):
    (tmp_path / "metadata.csv").write_text("my own catalogue\n")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_corpus(tmp_path, books=1)
    assert (tmp_path / "metadata.csv").read_text() == "my own catalogue\n"
    with pytest.raises(ValueError, match="books"):
        generate_corpus(tmp_path / "new", books=-1)


@pytest.mark.slow
def test_cli_writes_a_small_corpus(tmp_path):
    assert main(["--out", str(tmp_path / "c"), "--books", "1", "--seed", "3", "--workers", "1"]) == 0
    meta = pd.read_csv(tmp_path / "c" / "metadata.csv")
    assert len(meta) >= 8 and (tmp_path / "c" / "glyphs.csv").is_file()
    # Writing again into the same demo folder is allowed and gives the same catalogue.
    assert main(["--out", str(tmp_path / "c"), "--books", "1", "--seed", "3", "--workers", "1"]) == 0
    assert pd.read_csv(tmp_path / "c" / "metadata.csv").equals(meta)
