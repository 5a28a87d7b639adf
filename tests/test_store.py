"""The SQLite store: items and books, filters, feature marks, migrations, threads."""

import sqlite3
import threading

import pandas as pd
import pytest

from corpus_index.ingest.images import format_region, parse_region
from corpus_index.storage.store import MIGRATIONS, SCHEMA_VERSION, SchemaVersionError, Store


def _item(n, **fields):
    base = {"hash": f"h{n}", "source": f"/scans/{n}.png", "path": f"/scans/{n}.png", "width": 10,
            "height": 20}
    base.update(fields)
    return base


@pytest.fixture
def filled(store):
    """Three books: 1540 Venice (2 tables + a region), 1550 Paris (a diagram), and one without a year."""
    store.add_item(**_item(1, kind="table", book="A", title="Sphaera A", printer="Giunta", place="Venice",
                           year=1540, page=1, extra={"shelfmark": "X 1"}))
    store.add_item(**_item(2, kind="table", book="A", page=2))
    store.add_item(**_item(2, kind="table", book="A", page=2, region="1,2,3,4"))
    store.add_item(**_item(3, kind="diagram", book="B", title="Sphaera B", printer="Cavellat", place="Paris",
                           year=1550, page=1))
    store.add_item(**_item(4, kind="diagram", book="C", title="Undated", place="Paris"))
    return store


def test_add_item_dedupes_by_hash_and_region(store):
    first, new = store.add_item(**_item(1, book="A"))
    again, new_again = store.add_item(**_item(1, book="A", source="/elsewhere/copy.png"))
    region, region_new = store.add_item(**_item(1, book="A", region=(0, 0, 5, 5)))
    assert new and not new_again and again == first
    assert region_new and region != first
    assert store.count_items() == 2
    assert store.get_item(first)["source"] == "/scans/1.png"  # the duplicate changed nothing


def test_get_item_round_trip(filled):
    item = filled.get_item(1)
    assert item["title"] == "Sphaera A" and item["year"] == 1540 and item["printer"] == "Giunta"
    assert item["extra"] == {"shelfmark": "X 1"} and item["shelfmark"] == "X 1"
    assert item["region"] is None and item["width"] == 10
    assert filled.get_item(3)["region"] == "1,2,3,4"
    with pytest.raises(KeyError, match="no item with id 99"):
        filled.get_item(99)


def test_book_fields_fill_but_never_erase(filled):
    # Item 2 came without book fields and did not erase them; a later conflicting title does not overwrite.
    filled.add_item(**_item(9, book="A", title="Another title", author="Sacrobosco"))
    books = filled.books().set_index("book")
    assert books.loc["A", "title"] == "Sphaera A" and books.loc["A", "author"] == "Sacrobosco"
    assert books.loc["A", "n_items"] == 4
    assert list(filled.books()["book"]) == ["A", "B", "C"]  # by year, undated last


def test_query_filters(filled):
    assert list(filled.query_items(kind="table")["id"]) == [1, 2, 3]
    assert list(filled.query_items(book="B")["id"]) == [4]
    assert list(filled.query_items(place="Paris")["id"]) == [4, 5]
    assert list(filled.query_items(printer="Giunta")["id"]) == [1, 2, 3]
    assert list(filled.query_items(kind=["diagram", "table"], place="Paris")["id"]) == [4, 5]
    assert list(filled.query_items(ids=[5, 1])["id"]) == [1, 5]
    assert filled.query_items(kind=[]).empty
    # A year range leaves out the undated book C.
    assert list(filled.query_items(year_min=1500)["id"]) == [1, 2, 3, 4]
    assert list(filled.query_items(year_min=1545, year_max=1560)["id"]) == [4]
    assert list(filled.query_items(year_max=1545)["id"]) == [1, 2, 3]
    assert list(filled.query_items(limit=2, offset=1)["id"]) == [2, 3]
    assert filled.count_items(kind="diagram", year_min=1500) == 1
    with pytest.raises(ValueError, match="year_min"):
        filled.query_items(year_min="MDL")
    with pytest.raises(TypeError, match="colour"):
        filled.count_items(colour="red")


def test_filtered_ids_and_item_rows(filled):
    """The id-only query behind searches and exports, and the rows builds open images from."""
    assert filled.filtered_ids() is None and filled.filtered_ids(kind=None, place="") is None  # no restriction
    assert filled.filtered_ids(kind="table").tolist() == [1, 2, 3]
    assert filled.filtered_ids(place="Paris", year_min=1500).tolist() == [4]
    assert filled.filtered_ids(kind=[]).tolist() == []
    with pytest.raises(TypeError, match="colour"):
        filled.filtered_ids(colour="red")
    rows = filled.item_rows()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[2] == (3, "/scans/2.png", "1,2,3,4") and rows[1][2] is None
    assert filled.item_rows([5, 1, 99]) == [(1, "/scans/1.png", None), (5, "/scans/4.png", None)]


