"""End to end in headless Chromium: first start builds the demo, then gallery -> neighbours -> explain -> γ -> CSV.

Screenshots go to ``test-artifacts/``. Skipped only when Debian's /usr/bin/chromium is not installed.
"""

import csv
import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser_helpers import CHROMIUM, REPO, launch_chromium, streamlit_server, wait_idle

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed "
                                 "(apt-get install chromium); the browser test needs it")]
MODEL = "vgg16-L5-h8-seed0-px64"
ARTIFACTS = REPO / "test-artifacts"


def query(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def test_gallery_neighbours_explain_gamma_and_csv(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "root"
    with streamlit_server(root, MODEL, books=2, log=ARTIFACTS / "browser-streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(url)
        # First start: the demo corpus is built with a progress display, then the Corpus page appears.
        expect(page.get_by_text("First start: building the demo corpus")).to_be_visible(timeout=60_000)
        # A second browser session meanwhile waits for the same build instead of starting another one.
        other = browser.new_context().new_page()
        other.goto(url)
        expect(other.get_by_text("started from another browser session")).to_be_visible(timeout=60_000)
        other.screenshot(path=ARTIFACTS / "browser-0-second-session-waits.png")
        expect(page.get_by_role("heading", name="Corpus", exact=True)).to_be_visible(timeout=300_000)
        wait_idle(page)
        # AppTest cannot see charts or images: check here that the corpus map is drawn with one point per page
        # and that gallery thumbnails load.
        expect(page.locator(".js-plotly-plot .scatterlayer .point").first).to_be_attached(timeout=60_000)
        assert page.locator(".js-plotly-plot .scatterlayer .point").count() >= 10
        page.locator("[data-testid=stImage] img").first.scroll_into_view_if_needed()
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".some(img => img.complete && img.naturalWidth > 0)", timeout=60_000)
        page.screenshot(path=ARTIFACTS / "browser-1-corpus.png", full_page=True)
        expect(other.get_by_role("heading", name="Corpus", exact=True)).to_be_visible(timeout=60_000)
        wait_idle(other)
        count = re.compile(r"· (\d+) items")
        assert count.search(other.inner_text("body"))[1] == count.search(page.inner_text("body"))[1]
        other.context.close()

        main = page.get_by_test_id("stMain")  # the page itself (the sidebar's navigation links too)
        main.get_by_role("link", name=re.compile(r"Neighbours$")).first.click()
        expect(page.get_by_role("heading", name="Neighbours")).to_be_visible(timeout=60_000)
        wait_idle(page)
        assert urlparse(page.url).path.endswith("/neighbours") and query(page)["model"] == MODEL
        item = query(page)["item"]
        expect(page.get_by_text(re.compile(r"^1\. score"))).to_be_visible()
        page.screenshot(path=ARTIFACTS / "browser-2-neighbours.png", full_page=True)

        main.get_by_role("link", name=re.compile(r"Explain$")).first.click()
        expect(page.get_by_role("heading", name="Explain a similarity")).to_be_visible(timeout=60_000)
        wait_idle(page)
        first, second = query(page)["pair"].split("-")
        assert first == item and second != item
        expect(page.get_by_text("Share explained")).to_be_visible(timeout=120_000)
        wait_idle(page)
        # the zoomable pair view holds both scans, and the strongest pair's two patches are real, loaded images
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .layer-above image, "
                               ".js-plotly-plot image').length >= 2", timeout=60_000)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".filter(img => img.complete && img.naturalWidth > 100).length >= 2", timeout=60_000)
        page.screenshot(path=ARTIFACTS / "browser-3-explain.png", full_page=True)

        # Move the γ control: one global γ, then the slider three steps to the right with the keyboard.
        page.get_by_text("One global γ").click()
        wait_idle(page)
        slider = page.locator("[data-testid=stSlider]").filter(has_text="γ for every layer").get_by_role("slider")
        slider.focus()
        for _ in range(3):
            slider.press("ArrowRight")
        wait_idle(page)
        assert "gamma=0.4" not in page.url  # a new γ needs new factors: nothing is computed before Apply
        page.get_by_role("button", name="Apply").click()
        wait_idle(page)
        page.wait_for_function("() => location.search.includes('gamma=0.4')", timeout=30_000)
        assert query(page)["gamma"] == "0.4"  # 0.25 + 3 × 0.05, in the deep link
        expect(page.get_by_text("γ 0.4, 8-px squares")).to_be_visible(timeout=120_000)  # redrawn at the new γ
        wait_idle(page)
        page.screenshot(path=ARTIFACTS / "browser-4-gamma.png", full_page=True)

        with page.expect_download() as download_info:
            page.get_by_role("button", name="Top patch pairs (CSV)").click()
        target = ARTIFACTS / "browser-top-pairs.csv"
        download_info.value.save_as(target)
        with open(target, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 30 and {"rank", "relevance", "img1_x0", "orig2_y1"} <= set(rows[0])
        assert [int(r["rank"]) for r in rows] == list(range(1, 31))
        browser.close()
