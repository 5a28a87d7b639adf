"""A historian's own scans in headless Chromium (issue 16 §5): two scans without metadata uploaded through Add
scans, their neighbours opened through the link Add scans shows, the search box's setting carried by a link into
a second browser context, then the explanation of the pair.

Screenshots go to ``test-artifacts/own-scans-*.png``. Skipped only when Debian's /usr/bin/chromium is missing.
"""

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.browser_helpers import CHROMIUM, REPO, launch_chromium, streamlit_server, wait_idle

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed "
                                 "(apt-get install chromium); the browser test needs it")]
MODEL = "vgg16-L5-h8-seed0-px64"
ARTIFACTS = REPO / "test-artifacts"
WORDS_OF_MISSING = ("None", "nan", "<NA>")


def query(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def two_printings(folder):
    """Two scans of one table: the same ruled grid of figures, the second shifted a little and speckled.

    White on black, as scans from microfilm negatives are: the test's model is a small untrained network whose
    raw inner products favour strong features, and these give each other by far the largest score (the two
    printings are each other's first neighbour), whatever the demo pages are.
    """
    rng = np.random.default_rng(4)
    paths = []
    for number, name in enumerate(("clavius-1585.png", "pifferi-1604.png")):
        picture = Image.new("RGB", (360, 480), (20, 20, 20))
        draw = ImageDraw.Draw(picture)
        for row in range(14):
            y = 30 + 30 * row + 2 * number
            draw.line((20, y + 24, 340, y + 24), fill=(250, 250, 250))
            for column in range(4):
                draw.text((30 + 80 * column + 3 * number, y), f"{(row * 7 + column * 13) % 60:02d} {row + column}",
                          fill=(250, 250, 250))
        pixels = np.asarray(picture).astype(np.int16) + rng.integers(-12, 12, (480, 360, 3)) * number
        path = folder / name
        Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(path)
        paths.append(path)
    return paths


def shows_no_missing_words(text: str) -> None:
    for word in WORDS_OF_MISSING:
        assert not re.search(rf"\b{re.escape(word)}\b", text), (word, text[:2000])


def test_own_scans_without_metadata(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    scans = two_printings(tmp_path)
    with streamlit_server(tmp_path / "root", MODEL, books=2, log=ARTIFACTS / "own-scans-streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        expect(page.get_by_role("heading", name="Corpus", exact=True)).to_be_visible(timeout=300_000)
        wait_idle(page)

        page.goto(f"{url}/add")
        expect(page.get_by_role("heading", name="Add scans")).to_be_visible(timeout=60_000)
        wait_idle(page)
        page.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files([str(p) for p in scans])
        wait_idle(page)
        page.get_by_role("button", name="Add the scans to the corpus").click()
        wait_idle(page)
        expect(page.get_by_text(re.compile(r"Find neighbours of #\d+ · clavius-1585\.png, 360×480 px"))).to_be_visible(
            timeout=60_000)
        expect(page.get_by_text(re.compile(r"Find neighbours of #\d+ · pifferi-1604\.png, 360×480 px"))).to_be_visible()
        page.get_by_role("button", name=re.compile(r"Update the 1 built index")).click()
        wait_idle(page)
        expect(page.get_by_text(re.compile(r"2 computed, \d+ already done"))).to_be_visible(timeout=120_000)
        page.screenshot(path=ARTIFACTS / "own-scans-1-added.png", full_page=True)

        page.get_by_role("link", name=re.compile(r"Find neighbours of #\d+ · clavius")).click()
        expect(page.get_by_role("heading", name="Neighbours")).to_be_visible(timeout=60_000)
        wait_idle(page)
        main = page.get_by_test_id("stMain")
        expect(main.get_by_text(re.compile(r"^1\. score"))).to_be_visible(timeout=60_000)
        query_id = int(query(page)["item"])
        first_card = main.locator("[data-testid=stMarkdownContainer]").filter(has_text=re.compile(r"^1\. score"))
        card = first_card.first.inner_text()
        assert "pifferi-1604.png, 360×480 px" in card, card  # the other printing, named by its file, at rank 1
        assert "higher than" in card and "% of pairs" in card, card  # no kind: compared with all pairs
        expect(main.get_by_text(re.compile(r"untrained network — not meaningful for research")).first).to_be_visible()
        expect(main.get_by_text(f"#{query_id} · clavius-1585.png, 360×480 px")).to_be_visible()
        shows_no_missing_words(main.inner_text())
        page.screenshot(path=ARTIFACTS / "own-scans-2-neighbours.png", full_page=True)

        # The search box goes into the link; a second browser context opening it sees the same view.
        search = page.get_by_role("textbox", name="Search")
        search.fill("pifferi")
        search.press("Enter")
        wait_idle(page)
        page.wait_for_function("() => location.search.includes('nb_text=pifferi')", timeout=30_000)
        shared = page.url
        other = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
        other.goto(shared)
        expect(other.get_by_role("heading", name="Neighbours")).to_be_visible(timeout=60_000)
        wait_idle(other)
        other.screenshot(path=ARTIFACTS / "own-scans-3-shared-link.png", full_page=True)
        expect(other.get_by_role("textbox", name="Search")).to_have_value("pifferi", timeout=30_000)
        cards = other.get_by_test_id("stMain").locator("[data-testid=stMarkdownContainer]").filter(
            has_text=re.compile(r"^\d+\. score"))
        expect(cards.first).to_be_visible(timeout=60_000)
        assert cards.count() == 1 and "pifferi-1604.png" in cards.first.inner_text()
        other.screenshot(path=ARTIFACTS / "own-scans-3-shared-link.png", full_page=True)
        other.context.close()

        main.get_by_role("link", name=re.compile(r"^Explain$")).first.click()
        expect(page.get_by_role("heading", name=re.compile("Explain"))).to_be_visible(timeout=60_000)
        wait_idle(page)
        first, second = (int(n) for n in query(page)["pair"].split("-"))
        assert first == query_id and second != query_id
        body = page.get_by_test_id("stMain")
        expect(body.get_by_text(re.compile(r"clavius-1585\.png")).first).to_be_visible(timeout=120_000)
        expect(body.get_by_text(re.compile(r"pifferi-1604\.png")).first).to_be_visible()
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".filter(img => img.complete && img.naturalWidth > 100).length >= 1", timeout=180_000)
        wait_idle(page)
        shows_no_missing_words(body.inner_text())
        page.screenshot(path=ARTIFACTS / "own-scans-4-explain.png", full_page=True)
        browser.close()
