"""Every page of the explorer works when metadata is missing, and shows readable captions (issue 14 §1).

Scans added without a CSV have no year, book, title …; pandas keeps a missing year as ``pd.NA``, and any
``row.year or …`` on a page raised "boolean value of NA is ambiguous". The corpus of
:func:`tiny_corpus.make_sparse_corpus` has one item per missing field, one item without any metadata and
complete items; every page runs on it under AppTest (VGG-16 cut at layer 5, 64 px, h = 8, random weights).
"""


import pandas as pd
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest
from tiny_corpus import APP, FORMULA_TITLE, SPARSE_FIELDS, explorer_session, make_sparse_corpus

from explorer.captions import book_options, field, item_caption

pytestmark = pytest.mark.slow  # Streamlit AppTest runs of whole pages: the full suite, not the fast subset

MODEL = "vgg16-L5-h8-seed0-px64"
TIMEOUT = 120
MISSING_WORDS = ("nan", "<NA>", "None")  # what a missing field looks like when a page formats it by itself


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    """(root, items frame) of a corpus with missing metadata and a built index of MODEL."""
    corpus = make_sparse_corpus(tmp_path_factory.mktemp("sparse"))
    corpus.build(MODEL)
    items = corpus.items()
    root = corpus.root
    corpus.close()
    return root, items


@pytest.fixture
def app(sparse, monkeypatch):
    return explorer_session(monkeypatch, sparse[0], MODEL, TIMEOUT)


def ids_by_label(items) -> dict[str, int]:
    return dict(zip(items["label"], items["id"].astype(int), strict=True))


