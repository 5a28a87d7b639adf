"""The Editions page under AppTest: the analysis shown, the threshold control, groups explained, downloads.

A 3-book demo corpus (VGG-16 cut at layer 5, 64 px, h = 8, random weights) is built once. AppTest cannot see or
click plotly charts: clicks on the matrix and the network are followed in tests/test_browser_editions.py.
"""

import re

import pytest
from tiny_corpus import explorer_session

pytestmark = pytest.mark.slow  # whole-page AppTest runs

MODEL = "vgg16-L5-h8-seed0-px64"
TIMEOUT = 240


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from corpus_index.demo import build_demo

    root = tmp_path_factory.mktemp("editions-root")
    build_demo(root, books=3, models=[MODEL]).corpus.close()
    return root


@pytest.fixture
def editions_page(demo_root, monkeypatch):
    at = explorer_session(monkeypatch, demo_root, MODEL, TIMEOUT, model=MODEL, ed_kind="illustration")
    return at.switch_page("pages/editions.py").run()


def no_problems(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def summary(at) -> dict:
    """The numbers of the page's summary caption."""
    text = next(c.value for c in at.caption if "matching pairs" in c.value and "threshold" in c.value)
    return {"pairs": int(re.search(r"(\d+) matching pairs", text)[1]),
            "groups": int(re.search(r"(\d+) group\(s\)", text)[1]), "source": re.search(r"\((\w+)\)", text)[1]}


def test_editions_page_shows_the_analysis_and_the_threshold_moves_it(editions_page, demo_root):
    at = editions_page
    no_problems(at)
    assert at.sidebar.selectbox(key="ed_kind").value == "illustration"
    before = summary(at)
    assert before["source"] == "distribution"
    assert any("top 0.5%" in c.value for c in at.sidebar.caption)
    at.sidebar.toggle(key="ed_manual").set_value(True).run()
    at.sidebar.number_input(key="ed_threshold").set_value(-1e12).run()  # every pair of the kNN graph matches
    no_problems(at)
    after = summary(at)
    assert after["source"] == "given" and after["pairs"] > before["pairs"]
    from corpus_index.corpus import Corpus
    from corpus_index.editions import analyse

    corpus = Corpus.open(demo_root)
    expected = analyse(corpus, MODEL, kind="illustration", k=20, threshold=-1e12)
    corpus.close()
    assert after["pairs"] == len(expected.edges)
    assert after["groups"] == expected.groups["match_group"].nunique()
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Matching pairs (CSV)", "Groups (CSV)", "Edition matrix (CSV)", "Network (GraphML)",
                      "Network (GEXF, for Gephi)"]


def test_a_group_is_explained_against_its_earliest_printing(editions_page):
    at = editions_page
    at.sidebar.toggle(key="ed_manual").set_value(True).run()
    at.sidebar.number_input(key="ed_threshold").set_value(-1e12).run()
    members = at.selectbox(key="ed_group").options
    assert members and members[0].startswith("1: ")
    at.button(key="ed_explain").click().run()
    no_problems(at)
    explain_links = [link for link in at.page_link if link.proto.page == "explain"]
    size = int(re.match(r"1: (\d+) printings", members[0])[1])
    assert len(explain_links) == size - 1  # one explanation per later printing
    assert at.session_state["ed_explained"][0] == MODEL
