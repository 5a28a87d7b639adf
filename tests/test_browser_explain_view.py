"""The Explain page in Chromium for a demo table pair under the bigram network: the zoomable pair view, the crops
of a chosen pair, the digits, and a shared link with non-default settings opened in a second browser context.

Screenshots go to test-artifacts/ (look at them: this test checks what is shown, the eye checks how).
"""

import subprocess
import sys

import pandas as pd
import pytest

from tests.browser_helpers import CHROMIUM, REPO, launch_chromium, streamlit_server, wait_idle

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed")]
MODEL = "bigram"
ARTIFACTS = REPO / "test-artifacts"
LONG = 300_000  # ms: uncached bigram factors of two demo pages on a busy 2-core machine
X_RANGE_JS = ("() => { const plot = document.querySelector('[data-testid=\"stPlotlyChart\"] .js-plotly-plot');"
              " return plot && plot._fullLayout ? plot._fullLayout.xaxis.range.slice() : null; }")

LINK_MIDDLE_JS = """(rank) => {
  const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const mine = (t, i) => t.customdata[i] && t.customdata[i][0] === rank;
  const trace = plot._fullData.find(t => t.meta === 'link' && t.customdata.some((_, i) => mine(t, i)));
  const points = trace.customdata.map((_, i) => i).filter(i => mine(trace, i));  // the link's points
  const middle = points[Math.floor(points.length / 2)];
  const drag = plot.querySelector('.nsewdrag').getBoundingClientRect();
  const layout = plot._fullLayout;
  return [drag.left + layout.xaxis.d2p(trace.x[middle]), drag.top + layout.yaxis.d2p(trace.y[middle])];
}"""


def table_pair(root):
    """Two table pages of the demo corpus (the bigram network is made for tables)."""
    from corpus_index.corpus import Corpus

    corpus = Corpus.open(root)
    try:
        tables = corpus.items(kind="table")
    finally:
        corpus.close()
    ids = tables["id"].astype(int).tolist()
    return ids[0], ids[1]


def open_explain(page, url, query):
    from playwright.sync_api import expect

    page.goto(f"{url}/explain?{query}")
    expect(page.get_by_role("heading", name="Explain a similarity")).to_be_visible(timeout=120_000)
    expect(page.get_by_text("Share explained")).to_be_visible(timeout=LONG)
    wait_idle(page, LONG)


