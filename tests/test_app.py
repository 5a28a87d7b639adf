"""The Streamlit explorer under AppTest: every page loads, and its main widgets change what is shown.

One tiny demo corpus (2 books, VGG-16 cut at layer 5, 64 px, h = 8, random weights) is built by the app itself
on its first start, in a temporary SPHAERA_ROOT. AppTest cannot see images or plotly charts, so the tests look
at metrics, captions, tables, errors and the URL's query parameters.
"""

import io
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from tiny_corpus import APP, explorer_session

from explorer.shell import PAGES

pytestmark = pytest.mark.slow  # Streamlit AppTest runs of whole pages: the full suite, not the fast subset

MODEL = "vgg16-L5-h8-seed0-px64"
OTHER_MODEL = "vgg16-L10-h8-seed0-px64"
TIMEOUT = 240


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    """A demo root built by the app's first start (its progress display must finish without errors)."""
    root = tmp_path_factory.mktemp("sphaera-root")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPHAERA_ROOT", str(root))
        patch.setenv("SPHAERA_MODELS", MODEL)
        patch.setenv("SPHAERA_DEMO_BOOKS", "2")
        patch.setenv("OMP_NUM_THREADS", "1")
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
        assert not at.exception, [e.value for e in at.exception]
        assert [s.label for s in at.status] == ["The demo corpus is ready"]
        yield root


@pytest.fixture
def app(demo_root, monkeypatch):
    """A fresh AppTest session on the demo root (not run yet)."""
    return explorer_session(monkeypatch, demo_root, MODEL, TIMEOUT)


