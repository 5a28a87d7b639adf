"""Metadata after ingest (issue 16 §1): checked edits, logged field by field, never lost by a re-ingest; updates
from a CSV matched by path, content or file name; the command line's ``ingest --update``."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_corpus import make_corpus

from corpus_index.corpus import Corpus
from corpus_index.metadata_edit import MetadataError, check_value, edit_item

REPO = Path(__file__).resolve().parent.parent


def bare_scans(folder: Path, names=("clavius.png", "pifferi.png"), seed: int = 3) -> Path:
    """Noise scans without any metadata CSV, as a historian uploads them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray((rng.random((30, 40, 3)) * 255).astype("uint8")).save(folder / name)
    return folder


@pytest.fixture
def uploaded(tmp_path):
    """A corpus holding two scans ingested as uploads (no book, no page)."""
    corpus = Corpus.open(tmp_path / "root", create=True)
    report = corpus.ingest_uploads(bare_scans(tmp_path / "up"))
    assert len(report.added) == 2
    yield corpus, report.added
    corpus.close()


def test_uploads_get_no_made_up_book(uploaded):
    corpus, ids = uploaded
    items = [corpus.item(i) for i in ids]
    assert [(i["book"], i["page"], i["label"]) for i in items] == [(None, None, "clavius"), (None, None, "pifferi")]


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("year", " 1585 ", 1585), ("year", 1604.0, 1604), ("page", "12", 12), ("title", "  Sphaera ", "Sphaera"),
    ("note", "", None), ("kind", None, None), ("kind", "table", "table")])
def test_check_value_accepts_and_normalises(name, value, expected):
    assert check_value(name, value) == expected


@pytest.mark.parametrize(("name", "value", "words"), [
    ("year", "1585a", "whole number"), ("year", "99999", "year"), ("page", "0", "page"), ("page", "-3", "page"),
    ("kind", "poem", "known"), ("colour", "red", "unknown metadata field"), ("title", "x" * 2001, "2000")])
def test_check_value_refuses_with_the_field_named(name, value, words):
    with pytest.raises(MetadataError, match=words):
        check_value(name, value)


def test_edit_creates_a_book_of_its_own_and_logs_each_field(uploaded):
    corpus, (first, second) = uploaded
    result = corpus.edit_item(first, {"title": "Tabula climatum", "year": "1585", "page": "7", "kind": "table",
                                      "note": "from Clavius"}, editor="Ada")
    item = corpus.item(first)
    assert (item["book"], item["title"], item["year"], item["page"], item["kind"], item["note"]) == \
        (f"item-{first}", "Tabula climatum", 1585, 7, "table", "from Clavius")
    assert corpus.item(second)["title"] is None  # the other upload is not described by it
    assert result.book_items == 1
    log = corpus.edit_log(first)
    assert list(log["field"]) == ["book", "title", "year", "page", "kind", "note"]
    assert set(log["editor"]) == {"Ada"} and log["edited_at"].str.match(r"\d{4}-\d\d-\d\dT").all()
    assert log.loc[log["field"] == "year", "new_value"].item() == "1585"
    assert log.loc[log["field"] == "year", "old_value"].isna().item()
    again = corpus.edit_item(first, {"title": "Tabula climatum", "year": 1585}, editor="Ada")
    assert again.changes == [] and len(corpus.edit_log(first)) == 6  # unchanged values are not logged


def test_a_bad_value_writes_nothing(uploaded):
    corpus, (first, _) = uploaded
    with pytest.raises(MetadataError, match="year"):
        corpus.edit_item(first, {"title": "T", "year": "MDLXXXV"}, editor="Ada")
    with pytest.raises(MetadataError, match="editor"):
        corpus.edit_item(first, {"title": "T"}, editor="  ")
    assert corpus.item(first)["title"] is None and corpus.edit_log().empty


def test_book_fields_change_the_shared_book_and_moving_splits_it(tmp_path):
    corpus = make_corpus(tmp_path)
    b0 = corpus.items(book="b0")["id"].tolist()
    result = edit_item(corpus.store, b0[0], {"printer": "Giunta heirs"}, "Ada")
    assert result.book == "b0" and result.book_items == len(b0) == 3
    assert {corpus.item(i)["printer"] for i in b0} == {"Giunta heirs"}
    edit_item(corpus.store, b0[1], {"book": "b0-copy", "title": "Another issue"}, "Ada")
    assert corpus.item(b0[1])["title"] == "Another issue" and corpus.item(b0[0])["title"] == "Title b0"
    corpus.close()