def test_one_list_of_filters_for_store_cli_and_explorer():
    """The CLI's filter options and the store's SQL both come from corpus_index.filters."""
    from corpus_index.cli import build_parser
    from corpus_index.filters import BROWSE_FILTERS, EQUALITY_FILTERS, FILTERS, TEXT_FILTER, YEAR_FILTERS

    assert set(FILTERS) == {*EQUALITY_FILTERS, *YEAR_FILTERS, TEXT_FILTER} and set(BROWSE_FILTERS) <= set(FILTERS)
    query = build_parser().parse_args(["query", "--model", "m", "--item", "1"])
    assert {name for name in FILTERS if hasattr(query, name)} == set(FILTERS)


def test_query_columns_and_types(filled):
    frame = filled.query_items()
    for column in ("id", "path", "kind", "group", "book", "title", "author", "printer", "place", "year",
                   "page", "label", "region", "width", "height"):
        assert column in frame.columns
    assert frame["year"].dtype == "Int64" and pd.isna(frame.set_index("id").loc[5, "year"])
    assert frame.set_index("id").loc[1, "shelfmark"] == "X 1"  # extra expanded into a column
    empty = filled.query_items(book="nope")
    assert empty.empty and "title" in empty.columns


def test_distinct(filled):
    assert filled.distinct("kind") == ["diagram", "table"]
    assert filled.distinct("place") == ["Paris", "Venice"]
    assert filled.distinct("year") == [1540, 1550]
    with pytest.raises(ValueError, match="unknown column"):
        filled.distinct("id; DROP TABLE items")


def test_feature_marks(filled):
    assert filled.items_without_features("m") == [1, 2, 3, 4, 5]
    filled.mark_features("m", [2, 4], rows=[0, 1], batch=0)
    assert filled.items_with_features("m") == [2, 4]
    assert filled.items_without_features("m") == [1, 3, 5]
    assert filled.items_without_features("other") == [1, 2, 3, 4, 5]
    filled.reconcile_features("m", [1, 2])
    assert filled.items_with_features("m") == [1, 2]
    filled.unmark_features("m", [1])
    assert filled.items_with_features("m") == [2]
    with pytest.raises(ValueError, match="no items with ids \\[77\\]"):
        filled.mark_features("m", [3, 77])
    assert filled.items_with_features("m") == [2]  # the failed call wrote nothing


def test_region_parsing():
    assert parse_region("1, 2, 3, 4") == (1, 2, 3, 4)
    assert format_region((1, 2, 3, 4)) == "1,2,3,4" and format_region("") is None
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,5", "-1,0,2,2", "1.5,0,2,2"):
        with pytest.raises(ValueError, match="bad region"):
            parse_region(bad)


def test_wal_and_schema_version(store):
    assert store.schema_version() == SCHEMA_VERSION
    mode = sqlite3.connect(store.db_path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_migrates_version_1_database(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "corpus.sqlite")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO books (book, title, year) VALUES ('A', 'Old', 1500)")
    conn.execute("INSERT INTO items (hash, source, path, book, added_at) VALUES ('h', 's', 'p', 'A', 'now')")
    conn.commit()
    conn.close()
    with Store(root) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.get_item(1)["title"] == "Old" and store.get_item(1)["thumb"] is None
        store.mark_features("m", [1])  # a table that version 1 did not have
        assert store.items_with_features("m") == [1]
    with Store(root) as store:  # opening again is a no-op
        assert store.schema_version() == SCHEMA_VERSION and store.count_items() == 1


def test_newer_schema_is_refused(tmp_path):
    Store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "corpus.sqlite")
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(tmp_path)


def test_foreign_files_are_refused(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "corpus.sqlite").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(SchemaVersionError, match="not a corpus database"):
        Store(tmp_path / "junk")
    (tmp_path / "other").mkdir()
    conn = sqlite3.connect(tmp_path / "other" / "corpus.sqlite")
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="photos"):
        Store(tmp_path / "other")


def test_missing_database_without_create(tmp_path):
    with pytest.raises(FileNotFoundError, match="no corpus database"):
        Store(tmp_path / "absent", create=False)


def test_add_item_requires_fields(store):
    with pytest.raises(ValueError, match="'hash' is required"):
        store.add_item(source="s", path="p")
    with pytest.raises(ValueError, match="without a 'book'"):
        store.add_item(hash="h", source="s", path="p", title="T")


def test_failed_write_rolls_back(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute("INSERT INTO books (book) VALUES ('ghost')")
            raise RuntimeError("interrupted")
    assert store.books().empty


def test_threads_share_the_store(store):
    errors = []

    def worker(offset):
        try:
            for n in range(10):
                store.add_item(**_item(n % 15 + offset, book=f"B{offset}"))
                store.count_items()
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(k * 5,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # Hashes h0..h24 overlap between workers (n % 15 + offset): each is stored once.
    assert store.count_items() == len({n % 15 + k * 5 for k in range(4) for n in range(10)})
    assert store.query_items()["id"].is_unique


def test_query_reads_rows_on_the_callers_connection_and_sees_committed_writes(filled):
    ids = [int(r["id"]) for r in filled.query("SELECT id FROM items ORDER BY id")]
    assert ids and ids == sorted(ids)
    assert filled.query("SELECT COUNT(*) FROM items WHERE id = ?", (ids[0],))[0][0] == 1
    with filled.transaction() as conn:
        conn.execute("DELETE FROM items WHERE id = ?", (ids[0],))
    assert filled.query("SELECT COUNT(*) FROM items WHERE id = ?", (ids[0],))[0][0] == 0