def no_problems(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def page_links(at, page):
    """The links (``st.page_link``, see explorer.links.link) to the page named ``page`` in explorer.shell."""
    url_path = next(spec.url_path or "" for spec in PAGES if spec.name == page)
    return [link for link in at.page_link if link.proto.page == url_path]


def follow(at, page, **params):
    """Follow the link to ``page`` with exactly these deep-link parameters, as the browser does: the target page
    runs with the link's query parameters (AppTest cannot click a page link)."""
    wanted = {k: str(v) for k, v in params.items() if k != "h"}
    for link in page_links(at, page):
        carried = dict(parse_qsl(link.proto.query_string))
        if {k: v for k, v in carried.items() if k != "h"} == wanted:  # h: the items' content hashes (citable)
            at.query_params = carried
            return at.switch_page(next(spec.file for spec in PAGES if spec.name == page)).run()
    raise AssertionError(f"no link to {page} with {wanted}")


def metric(at, label_start):
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def corpus_items(root):
    from corpus_index.corpus import Corpus

    corpus = Corpus.open(root)
    try:
        return corpus.items()
    finally:
        corpus.close()


def test_corpus_page_counts_and_filters(app, demo_root):
    items = corpus_items(demo_root)
    at = app.run()
    no_problems(at)
    assert metric(at, "Pages and regions") == str(len(items))
    assert metric(at, "Books") == str(items["book"].nunique())
    assert any(f"{len(items)} of {len(items)} items match" in c.value for c in at.caption)
    at.sidebar.multiselect(key="corpus_kind").set_value(["table"]).run()
    tables = int((items["kind"] == "table").sum())
    assert 0 < tables < len(items)
    assert any(f"{tables} of {len(items)} items match" in c.value for c in at.caption)
    assert len(page_links(at, "neighbours")) == tables


def test_gallery_opens_neighbours_and_k_filters_change_results(app, demo_root):
    items = corpus_items(demo_root)
    first = int(items["id"].iloc[0])
    at = app.run()
    follow(at, "neighbours", item=first)
    no_problems(at)
    assert not at.dataframe  # the table is shown on request
    at.toggle(key="nb_table").set_value(True).run()
    assert at.query_params["item"] == [str(first)] or at.query_params["item"] == str(first)
    table = at.dataframe[0].value
    assert len(table) == min(12, len(items) - 1) and first not in set(table["id"])
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert np.all(np.diff(table["score"].to_numpy()) <= 1e-9)  # best first
    at.sidebar.slider(key="nb_k").set_value(3).run()
    assert len(at.dataframe[0].value) == 3
    at.sidebar.checkbox(key="nb_exclude").check().run()
    book = items.set_index("id").loc[first, "book"]
    assert book not in set(at.dataframe[0].value["book"])
    at.sidebar.slider(key="nb_k").set_value(48).run()
    at.sidebar.multiselect(key="nb_kind").set_value(["illustration"]).run()
    assert set(at.dataframe[0].value["kind"]) == {"illustration"}
    assert [d.label for d in at.get("download_button")] == ["Download the neighbours (CSV)"]


def test_neighbours_explain_button_opens_the_pair(app, demo_root):
    items = corpus_items(demo_root)
    first = int(items["id"].iloc[0])
    app.query_params.update({"item": str(first), "model": MODEL})
    at = app.run()
    at.switch_page("pages/neighbours.py").run()
    no_problems(at)
    at.toggle(key="nb_table").set_value(True).run()
    best = int(at.dataframe[0].value["id"].iloc[0])
    assert at.radio(key=f"nb_verdict_{best}_label").value is None  # each card offers a verdict on the pair
    follow(at, "explain", pair=f"{first}-{best}", model=MODEL)
    no_problems(at)
    assert at.query_params["pair"] in ([f"{first}-{best}"], f"{first}-{best}")
    assert at.title[0].value == "Explain a similarity"


def test_neighbours_of_an_uploaded_scan(app, demo_root):
    items = corpus_items(demo_root)
    path = Path(items["path"].iloc[0])  # scans are referenced in place by absolute path
    at = app.run()
    at.switch_page("pages/neighbours.py").run()
    assert any("upload a scan" in i.value for i in at.info)
    at.sidebar.slider(key="nb_k").set_value(48).run()
    at.file_uploader(key="nb_upload").upload("scan.png", path.read_bytes(), "image/png").run()
    no_problems(at)
    at.toggle(key="nb_table").set_value(True).run()
    table = at.dataframe[0].value.set_index("id")
    assert len(table) == len(items)  # an uploaded query excludes nothing
    from corpus_index.corpus import Corpus

    corpus = Corpus.open(demo_root)
    phi = corpus.features(MODEL).vector(int(items["id"].iloc[0])).astype(np.float64)
    corpus.close()
    # The upload is the same scan as the first item: its score with that item is the item's ‖φ‖².
    assert np.isclose(table.loc[int(items["id"].iloc[0]), "score"], phi @ phi, rtol=1e-4)
    at.file_uploader(key="nb_upload").upload("bad.png", b"not an image", "image/png").run()
    assert not at.exception, [(e.value, e.stack_trace) for e in at.exception]
    assert at.error and "Finding neighbours" in at.error[0].value


def test_unbuilt_model_offers_to_build_its_index(app, demo_root):
    first = int(corpus_items(demo_root)["id"].iloc[0])
    app.query_params.update({"item": str(first), "model": OTHER_MODEL})
    at = app.run()
    at.switch_page("pages/neighbours.py").run()
    no_problems(at)
    assert any("not built yet" in i.value for i in at.info) and not at.toggle
    at.button(key=f"build_{OTHER_MODEL}").click().run()
    no_problems(at)
    at.toggle(key="nb_table").set_value(True).run()
    assert len(at.dataframe[0].value) == 12


def test_explain_an_uploaded_scan(app, demo_root):
    items = corpus_items(demo_root)
    app.query_params.update({"model": MODEL})
    at = app.run()
    at.switch_page("pages/neighbours.py").run()
    at.file_uploader(key="nb_upload").upload("scan.png", Path(items["path"].iloc[1]).read_bytes(), "image/png")
    at.run()
    target = int(items["id"].iloc[2])
    at.button(key=f"nb_explain_{target}").click().run()
    no_problems(at)
    assert at.query_params["pair"] in ([f"0-{target}"], f"0-{target}")
    assert any("uploaded scan" in m.value for m in at.markdown)
    score, total = float(metric(at, "Similarity")), float(metric(at, "Σ of the explanation"))
    assert score > 0 and abs(total - score) <= 1e-3 * score


def test_explain_page_numbers_and_gamma_controls(app, demo_root):
    ids = corpus_items(demo_root)["id"].astype(int).tolist()
    app.query_params.update({"pair": f"{ids[0]}-{ids[1]}", "model": MODEL})
    at = app.run()
    at.switch_page("pages/explain.py").run()
    no_problems(at)
    score = float(metric(at, "Similarity"))
    total = float(metric(at, "Σ of the explanation"))
    assert score > 0 and abs(total - score) <= 1e-3 * abs(score)  # bias-free ReLU net: Σ R = y
    assert len(at.dataframe[0].value) == 30
    labels = [d.label for d in at.get("download_button")]
    assert labels == ["Picture (PNG)", "Figure (PDF)", "Figure (SVG)", "Top patch pairs (CSV)",
                      "Web Annotation (JSON-LD)"]
    at.slider(key="ex_top").set_value(5).run()
    assert len(at.dataframe[0].value) == 5
    at.radio(key="ex_sign").set_value("negative").run()
    assert (at.dataframe[0].value["relevance"] < 0).all()
    at.radio(key="ex_gmode").set_value("global").run()
    at.slider(key="ex_gglobal").set_value(1.0).run()
    at.button(key="ex_apply").click().run()  # γ needs new factors: computed on Apply
    no_problems(at)
    assert at.query_params["gamma"] in (["1"], "1")
    first_relevance = at.dataframe[0].value["relevance"].iloc[0]
    at.radio(key="ex_gmode").set_value("default").run()
    at.button(key="ex_apply").click().run()
    assert at.dataframe[0].value["relevance"].iloc[0] != first_relevance  # γ changes the explanation
    at.select_slider(key="ex_layer").set_value(10).run()
    no_problems(at)
    assert at.query_params["model"] in ([OTHER_MODEL], OTHER_MODEL)


def test_explain_reads_gamma_from_the_link_and_reports_bad_links(app, demo_root):
    ids = corpus_items(demo_root)["id"].astype(int).tolist()
    app.query_params.update({"pair": f"{ids[0]}-{ids[2]}", "model": MODEL, "gamma": "0.5", "ex_top": "7",
                             "ex_sign": "positive"})
    at = app.run()
    at.switch_page("pages/explain.py").run()
    no_problems(at)
    assert at.radio(key="ex_gmode").value == "global" and at.slider(key="ex_gglobal").value == 0.5
    assert at.slider(key="ex_top").value == 7 and len(at.dataframe[0].value) == 7
    assert at.radio(key="ex_sign").value == "positive" and (at.dataframe[0].value["relevance"] > 0).all()
    bad = AppTest.from_file(APP, default_timeout=TIMEOUT)
    bad.query_params.update({"pair": "abc", "model": "resnet"})
    bad.run()
    bad.switch_page("pages/explain.py").run()
    assert not bad.exception
    assert {w.value.split(":")[1].strip().split()[0] for w in bad.warning} >= {"pair", "model"}
    assert any("Open a pair" in i.value for i in bad.info)
    missing = AppTest.from_file(APP, default_timeout=TIMEOUT)
    missing.query_params.update({"pair": "99999-1", "model": MODEL})
    missing.run()
    missing.switch_page("pages/explain.py").run()
    assert not missing.exception and "no item with id 99999" in missing.error[0].value


def test_compare_page_two_models_and_gamma_strip(app, demo_root):
    ids = corpus_items(demo_root)["id"].astype(int).tolist()
    app.query_params.update({"pair": f"{ids[0]}-{ids[1]}", "model": MODEL})
    at = app.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    # Side A starts on the bigram network: slow on whole pages, so it waits for a click (or says why it cannot).
    keys = {b.key for b in at.button}
    assert "cmpA_go" in keys or "bigram" in at.error[0].value
    # the bigram network offers aligned routing (another model key, same scores); VGG-16 does not
    at.checkbox(key="cmpA_aligned").check().run()
    assert not at.exception and at.checkbox(key="cmpA_aligned").value
    # and square roots of the bigram counts, on by default (unticked: the model key bigram-sums)
    assert at.checkbox(key="cmpA_sqrt").value
    at.checkbox(key="cmpA_sqrt").uncheck().run()
    assert not at.exception and not at.checkbox(key="cmpA_sqrt").value
    at.radio(key="cmpA_family").set_value("vgg16").run()
    assert not {"cmpA_aligned", "cmpA_sqrt"} & {c.key for c in at.checkbox}
    at.select_slider(key="cmpA_layer").set_value(10).run()
    for side in ("cmpA_go", "cmpB_go"):
        if side in {b.key for b in at.button}:
            at.button(key=side).click().run()
    no_problems(at)
    assert sum("y = " in m.value for m in at.markdown) == 2
    at.multiselect(key="cmp_gammas").set_value([0.0, 0.5]).run()
    at.button(key="cmp_strip").click().run()
    no_problems(at)
    assert sorted(c.value.split(":")[0] for c in at.caption if c.value.startswith("γ = ")) == ["γ = 0", "γ = 0.5"]
    bad = AppTest.from_file(APP, default_timeout=TIMEOUT)
    bad.query_params.update({"pair": "99999-1"})
    bad.run()
    bad.switch_page("pages/compare.py").run()
    assert not bad.exception and "no item with id 99999" in bad.error[0].value


def test_invariance_page_computes_inv_per_layer(app, demo_root):
    at = app.run()
    at.switch_page("pages/invariance.py").run()
    no_problems(at)
    at.number_input(key="inv_groups").set_value(2).run()
    at.button(key="inv_go").click().run()
    no_problems(at)
    scores = at.dataframe[0].value
    assert list(scores.columns) == ["5", "10", "17", "24", "31"]
    assert np.isfinite(scores.to_numpy(dtype=float)).all()
    pairs = at.dataframe[1].value
    assert len(pairs) >= 1 and np.isclose(pairs["share of local sum"].sum(), 1.0)
    link = page_links(at, "explain")[0]
    follow(at, "explain", **dict(parse_qsl(link.proto.query_string)))
    no_problems(at)
    assert at.title[0].value == "Explain a similarity"


def test_add_scans_reports_what_was_skipped(app, demo_root):
    before = len(corpus_items(demo_root))
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (80, 60, 3), dtype=np.uint8)).save(buffer, "PNG")
    at = app.run()
    at.switch_page("pages/add_scans.py").run()
    no_problems(at)
    assert at.button(key="add_scans_go").disabled
    at.file_uploader(key="add_files").set_value([("new page.png", buffer.getvalue(), "image/png"),
                                                 ("broken.png", b"\x89PNG garbage", "image/png")]).run()
    at.button(key="add_scans_go").click().run()
    no_problems(at)
    assert metric(at, "Added") == "1" and metric(at, "Skipped") == "1"
    outcome = at.dataframe[0].value
    assert set(outcome["status"]) == {"added", "skipped"} and outcome["reason"].notna().sum() == 1
    assert len(corpus_items(demo_root)) == before + 1
    at.button(key="add_build").click().run()
    no_problems(at)
    assert any("1 computed" in s.value for s in at.success)


