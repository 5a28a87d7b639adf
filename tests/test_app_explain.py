"""The Explain page as a historian's instrument (AppTest): plain words, "Apply" for γ and patch size, links that
restore the view, links to uploaded scans, the untrained-network mark. Compare and Invariance open in plain words.

The demo root (two books, a tiny random VGG-16) comes from tests/test_app.py's fixture.
"""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from corpus_index.models import UNTRAINED_MARK
from tests import test_app
from tests.test_app import APP, MODEL, TIMEOUT, corpus_items, no_problems

demo_root, app = test_app.demo_root, test_app.app  # the same fixtures: a demo root built by the app's first start

pytestmark = pytest.mark.slow  # whole-page AppTest runs


def factor_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.npy") if "factors" in p.parts}


def param(at, name):
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def explain(app, demo_root, **params):
    ids = corpus_items(demo_root)["id"].astype(int).tolist()
    app.query_params.update({"pair": f"{ids[0]}-{ids[1]}", "model": MODEL, **params})
    at = app.run()
    at.switch_page("pages/explain.py").run()
    no_problems(at)
    return at


def test_gamma_and_patch_size_wait_for_apply(app, demo_root):
    at = explain(app, demo_root)
    before = factor_files(demo_root)
    first = at.dataframe[0].value["relevance"].iloc[0]
    assert not [b for b in at.button if b.key == "ex_apply"]  # nothing pending
    at.radio(key="ex_gmode").set_value("global").run()
    at.slider(key="ex_gglobal").set_value(1.0).run()
    at.select_slider(key="ex_pool").set_value(16).run()
    no_problems(at)
    assert factor_files(demo_root) == before  # nothing computed
    assert param(at, "gamma") is None and param(at, "patch") == "8"  # the URL shows what is on screen
    assert at.dataframe[0].value["relevance"].iloc[0] == first
    assert any("press **Apply**" in c.value for c in at.caption)
    at.slider(key="ex_top").set_value(5).run()  # a re-draw acts at once, still without computing
    assert len(at.dataframe[0].value) == 5 and factor_files(demo_root) == before
    at.button(key="ex_apply").click().run()
    no_problems(at)
    assert len(factor_files(demo_root)) > len(before)
    assert param(at, "gamma") == "1" and param(at, "patch") == "16"
    assert at.dataframe[0].value["relevance"].iloc[0] != first
    assert not [b for b in at.button if b.key == "ex_apply"]


def test_a_link_restores_every_setting(app, demo_root):
    at = explain(app, demo_root, gamma="0.5", patch="16", ex_top="7", ex_sign="negative", ex_threshold="0.1")
    assert at.radio(key="ex_gmode").value == "global" and at.slider(key="ex_gglobal").value == 0.5
    assert at.select_slider(key="ex_pool").value == 16
    assert at.slider(key="ex_top").value == 7 and at.slider(key="ex_threshold").value == 0.1
    assert at.radio(key="ex_sign").value == "negative"
    table = at.dataframe[0].value
    assert 0 < len(table) <= 7 and (table["relevance"] < 0).all()
    assert (table["orig1_x1"] - table["orig1_x0"]).max() > 0
    assert any("16-px squares" in c.value and "γ 0.5" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "ex_apply"]  # a link's settings are applied at once
    at.select_slider(key="ex_layer").set_value(10).run()  # model options go into the link too
    no_problems(at)
    assert param(at, "model") == "vgg16-L10-h8-seed0-px64" and param(at, "patch") == "8"  # the model's default
    bad = explain(AppTest.from_file(APP, default_timeout=TIMEOUT), demo_root, patch="13")
    assert any("patch size '13'" in w.value for w in bad.warning)
    assert bad.select_slider(key="ex_pool").value == 8


def test_explain_opens_in_plain_words_with_the_untrained_mark(app, demo_root):
    at = explain(app, demo_root)
    assert "why the model finds two pages alike" in at.markdown[0].value
    assert [e.label for e in at.expander if e.label == "Details"]
    assert any(UNTRAINED_MARK.capitalize() in w.value for w in at.warning)  # the tiny test model has random weights
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["Picture (PNG)", "Figure (PDF)", "Figure (SVG)", "Top patch pairs (CSV)",
                      "Web Annotation (JSON-LD)"]
    assert all(m.help for m in at.metric)  # every number explained in words


def test_a_link_to_an_uploaded_scan_in_a_fresh_session_says_so(app, demo_root):
    ids = corpus_items(demo_root)["id"].astype(int).tolist()
    app.query_params.update({"pair": f"0-{ids[1]}", "model": MODEL, "query": "upload"})
    at = app.run()
    at.switch_page("pages/explain.py").run()
    no_problems(at)
    assert any("uploaded" in w.value and "upload the scan again" in w.value for w in at.warning)
    assert not any("no item with id 0" in e.value for e in at.error)


@pytest.mark.parametrize(("page", "words"), [("pages/compare.py", "same pair of pages"),
                                             ("pages/invariance.py", "rotated or flipped")])
def test_compare_and_invariance_open_in_plain_words(app, demo_root, page, words):
    ids = corpus_items(demo_root)["id"].astype(int).tolist()
    app.query_params.update({"pair": f"{ids[0]}-{ids[1]}", "model": MODEL})
    at = app.run()
    at.switch_page(page).run()
    assert not at.exception
    assert words in " ".join(m.value for m in at.markdown)
    assert [e for e in at.expander if e.label == "Details"]