def test_zoom_pick_a_pair_and_share_the_view(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "root"
    subprocess.run([sys.executable, "-m", "corpus_index", "--root", str(root), "demo", "--books", "2",
                    "--model", MODEL], cwd=REPO, check=True, capture_output=True,
                   env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    first, second = table_pair(root)
    with streamlit_server(root, MODEL, books=2, log=ARTIFACTS / "explain-view-streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        open_explain(page, url, f"pair={first}-{second}&model={MODEL}")
        expect(page.get_by_text("why the model finds two pages alike")).to_be_visible()

        # zoom: the mouse wheel over the pair view narrows the x axis (plotly's own zoom, scrollZoom on)
        chart = page.locator("[data-testid=stPlotlyChart]").first
        chart.scroll_into_view_if_needed()
        page.wait_for_function(f"() => ({X_RANGE_JS})() !== null")
        before = page.evaluate(X_RANGE_JS)
        box = chart.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
        for _ in range(5):
            page.mouse.wheel(0, -240)
            page.wait_for_timeout(150)
        page.wait_for_timeout(800)
        after = page.evaluate(X_RANGE_JS)
        assert after[1] - after[0] < 0.8 * (before[1] - before[0]), (before, after)
        chart.screenshot(path=ARTIFACTS / "explain-view-zoomed.png")

        # pick the third row of "Strongest patch pairs": its two squares appear, cut from the scans
        expect(page.get_by_text("Pair 1 (relevance")).to_be_visible()  # the strongest, until one is chosen
        grid = page.locator("[data-testid=stDataFrame]").first
        grid.scroll_into_view_if_needed()
        cells = grid.bounding_box()
        page.mouse.click(cells["x"] + 12, cells["y"] + 35 + 35 * 2 + 17)  # row-selection column, third row
        wait_idle(page, LONG)
        expect(page.get_by_text("Pair 3 (relevance")).to_be_visible(timeout=60_000)
        crops = page.locator("[data-testid=stImage]").filter(has=page.locator("img"))
        expect(page.get_by_text("A, at (")).to_be_visible()
        expect(page.get_by_text("B, at (")).to_be_visible()
        assert crops.count() >= 2
        page.screenshot(path=ARTIFACTS / "explain-view-crops.png", full_page=True)

        # a click on the middle of the second strongest link chooses that pair instead
        chart.scroll_into_view_if_needed()
        page.mouse.dblclick(box["x"] + 5, box["y"] + box["height"] - 5)  # back to both pages whole
        wait_idle(page, LONG)
        spot = page.evaluate(LINK_MIDDLE_JS, 2)
        page.mouse.click(spot[0], spot[1])
        wait_idle(page, LONG)
        expect(page.get_by_text("Pair 2 (relevance")).to_be_visible(timeout=60_000)

        # the digits the bigram network found, as boxes with values, and named in the table
        page.get_by_text("Show the detected digits").click()
        wait_idle(page, LONG)
        assert "ex_digits=true" in page.url.lower()
        labels = page.locator("[data-testid=stPlotlyChart] g.textpoint text")
        expect(labels.first).to_be_attached(timeout=60_000)
        values = labels.evaluate_all("texts => texts.map(t => t.textContent)")  # SVG text has no innerText
        assert set("".join(values)) <= set("0123456789") and len(values) > 20
        with page.expect_download() as download:  # the table names the digits inside each square
            page.get_by_role("button", name="Top patch pairs (CSV)").click()
        table = pd.read_csv(download.value.path(), dtype=str, keep_default_na=False)
        assert {"digits A", "digits B"} <= set(table.columns)
        assert table["digits A"].str.fullmatch(r"[0-9 ]*").all() and (table["digits A"] != "").any()
        chart.screenshot(path=ARTIFACTS / "explain-view-digits.png")

        # the heatmaps are drawn when their expander is opened (not on every re-draw)
        images_before = page.locator("[data-testid=stImage] img").count()
        assert page.get_by_text("how much each place adds to the similarity").count() == 0
        page.get_by_text("Where each page's similarity lies (heatmaps)").click()
        wait_idle(page, LONG)
        expect(page.get_by_text("A: how much each place adds to the similarity")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("B: how much each place adds to the similarity")).to_be_visible()
        assert page.locator("[data-testid=stImage] img").count() == images_before + 2

        # a shared link with non-default settings, opened in a second browser context (a colleague's browser)
        # 64 px: neither the model's default (16) nor the larger size large pages fall back to (32)
        shared = (f"pair={first}-{second}&model={MODEL}&gamma=0.5&patch=64&ex_top=5&ex_sign=positive"
                  "&ex_threshold=0.1")
        other = browser.new_context(viewport={"width": 1500, "height": 1300}).new_page()
        open_explain(other, url, shared)
        expect(other.get_by_role("radio", name="positive")).to_be_checked()
        expect(other.get_by_role("radio", name="One global γ")).to_be_checked()
        expect(other.get_by_text("64-px squares")).to_be_visible()
        expect(other.get_by_text("γ 0.5")).to_be_visible()
        expect(other.get_by_text("the 5 strongest links")).to_be_visible()
        sliders = other.locator("[data-testid=stSliderThumbValue]").all_inner_texts()
        assert {"5", "0.50", "64"} <= set(sliders), sliders
        assert "patch=64" in other.url and "gamma=0.5" in other.url
        other.screenshot(path=ARTIFACTS / "explain-view-shared-link.png", full_page=True)
        browser.close()