def test_add_a_iiif_manifest_reports_a_bad_manifest(app):
    bad = (Path(__file__).parent / "fixtures" / "iiif" / "malformed.json").read_bytes()
    at = app.run()
    at.switch_page("pages/add_scans.py").run()
    at.file_uploader(key="add_manifest").upload("manifest.json", bad, "application/json").run()
    at.button(key="add_iiif_go").click().run()
    no_problems(at)
    assert metric(at, "Added") == "0" and metric(at, "Skipped") == "1"
    assert at.dataframe[0].value["reason"].iloc[0]  # the reason is listed


def test_model_choices_and_gamma_links_round_trip():
    from corpus_index.model_families import FAMILIES
    from corpus_index.models import parse_model_key
    from explorer.choices import (
        blocks_for,
        chosen,
        compose,
        encode_gamma,
        parse_gamma,
        schedule_from_blocks,
        sized_base,
    )

    base = sized_base(MODEL)
    assert compose("vgg16", base, 17, True) == "vgg16-L17-h8-seed0-px64-rot"
    assert compose("vgg16in", base, 31, False) == "vgg16in-L31-h8-seed0-px64"
    assert compose("bigram", base, None, False) == "bigram"
    assert compose("bigram", base, 17, False) == "bigram"  # a layer means nothing to the bigram network
    assert chosen("vgg16-L24-h100-seed0-rot") == ("vgg16", parse_model_key("vgg16-L24-h100-seed0-rot"))
    assert chosen("bigram-aligned")[1].aligned and chosen("bigram-rot")[1].rotation_max
    assert compose("bigram", base, None, True, aligned=True) == "bigram-aligned-rot"
    assert not chosen("bigram-sums")[1].sqrt
    assert compose("bigram", base, None, False, aligned=True, sqrt=False) == "bigram-sums-aligned"
    assert list(FAMILIES) == ["bigram", "vgg16in", "vgg16"]  # the explorer's options, in this order
    assert [s.field for s in FAMILIES["bigram"].switches] == ["aligned", "sqrt"]
    for gamma in (None, 0.25, {2: 0.5, 12: 0.25, 26: 0.0}):
        assert parse_gamma(encode_gamma(gamma)) == gamma
    with pytest.raises(ValueError, match="gamma"):
        parse_gamma("2:abc")
    with pytest.raises(ValueError, match="≥ 0"):
        parse_gamma("-1")
    schedule = {"2": 0.5, "5": 0.5, "7": 0.5, "10": 0.5, "12": 0.25, "14": 0.25}
    blocks = blocks_for(schedule, "vgg16-L17-h100-seed0")
    assert [(label, members) for label, members, _ in blocks] == [("layers 1–10", [2, 5, 7, 10]),
                                                                  ("layers 11–17", [12, 14])]
    assert schedule_from_blocks(blocks, [0.3, 0.1]) == {2: 0.3, 5: 0.3, 7: 0.3, 10: 0.3, 12: 0.1, 14: 0.1}
    assert parse_model_key(compose("vgg16", base, 5)).image_size == 64