def no_problems(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def texts(at) -> list[str]:
    return [c.value for c in at.caption] + [m.value for m in at.markdown]


def test_item_caption_leaves_missing_fields_out(sparse):
    items = sparse[1]
    rows = [*items.itertuples(index=False), *(row for _, row in items.iterrows()), *items.to_dict("records")]
    assert len(rows) == 3 * len(items)
    for row in rows:  # named tuples, Series and dicts, every field missing somewhere
        for short in (False, True):
            caption = item_caption(row, short=short)
            assert caption.startswith(f"#{field(row, 'id')}")
            assert not any(word in caption for word in MISSING_WORDS), caption
    complete = items[items["label"] == "complete-0"].iloc[0]
    assert item_caption(complete) == (f"#{complete['id']} · Title complete-0 · Place complete-0 1500 · "
                                      "Printer complete-0 · p. 1 · woodcut")
    assert item_caption(complete, short=True) == f"#{complete['id']} · Title complete-0 1500 · p. 1 · woodcut"
    bare = items[items["label"] == "no-metadata"].iloc[0]
    assert item_caption(bare) == f"#{bare['id']} · no-metadata.png, 40×52 px"  # the file, not an id (issue 16)
    assert item_caption({"id": 4}) == "#4 · no metadata"
    assert item_caption({"id": 3, "year": float("nan"), "title": "T", "page": 2.0}) == "#3 · T · p. 2"


def test_book_filter_options_name_title_and_year_where_known():
    books = pd.DataFrame({"book": ["b1", "b2", "b3"], "title": ["Sphaera mundi", None, ""],
                          "year": [1550, 1600, None]})
    assert book_options(books) == {"b1": "b1 — Sphaera mundi (1550)", "b2": "b2 — (1600)", "b3": "b3"}
    assert book_options(None) == {}


def test_corpus_and_invariance_pages(app, sparse):
    items = sparse[1]
    at = app.run()
    no_problems(at)
    captions = [c.value for c in at.caption]
    for item_id in items["id"]:  # one gallery caption per item, missing fields left out
        assert any(c.startswith(f"#{item_id} ") for c in captions), (item_id, captions)
    assert not any(word in c for c in captions for word in MISSING_WORDS if c.startswith("#")), captions
    for colour in ("year", "book", "place", "kind"):  # the map coloured by a field that is sometimes missing
        at.radio(key="corpus_colour").set_value(colour).run()
        no_problems(at)
    at.sidebar.multiselect(key="corpus_kind").set_value(["table"]).run()
    no_problems(at)
    at.switch_page("pages/invariance.py").run()  # groups hold items with and without metadata
    no_problems(at)
    at.button(key="inv_go").click().run()
    no_problems(at)
    assert len(at.dataframe[1].value) >= 1


@pytest.mark.parametrize("label", ["no-year", "complete-0", *(f"no-{f}" for f in SPARSE_FIELDS if f != "year"),
                                   "no-metadata"])
def test_neighbours_of_items_with_and_without_metadata(app, sparse, label):
    """Every item as the query: its neighbours mix items with and without metadata."""
    items = sparse[1]
    ids = ids_by_label(items)
    app.query_params.update({"item": str(ids[label]), "model": MODEL})
    at = app.run()
    at.switch_page("pages/neighbours.py").run()
    no_problems(at)
    query = items.set_index("label").loc[label]
    query_caption = next(c.value for c in at.caption if c.value.startswith(f"#{ids[label]} "))
    if isinstance(query["title"], str):
        assert query["title"] in query_caption
    assert not any(word in query_caption for word in MISSING_WORDS), query_caption
    shown = "\n".join(m.value for m in at.markdown)
    for _, other in items[items["label"] != label].iterrows():  # k = 12 ≥ the corpus: every other item shown
        assert item_caption(other) in shown, (other["label"], shown)
    assert "Title complete-1" in shown or label == "complete-1"
    assert "· no-metadata.png, 40×52 px" in shown or label == "no-metadata"
    assert not any(word in shown for word in MISSING_WORDS), shown


def test_explain_and_compare_pairs_with_missing_metadata(app, sparse):
    ids = ids_by_label(sparse[1])
    for first, second in (("no-metadata", "complete-0"), ("no-year", "no-kind"), ("no-book", "no-page")):
        pair = f"{ids[first]}-{ids[second]}"
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.query_params.update({"pair": pair, "model": MODEL})
        at.run()
        at.switch_page("pages/explain.py").run()
        no_problems(at)
        header = next(m.value for m in at.markdown if m.value.startswith("**A:**"))
        assert f"#{ids[first]}" in header and f"#{ids[second]}" in header
        assert not any(word in header for word in MISSING_WORDS), header
        assert [d.label for d in at.get("download_button")] == ["Picture (PNG)", "Figure (PDF)", "Figure (SVG)",
                                                                 "Top patch pairs (CSV)", "Web Annotation (JSON-LD)"]
        compare = AppTest.from_file(APP, default_timeout=TIMEOUT)
        compare.query_params.update({"pair": pair, "model": MODEL})
        compare.run()
        compare.switch_page("pages/compare.py").run()
        assert not compare.exception, [e.value for e in compare.exception]
        assert not [e.value for e in compare.error if "bigram" not in e.value]  # bigram weights may be absent
        header = next(m.value for m in compare.markdown if m.value.startswith("**A:**"))
        assert f"#{ids[first]}" in header and not any(word in header for word in MISSING_WORDS), header


def test_add_scans_without_a_csv_then_every_page(app, sparse):
    """A scan added without metadata shows up in the gallery and as a neighbour."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(9).integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
    at = app.run()
    at.switch_page("pages/add_scans.py").run()
    at.file_uploader(key="add_files").set_value([("bare.png", buffer.getvalue(), "image/png")]).run()
    at.button(key="add_scans_go").click().run()
    no_problems(at)
    at.button(key="add_build").click().run()
    no_problems(at)
    at.switch_page("pages/corpus.py").run()
    no_problems(at)


def test_neighbours_csv_download_defuses_formulas(app, sparse, monkeypatch):
    """A title that a spreadsheet would run as a formula is downloaded as text (corpus_index.csv_export)."""
    downloads = []
    add = MediaFileManager.add

    def recording_add(self, data, mimetype, *args, **kwargs):
        downloads.append((mimetype, bytes(data) if isinstance(data, bytes | bytearray) else data))
        return add(self, data, mimetype, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", recording_add)
    ids = ids_by_label(sparse[1])
    app.query_params.update({"item": str(ids["complete-0"]), "model": MODEL})
    at = app.run()
    at.switch_page("pages/neighbours.py").run()
    no_problems(at)
    csv = [data.decode() for mimetype, data in downloads if mimetype == "text/csv"]
    assert csv, downloads
    formula = FORMULA_TITLE.replace('"', '""')  # CSV doubles the quotes inside a quoted cell
    assert f"'{formula}" in csv[-1] and f",{formula}" not in csv[-1] and f'"{formula}' not in csv[-1]
