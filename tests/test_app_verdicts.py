"""The verdict form on Explain and the Verdicts page under AppTest, on the tiny corpus (a 32-px VGG cut at layer 5).

AppTest cannot see images or plotly charts: the tests look at the store, messages, tables and downloads.
"""


import pytest
from streamlit.testing.v1 import AppTest
from tiny_corpus import SMALL_VGG_KEY, explorer_session, make_corpus

from corpus_index import verdicts

pytestmark = pytest.mark.slow  # whole-page AppTest runs



@pytest.fixture(scope="module")
def root(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("verdicts-app"))
    corpus.build(SMALL_VGG_KEY, batch_size=6)
    verdicts.record(corpus.store, 1, 4, "same", "Ada", model_key=SMALL_VGG_KEY, gamma=0.25, pool=8, score=1.0)
    verdicts.record(corpus.store, 4, 7, "same", "Ada", model_key=SMALL_VGG_KEY, wrong_reason=True, regions=[2])
    verdicts.record(corpus.store, 2, 3, "different", "Bea")
    path = corpus.root
    corpus.close()
    return path


@pytest.fixture
def app(root, monkeypatch):
    return explorer_session(monkeypatch, root, SMALL_VGG_KEY)


def no_problems(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def store_verdicts(root):
    from corpus_index.corpus import Corpus

    corpus = Corpus.open(root)
    try:
        return verdicts.history(corpus.store)
    finally:
        corpus.close()


def test_explain_records_a_verdict_and_shows_its_history(app, root):
    app.query_params.update({"pair": "5-6", "model": SMALL_VGG_KEY})
    before = len(store_verdicts(root))
    at = app.run()
    at.switch_page("pages/explain.py").run()
    no_problems(at)
    at.button(key="FormSubmitter:ex_verdict_form-Record the verdict").click().run()
    assert any("Choose a verdict" in w.value for w in at.warning)  # nothing recorded without a label
    assert len(store_verdicts(root)) == before
    at.radio(key="ex_verdict_label").set_value("partial")
    at.checkbox(key="ex_verdict_wrong").check()
    at.multiselect(key="ex_verdict_regions").select(1)
    at.text_area(key="ex_verdict_note").input("ruled frame")
    at.text_input(key="ex_verdict_reviewer").input("Cleo")
    at.button(key="FormSubmitter:ex_verdict_form-Record the verdict").click().run()
    no_problems(at)
    assert any("are partial (wrong reason)" in s.value for s in at.success)
    row = store_verdicts(root).iloc[-1]
    assert (row["item1"], row["item2"], row["label"], row["reviewer"]) == (5, 6, "partial", "Cleo")
    assert row["wrong_reason"] and row["regions"] == [1] and row["note"] == "ruled frame"
    assert row["model_key"] == SMALL_VGG_KEY and row["score"] is not None and row["params_hash"]
    history = next(d.value for d in at.dataframe if "reviewer" in d.value.columns)
    assert history["reviewer"].tolist() == ["Cleo"]
    assert at.session_state["verdict_reviewer"] == "Cleo"  # remembered for the next verdict


def test_verdicts_page_lists_filters_groups_and_validates(app, root):
    at = app.run()
    at.switch_page("pages/verdicts.py").run()
    no_problems(at)
    table = at.dataframe(key="vd_table").value
    assert {(1, 4), (4, 7), (2, 3)} <= set(zip(table["item1"], table["item2"], strict=True))
    at.multiselect(key="vd_labels").select("different").run()
    assert at.dataframe(key="vd_table").value["label"].tolist() == ["different"]
    at.multiselect(key="vd_labels").unselect("different").run()
    at.checkbox(key="vd_wrong").check().run()
    assert set(at.dataframe(key="vd_table").value["label"]) <= {"same", "partial"}
    assert at.selectbox(key="vd_group").value == 1
    assert any(c.value.startswith("#1 ·") for c in at.caption)  # a member of the group 1-4-7
    labels = [d.proto.label for d in at.get("download_button")]
    assert {"Verdicts (CSV)", "Verdicts (W3C Web Annotation, JSON-LD)", "Groups of copies (CSV)"} <= set(labels)
    at.button(key="vd_validate").click().run()
    no_problems(at)
    result = next(d.value for d in at.dataframe if "recall_at_k" in d.value.columns)
    assert result["model"].tolist() == [SMALL_VGG_KEY] and result["verdicts_on_model"].iloc[0] >= 2


def popover_script():
    """A page holding only the Neighbours-card popover for the pair (2, 5)."""
    from tiny_corpus import SMALL_VGG_KEY

    from explorer.verdict_form import verdict_popover

    verdict_popover((5, 2), SMALL_VGG_KEY, 0.5, key="nb_verdict_5")


def test_the_neighbours_card_popover_records_a_verdict(root, monkeypatch):
    monkeypatch.setenv("SPHAERA_ROOT", str(root))
    monkeypatch.setenv("SPHAERA_MODELS", SMALL_VGG_KEY)
    at = AppTest.from_function(popover_script, default_timeout=60).run()
    no_problems(at)
    at.radio(key="nb_verdict_5_label").set_value("related")
    at.text_input(key="nb_verdict_5_reviewer").input("Dora")
    at.button(key="nb_verdict_5_record").click().run()
    no_problems(at)
    row = store_verdicts(root).iloc[-1]
    assert (row["item1"], row["item2"], row["label"], row["reviewer"], row["score"]) == (2, 5, "related", "Dora", 0.5)
    assert any("recorded" in s.value for s in at.success)


def test_links_carry_content_references_and_resolve_them(app, root):
    from corpus_index.corpus import Corpus
    from corpus_index.item_refs import short_reference

    corpus = Corpus.open(root)
    refs = {i: short_reference(corpus.item(i)["hash"]) for i in (2, 3)}
    corpus.close()
    # Ids that name other items (or none) after a re-ingest: the content references win.
    app.query_params.update({"pair": "3-999", "h": f"{refs[2]}-{refs[3]}", "model": SMALL_VGG_KEY})
    at = app.run()
    at.switch_page("pages/explain.py").run()
    no_problems(at)
    assert at.query_params["pair"] in (["2-3"], "2-3")
    assert at.query_params["h"] in ([f"{refs[2]}-{refs[3]}"], f"{refs[2]}-{refs[3]}")
    assert any(m.value.startswith("**A:** #2") for m in at.markdown)
    compare = [link for link in at.page_link if link.proto.page == "compare"]
    assert compare and f"h={refs[2]}-{refs[3]}" in compare[0].proto.query_string