def test_edits_survive_a_reingest(uploaded, tmp_path):
    corpus, (first, _) = uploaded
    corpus.edit_item(first, {"title": "Tabula climatum", "year": 1585}, editor="Ada")
    report = corpus.ingest_uploads(tmp_path / "up")  # the same scans again
    assert report.added == [] and len(report.duplicates) == 2
    report = corpus.ingest_folder(tmp_path / "up")  # and as a folder (derived book and page)
    assert report.added == []
    item = corpus.item(first)
    assert (item["title"], item["year"], item["book"], item["page"]) == ("Tabula climatum", 1585, f"item-{first}",
                                                                         None)


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_update_from_csv_matches_by_file_name_and_content(uploaded, tmp_path):
    corpus, (first, second) = uploaded
    elsewhere = tmp_path / "elsewhere"
    bare_scans(elsewhere, names=("copy-of-pifferi.png",), seed=99)  # other content: matches nothing
    (elsewhere / "renamed.png").write_bytes((tmp_path / "up" / "pifferi.png").read_bytes())  # same content
    csv = write_csv(elsewhere / "meta.csv", [
        "path,title,year,kind,page,note",
        "clavius.png,In Sphaeram,1585,table,12,",  # by file name (the upload's copy is elsewhere)
        "renamed.png,Sphaera,1604,table,,reprint",  # by content
        "copy-of-pifferi.png,Nothing,1600,,,",  # no such item
        "missing.png,X,17x,,,"])
    report = corpus.update_metadata(csv)
    assert [(i, fields) for _, i, fields in report.updated] == [
        (first, ["book", "title", "year", "page", "kind"]), (second, ["book", "title", "year", "kind", "note"])]
    assert [s for s, _ in report.skipped] == ["copy-of-pifferi.png", "missing.png"]
    assert "no item in the corpus has this file" in report.skipped[0][1]
    assert corpus.item(first)["page"] == 12 and corpus.item(second)["note"] == "reprint"
    assert set(corpus.edit_log()["editor"]) == {"csv:meta.csv"}
    again = corpus.update_metadata(csv)
    assert again.updated == [] and [i for _, i in again.unchanged] == [first, second]
    assert "2 already up to date, 2 rows skipped" in again.summary()


def test_update_refuses_an_ambiguous_file_name(uploaded, tmp_path):
    corpus, _ = uploaded
    other = bare_scans(tmp_path / "other", names=("clavius.png",), seed=5)
    corpus.ingest_uploads(other)
    report = corpus.update_metadata(write_csv(tmp_path / "m.csv", ["path,title", "clavius.png,T"]))
    assert report.updated == [] and "2 items have the file name 'clavius.png'" in report.skipped[0][1]


def test_cli_ingest_update(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    root = tmp_path / "root"
    folder = bare_scans(tmp_path / "scans")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "corpus_index", "--root", str(root), *args], env=env,
                              capture_output=True, text=True, timeout=120)

    assert cli("ingest", str(folder)).returncode == 0
    csv = write_csv(tmp_path / "meta.csv", ["path,title,year,printer", "scans/clavius.png,In Sphaeram,1585,Basa",
                                            "scans/pifferi.png,Sphaera,MDCIV,"])
    plain = cli("ingest", str(folder), "--csv", str(csv))
    assert plain.returncode == 0 and "0 added, 1 already present, 1 skipped" in plain.stdout  # nothing changed
    updated = cli("ingest", "--csv", str(csv), "--update", "--editor", "Ada")
    assert updated.returncode == 0, updated.stderr
    assert "1 items updated, 0 already up to date, 1 rows skipped" in updated.stdout
    assert "MDCIV" in updated.stdout and "whole number" in updated.stdout
    corpus = Corpus.open(root)
    clavius = corpus.items().set_index("label").loc["clavius"]
    assert (clavius["title"], clavius["year"], clavius["printer"]) == ("In Sphaeram", 1585, "Basa")
    assert set(corpus.edit_log()["editor"]) == {"Ada"}
    corpus.close()
    bad = cli("ingest", "--update")
    assert bad.returncode == 2 and "--update needs --csv" in bad.stderr
