"""Folder ingest: metadata CSV, derived metadata, every kind of bad input, re-ingest, thumbnails."""

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from corpus_index.ingest.folder import ingest_folder
from corpus_index.ingest.images import ImageRejected, load_item_image, open_validated
from corpus_index.ingest.metadata_csv import check_metadata_csv
from corpus_index.ingest.run import IngestReport
from corpus_index.storage.store import Store


def _image(path: Path, size=(40, 30), colour=(200, 180, 150), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    image.putpixel((1, 1), (0, 0, 0))  # make every image's bytes depend on its colour and size only
    image.save(path, format=fmt)
    return path


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (the shape of a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "root")
    yield store
    store.close()


def _write_csv(path: Path, rows: list[str]) -> Path:
    header = "path,kind,group,book,title,author,printer,place,year,page,shelfmark,notes,region"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_folder_with_csv(store, tmp_path):
    folder = tmp_path / "scans"
    _image(folder / "b1" / "p1.png", colour=(10, 20, 30))
    _image(folder / "b1" / "p2.jpg", colour=(40, 50, 60))
    _image(folder / "b2" / "scan10.tif", colour=(70, 80, 90))
    _image(folder / "b2" / "scan9.tiff", colour=(100, 110, 120))
    (folder / "readme.txt").write_text("not a scan, ignored")
    _write_csv(folder / "metadata.csv", [
        "b1/p1.png,table,climata,B1,Sphaera,Sacrobosco,Giunta,Venezia,1540,1,Rar. 4°,first,",
        "b1/p2.jpg,diagram,,B1,Sphaera,Sacrobosco,Giunta,Venezia,1540,2,,,",
        "b1/p2.jpg,diagram,,B1,Sphaera,Sacrobosco,Giunta,Venezia,1540,2,,detail,\"5,5,10,8\"",
    ])
    calls = []
    report = ingest_folder(store, folder, progress=lambda done, total, msg: calls.append((done, total)))
    assert report.skipped == []
    assert len(report.added) == 5 and report.duplicates == []
    assert calls[-1] == (5, 5)

    first = store.get_item(report.added[0])
    assert first["kind"] == "table" and first["group"] == "climata" and first["book"] == "B1"
    assert first["title"] == "Sphaera" and first["year"] == 1540 and first["place"] == "Venezia"
    assert first["extra"] == {"shelfmark": "Rar. 4°", "notes": "first"}
    assert Path(first["path"]).is_absolute() and Path(first["path"]) == (folder / "b1" / "p1.png").resolve()
    assert first["source"] == str(folder / "b1" / "p1.png")
    assert first["width"] == 40 and first["height"] == 30
    region = store.query_items(ids=[report.added[2]]).iloc[0]
    assert region["region"] == "5,5,10,8" and region["width"] == 10 and region["height"] == 8
    assert load_item_image(region["path"], region["region"]).size == (10, 8)

    # Files without a row: book from their folder, page from their natural order (scan9 before scan10).
    derived = store.query_items(book="b2")
    assert list(derived["label"]) == ["scan9", "scan10"] and list(derived["page"]) == [1, 2]
    assert derived["year"].isna().all()

    for item in store.query_items().itertuples():
        thumb = store.resolve_path(item.thumb)
        assert thumb.is_file() and thumb.is_relative_to(store.root / "thumbs")
        with Image.open(thumb) as image:
            assert max(image.size) <= 256

    log = store.ingest_log()
    assert list(log["added"]) == [5] and list(log["kind"]) == ["folder"]


def test_reingest_adds_nothing(store, tmp_path):
    folder = tmp_path / "scans"
    _image(folder / "a.png", colour=(1, 2, 3))
    _image(folder / "b.png", colour=(4, 5, 6))
    first = ingest_folder(store, folder)
    second = ingest_folder(store, folder)
    assert len(first.added) == 2
    assert second.added == [] and sorted(i for _, i in second.duplicates) == sorted(first.added)
    # The same bytes under another name are the same item.
    (folder / "copy.png").write_bytes((folder / "a.png").read_bytes())
    third = ingest_folder(store, folder)
    assert third.added == [] and len(third.duplicates) == 3
    assert store.count_items() == 2


def test_bad_input_is_reported_and_the_rest_goes_in(store, tmp_path):
    folder = tmp_path / "scans"
    outside = _image(tmp_path / "outside.png", colour=(9, 9, 9))
    good = [_image(folder / "good1.png", colour=(1, 1, 1)),
            _image(folder / "sub" / "good2.jpg", colour=(2, 2, 2))]
    (folder / "notes.jpg").write_text("this is not a JPEG")
    (folder / "empty.png").write_bytes(b"")
    truncated = folder / "truncated.jpg"  # header intact, pixel data cut: fails only when decoded
    Image.effect_noise((200, 150), 60).convert("RGB").save(truncated, format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size * 2 // 3])
    (folder / "cut_header.png").write_bytes(_png_claiming(10, 10)[:20])
    (folder / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    _image(folder / "huge.png", size=(300, 300), colour=(4, 4, 4))
    os.symlink(outside, folder / "link_out.png")
    os.symlink("loop.png", folder / "loop.png")
    _image(folder / "rows" / "bad_year.png", colour=(5, 5, 5))
    _write_csv(folder / "metadata.csv", [
        "rows/bad_year.png,table,,R,,,,,MDXL,1,,,",
        ",table,,R,,,,,1540,1,,,",
        "rows/absent.png,table,,R,,,,,1540,1,,,",
        "../../etc/passwd,table,,R,,,,,1540,1,,,",
        f"{outside},table,,R,,,,,1540,1,,,",
        "good1.png,table,,R,,,,,1540,1,,,\"30,20,20,20\"",
    ])
    report = ingest_folder(store, folder, max_pixels=50_000)
    reasons = dict(report.skipped)
    assert "not an image" in reasons[str(folder / "notes.jpg")]
    assert "empty file (0 bytes)" in reasons[str(folder / "empty.png")]
    assert "truncated or corrupt" in reasons[str(folder / "truncated.jpg")]
    assert "truncated or corrupt" in reasons[str(folder / "cut_header.png")]
    assert "image too large: 10,000,000,000 pixels, limit" in reasons[str(folder / "bomb.png")]
    assert not any("bomb" in reason for reason in reasons.values())  # plain words, not Pillow's
    assert "image too large: 300×300 pixels, limit 50,000 pixels" in reasons[str(folder / "huge.png")]
    assert "outside the corpus folder" in reasons[str(folder / "link_out.png")]
    assert "cannot be resolved" in reasons[str(folder / "loop.png")]
    assert "bad year 'MDXL'" in reasons["rows/bad_year.png"]
    assert "missing path" in reasons["metadata.csv line 3"]
    assert "file not found" in reasons["rows/absent.png"]
    assert "outside the corpus folder" in reasons["../../etc/passwd"]
    assert "outside the corpus folder" in reasons[str(outside)]
    assert "lies outside the 40x30 image" in reasons["good1.png"]
    assert len(report.skipped) == 14
    # The good files went in, under their derived metadata (good1's only row was a bad region).
    stored = {Path(p) for p in store.query_items()["path"]}
    assert stored == {p.resolve() for p in good[1:]}
    assert "rows" not in store.distinct("book")  # bad_year.png was named by a row, so not ingested as derived
    summary = report.summary()
    assert "1 added" in summary and "14 skipped" in summary and "bad year" in summary
    frame = report.to_dataframe()
    assert list(frame["status"].value_counts().sort_index()) == [1, 14]


def test_file_in_the_folder_itself_gets_the_folder_as_book(store, tmp_path):
    folder = tmp_path / "scans"
    _image(folder / "good1.png")
    report = ingest_folder(store, folder)
    assert len(report.added) == 1 and store.get_item(report.added[0])["book"] == "scans"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_is_a_skip(store, tmp_path, monkeypatch):
    # Between Image.MAX_IMAGE_PIXELS and twice that Pillow only warns; the ingest must still refuse the file.
    folder = tmp_path / "scans"
    _image(folder / "a.png", size=(40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    report = ingest_folder(store, folder)
    assert report.added == [] and report.skipped[0][1] == "image too large: 40×30 pixels, limit 1,000 pixels"


def test_parameter_errors_raise_before_writing(store, tmp_path):
    with pytest.raises(NotADirectoryError, match="nowhere"):
        ingest_folder(store, tmp_path / "nowhere")
    folder = tmp_path / "scans"
    _image(folder / "a.png")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        ingest_folder(store, folder, metadata_csv=tmp_path / "missing.csv")
    (folder / "metadata.csv").write_text("file,year\na.png,1540\n")
    with pytest.raises(ValueError, match="no 'path' column"):
        ingest_folder(store, folder)
    assert store.count_items() == 0


def test_csv_outside_folder_and_rows_with_extra_fields(store, tmp_path):
    folder = tmp_path / "scans"
    _image(folder / "a.png", colour=(7, 7, 7))
    csv_path = tmp_path / "meta.csv"
    csv_path.write_text("path,year,Provenance\nscans/a.png,1560.0,Fugger\nscans/a.png,1560,x,surplus\n",
                        encoding="utf-8")
    report = ingest_folder(store, folder, metadata_csv=csv_path)
    assert len(report.added) == 1
    item = store.get_item(report.added[0])
    assert item["year"] == 1560 and item["extra"] == {"Provenance": "Fugger"}
    assert report.skipped == [("scans/a.png", "meta.csv line 3: 4 fields but the header has 3")]


def test_corpus_root_inside_folder_is_not_ingested(tmp_path):
    folder = tmp_path / "scans"
    _image(folder / "a.png")
    with Store(folder / "corpus") as store:
        ingest_folder(store, folder)
        again = ingest_folder(store, folder)  # the thumbnail written by the first run is not a new scan
        assert store.count_items() == 1 and again.added == [] and again.skipped == []


def test_open_validated_orients_and_converts(tmp_path):
    path = tmp_path / "grey16.png"
    Image.new("I;16", (5, 4), 40000).save(path)
    image = open_validated(path)
    assert image.mode == "RGB" and image.size == (5, 4)
    with pytest.raises(ImageRejected, match="empty file"):
        open_validated(b"")


def test_report_dataframe_columns():
    report = IngestReport(source="x")
    report.record_added("a.png", 1)
    report.record_duplicate("b.png", 1)
    report.skip("c.png", "not an image")
    frame = report.to_dataframe()
    assert list(frame.columns) == ["source", "status", "item_id", "reason"]
    assert list(frame["status"]) == ["added", "duplicate", "skipped"]


@pytest.mark.slow
def test_demo_corpus_ingest(store, tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "corpus_index.synthetic", "--out", str(out), "--books", "3", "--seed",
               "0", "--workers", "1"]
    subprocess.run(command, check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1],
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    import csv

    with open(out / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    report = ingest_folder(store, out)
    assert report.skipped == []
    assert len(report.added) == len(rows) == store.count_items()
    assert set(store.distinct("book")) == {row["book"] for row in rows}
    assert len(store.books()) == 3
    assert set(store.distinct("kind")) == {row["kind"] for row in rows}
    again = ingest_folder(store, out)
    assert again.added == [] and len(again.duplicates) == len(rows)


def test_a_broken_row_skips_its_file_and_the_walk_does_not_add_it(store, tmp_path):
    # The rule: a file whose only row cannot go in is skipped with it, never added with folder-derived metadata.
    folder = tmp_path / "scans"
    for name, colour in [("good", 1), ("surplus", 2), ("huge_field", 3), ("big_year", 4), ("big_region", 5)]:
        _image(folder / f"{name}.png", colour=(colour, colour, colour))
    big = "x" * 200_000  # over the csv module's field size limit
    _write_csv(folder / "metadata.csv", [
        "good.png,table,,B,,,,,1540,1,,,",
        "surplus.png,table,,B,,,,,1540,2,,,,,surplus field",
        f"huge_field.png,table,,B,{big},,,,1540,3,,,",
        "big_year.png,table,,B,,,,,100000000000000000000000,4,,,",
        "big_region.png,table,,B,,,,,1540,5,,,\"1e400,0,1,1\"",
    ])
    report = ingest_folder(store, folder)
    reasons = dict(report.skipped)
    assert "15 fields but the header has 13" in reasons["surplus.png"]
    assert "metadata.csv line 4: unreadable row" in reasons["huge_field.png"]
    assert ("metadata.csv line 5: year 100000000000000000000000 is not a year (expected a whole number from "
            "-9999 to 9999)") == reasons["big_year.png"]
    assert "bad region" in reasons["big_region.png"]
    assert len(report.skipped) == 4 and len(report.added) == 1
    assert [Path(p).name for p in store.query_items()["path"]] == ["good.png"]


def test_animated_gif_and_multipage_tiff_go_in_with_a_note(store, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    frames = [Image.new("RGB", (20, 16), (40 * i, 10, 10)) for i in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:2])
    _image(folder / "still.gif", colour=(9, 90, 9), fmt="GIF")
    report = ingest_folder(store, folder)
    assert len(report.added) == 3 and report.skipped == []
    notes = dict(report.notes)
    assert "3 frames" in notes[str(folder / "anim.gif")] and "first frame" in notes[str(folder / "anim.gif")]
    assert "2 frames" in notes[str(folder / "pages.tif")] and str(folder / "still.gif") not in notes
    assert "note " in report.summary() and "3 frames" in report.summary()
    frame = report.to_dataframe().set_index("source")
    assert "first frame" in frame.loc[str(folder / "anim.gif"), "reason"]
    assert load_item_image(store.get_item(report.added[0])["path"]).size == (20, 16)


@pytest.mark.parametrize(("text", "message"), [
    ("path;year\na.png;1540\n", "looks like a ';'-separated file"),
    ("path\tyear\na.png\t1540\n", "looks like a tab-separated file"),
    ("path," + "x" * 200_000 + "\na.png,1540\n", "cannot be read as CSV"),
])
def test_bad_csv_as_a_whole_is_one_clear_error(store, tmp_path, text, message):
    folder = tmp_path / "scans"
    _image(folder / "a.png")
    (folder / "metadata.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        ingest_folder(store, folder)
    with pytest.raises(ValueError, match=message):
        check_metadata_csv(folder / "metadata.csv")
    assert store.count_items() == 0
