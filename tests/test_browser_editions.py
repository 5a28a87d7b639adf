"""Headless Chromium on the Editions page: a click on a matrix cell and on a link of the network lists the
matching pairs, and a pair's "Explain" opens its explanation; a group is explained against its earliest member.

A 3-book demo corpus (tiny random VGG) is built before the server starts. Screenshots go to ``test-artifacts/``.
Skipped only when Debian's /usr/bin/chromium is not installed.
"""

import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser_helpers import CHROMIUM, REPO, launch_chromium, streamlit_server, wait_idle

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed "
                                 "(apt-get install chromium); the browser test needs it")]
MODEL = "vgg16-L5-h8-seed0-px64"
ARTIFACTS = REPO / "test-artifacts"


def click_first_point(page, chart) -> None:
    """Click the first data point of a plotly chart where it is drawn (plotly listens on the layer above it)."""
    point = chart.locator(".scatterlayer .point").first
    point.wait_for(state="attached", timeout=60_000)
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)


def open_with_every_pair_matching(page, url) -> None:
    """Open the Editions page on illustrations and set the threshold so low that every pair of the kNN graph
    matches: the 3 editions are surely linked."""
    from playwright.sync_api import expect

    page.goto(f"{url}/editions?model={MODEL}&ed_kind=illustration")
    expect(page.get_by_role("heading", name="Editions", exact=True)).to_be_visible(timeout=120_000)
    wait_idle(page)
    page.get_by_text("Set the threshold by hand").click()
    wait_idle(page)
    threshold = page.get_by_label("Match threshold")
    threshold.fill("-1000000000")
    threshold.press("Enter")
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"\(given\)"))).to_be_visible(timeout=60_000)


def pairs_listed(page):
    """The visible caption over a list of matching pairs (not the chart's hover text, which has no full stop)."""
    return page.locator("[data-testid=stMain] p:visible", has_text=re.compile(r"^\d+ matching pairs\.")).first


def open_first_explanation(page) -> tuple[str, str]:
    """Follow the first visible "Explain" link of the pairs shown; returns the pair the Explain page opened."""
    from playwright.sync_api import expect

    main = page.get_by_test_id("stMain")
    link = main.get_by_role("link", name="Explain", exact=True).filter(visible=True).first
    expect(link).to_be_visible(timeout=60_000)
    wanted = parse_qs(urlparse(link.get_attribute("href")).query)["pair"][0]
    link.click()
    expect(page.get_by_role("heading", name="Explain a similarity")).to_be_visible(timeout=60_000)
    wait_idle(page)
    return wanted, parse_qs(urlparse(page.url).query)["pair"][0]


def test_matrix_cell_and_network_link_lead_to_explanations(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from corpus_index.demo import build_demo

    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "root"
    build_demo(root, books=3, models=[MODEL]).corpus.close()
    with streamlit_server(root, MODEL, books=3, log=ARTIFACTS / "browser-editions-streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        open_with_every_pair_matching(page, url)
        page.screenshot(path=ARTIFACTS / "browser-editions-1-matrix.png", full_page=True)

        click_first_point(page, page.locator(".js-plotly-plot:visible").first)
        wait_idle(page)
        expect(pairs_listed(page)).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "browser-editions-2-cell-pairs.png", full_page=True)
        wanted, opened = open_first_explanation(page)
        assert opened == wanted
        page.screenshot(path=ARTIFACTS / "browser-editions-3-explain-from-cell.png", full_page=True)

        open_with_every_pair_matching(page, url)  # a new session: the Explain page dropped the threshold widgets
        page.get_by_role("tab", name="Network").click()
        wait_idle(page)
        network = page.locator(".js-plotly-plot:visible").first
        expect(network).to_be_visible(timeout=60_000)
        click_first_point(page, network)  # the first points are the links' diamonds (lines have no points)
        wait_idle(page)
        expect(pairs_listed(page)).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "browser-editions-4-network-pairs.png", full_page=True)
        wanted, opened = open_first_explanation(page)
        assert opened == wanted
        page.screenshot(path=ARTIFACTS / "browser-editions-5-explain-from-network.png", full_page=True)

        # the life of one illustration: its printings explained against the earliest, and their shared regions
        open_with_every_pair_matching(page, url)
        page.get_by_role("tab", name="Groups").click()
        wait_idle(page)
        page.get_by_role("button", name=re.compile(r"^Explain every printing against the earliest")).click()
        wait_idle(page)
        expect(page.get_by_text("Shared regions", exact=False)).to_be_visible(timeout=120_000)
        expect(page.get_by_text(re.compile(r"^#\d+ and #\d+: y = ")).first).to_be_visible(timeout=120_000)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".every(img => img.complete && img.naturalWidth > 0)", timeout=60_000)
        page.screenshot(path=ARTIFACTS / "browser-editions-6-group.png", full_page=True)
        browser.close()
