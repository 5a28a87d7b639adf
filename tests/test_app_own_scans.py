"""A historian's own scans in the explorer (issue 16 §1, §3, §4) under AppTest: the metadata editor, Add scans
with a CSV that updates items already in the corpus, Neighbours' settings in the URL, scores with their meaning,
the clear gap and the model offered for a table."""

import io

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from tiny_corpus import APP, explorer_session, make_corpus

from corpus_index import score_context
from corpus_index.corpus import Corpus

pytestmark = pytest.mark.slow  # whole pages under AppTest

MODEL = "vgg16-L5-h8-seed0-px64"
TIMEOUT = 120


@pytest.fixture
def root(tmp_path):
    corpus = make_corpus(tmp_path)
    corpus.build(MODEL)
    root = corpus.root
    corpus.close()
    return root


@pytest.fixture
def app(root, monkeypatch):
    return explorer_session(monkeypatch, root, MODEL, TIMEOUT)


def page(app, name, **params):
    app.query_params.update(params)
    at = app.run()
    at.switch_page(f"pages/{name}.py").run()
    no_problems(at)
    return at


def no_problems(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_editor_saves_logs_and_refuses_bad_values(app, root):
    corpus = Corpus.open(root)
    item = int(corpus.items(book="b2")["id"].iloc[0])
    at = page(app, "corpus")
    at.selectbox(key="corpus_edit").set_value(item).run()
    assert any("changes the book b2, 3 items" in c.value for c in at.caption)
    at.text_input(key=f"corpus_edit_title_{item}").set_value("Sphaera emendata")
    at.text_input(key=f"corpus_edit_year_{item}").set_value("1551")
    at.text_area(key=f"corpus_edit_note_{item}").set_value("compared with the Basel copy")
    at.text_input(key="corpus_editor").set_value("Ada")
    next(b for b in at.button if b.label == "Save changes").click().run()
    no_problems(at)
    assert at.success[0].value == (f"item {item}: title Title b2 → Sphaera emendata, year 1550 → 1551, note — → "
                                   "compared with the Basel copy")
    assert (corpus.item(item)["title"], corpus.item(item)["year"]) == ("Sphaera emendata", 1551)
    assert list(at.dataframe[-1].value["editor"]) == ["Ada"] * 3
    assert any(f"#{item} · Sphaera emendata 1551" in c.value for c in at.caption)  # the gallery, not a stale cache
    assert at.session_state["editor_name"] == "Ada"
    at.text_input(key=f"corpus_edit_year_{item}").set_value("15x1")
    next(b for b in at.button if b.label == "Save changes").click().run()
    assert "Saving the metadata: bad year '15x1' (expected a whole number)" in at.error[0].value
    assert corpus.item(item)["year"] == 1551 and len(corpus.edit_log(item)) == 3
    corpus.close()


def test_add_scans_without_metadata_then_a_csv_updates_them(app, root):
    at = page(app, "add_scans")
    at.file_uploader(key="add_files").set_value([("clavius.png", png(1), "image/png"),
                                                 ("pifferi.png", png(2), "image/png")]).run()
    at.button(key="add_scans_go").click().run()
    no_problems(at)
    corpus = Corpus.open(root)
    new = corpus.items(text="clavius")
    assert len(new) == 1 and new["book"].isna().all()  # an upload folder is no book
    labels = [link.label for link in at.get("page_link") if link.label.startswith("Find neighbours of")]
    assert labels == [f"Find neighbours of #{new['id'].item()} · clavius.png, 40×30 px",
                      f"Find neighbours of #{new['id'].item() + 1} · pifferi.png, 40×30 px"]
    csv = b"path,title,year,kind\nclavius.png,In Sphaeram,1585,table\npifferi.png,Sphaera,1604,table\n"
    at.file_uploader(key="add_files").set_value([]).run()
    at.file_uploader(key="add_csv").set_value([("meta.csv", csv, "text/csv")]).run()
    assert at.button(key="add_scans_go").label == "Update the metadata from the CSV"
    at.button(key="add_scans_go").click().run()
    no_problems(at)
    assert [m.value for m in at.metric][:1] == ["2"]
    item = corpus.item(new["id"].item())
    assert (item["title"], item["year"], item["kind"]) == ("In Sphaeram", 1585, "table")
    assert set(corpus.edit_log()["editor"]) == {"csv:metadata.csv"}
    corpus.close()


def test_neighbours_settings_travel_in_the_url(app, root, monkeypatch):
    corpus = Corpus.open(root)
    items = corpus.items()
    query = int(items[items["kind"] == "table"]["id"].iloc[0])
    at = page(app, "neighbours", item=str(query), model=MODEL, nb_k="3", nb_kind=["woodcut"], nb_book="b1,b3",
              nb_exclude="true")
    assert at.slider(key="nb_k").value == 3 and at.checkbox(key="nb_exclude").value is True
    assert at.multiselect(key="nb_kind").value == ["woodcut"]
    assert at.multiselect(key="nb_book").value == ["b1", "b3"]
    cards = [m.value for m in at.markdown if "score **" in m.value]
    expected = items[(items["kind"] == "woodcut") & items["book"].isin(["b1", "b3"])
                     & (items["book"] != items.set_index("id").loc[query, "book"])]
    assert 0 < len(cards) <= 3 and len(cards) == min(3, len(expected))
    assert all("woodcut" in c and ("Title b1" in c or "Title b3" in c) for c in cards), cards  # titles, not codes
    assert all("% of table pairs" in c for c in cards), cards  # the query is a table
    assert any(c.value.startswith("For comparison, the query's best pair in its book: #") for c in at.caption)
    at.text_input(key="nb_text").set_value("Title b3").run()
    # Bound widgets (k, kinds, text …) reach the address bar through the browser (tests/test_browser_own_scans.py);
    # the book filter is written by the page itself, as ids.
    assert at.query_params["nb_book"] == "b1,b3"
    cards = [m.value for m in at.markdown if "score **" in m.value]
    assert cards and all("Title b3" in c for c in cards)
    corpus.close()


def test_neighbours_marks_a_clear_gap_and_the_untrained_network(app, root, monkeypatch):
    monkeypatch.setattr(score_context, "clear_gap", lambda scores: 2)
    corpus = Corpus.open(root)
    query = int(corpus.items()["id"].iloc[0])
    at = page(app, "neighbours", item=str(query), model=MODEL)
    texts = [m.value for m in at.markdown]
    gap = next(n for n, t in enumerate(texts) if t.startswith("**Clear gap**"))
    assert sum("score **" in t for t in texts[:gap]) == 2  # the two best above the gap, the rest below
    assert sum("score **" in t for t in texts[gap:]) == len(corpus.items()) - 3
    assert "untrained network — not meaningful for research" in at.warning[0].value
    assert all("⚠ untrained" in t for t in texts if "score **" in t)
    corpus.close()


def test_a_table_is_offered_the_bigram_network(app, root, monkeypatch):
    corpus = Corpus.open(root)
    table = int(corpus.items(kind="table")["id"].iloc[0])
    woodcut = int(corpus.items(kind="woodcut")["id"].iloc[0])
    corpus.close()
    at = page(app, "neighbours", item=str(table))  # no bigram key offered here: the configured default
    assert at.radio(key="nb_family").value == "vgg16"
    monkeypatch.setenv("SPHAERA_MODELS", f"{MODEL},bigram")
    at = page(AppTest.from_file(APP, default_timeout=TIMEOUT), "neighbours", item=str(table))
    assert at.radio(key="nb_family").value == "bigram"
    other = AppTest.from_file(APP, default_timeout=TIMEOUT)
    other.query_params.update({"item": str(woodcut)})
    other.run()
    other.switch_page("pages/neighbours.py").run()
    assert other.radio(key="nb_family").value in ("vgg16", "vgg16in")
