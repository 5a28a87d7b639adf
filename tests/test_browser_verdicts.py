"""In headless Chromium: explain a pair -> record a verdict -> see it on the Verdicts page -> download the verdicts
as Web Annotations and parse them; the explanation's URL carries the items' content references (``h=``), and a
link whose ids name other items is resolved by them.

The corpus is the tiny test corpus with a 32-px VGG cut at layer 5 (built here, not by the app). Screenshots go
to ``test-artifacts/``. Skipped only when Debian's /usr/bin/chromium is not installed.
"""

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest
from tiny_corpus import SMALL_VGG_KEY, make_corpus

from corpus_index.item_refs import short_reference
from tests.browser_helpers import CHROMIUM, REPO, launch_chromium, streamlit_server, wait_idle

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed "
                                 "(apt-get install chromium); the browser test needs it")]
ARTIFACTS = REPO / "test-artifacts"


def query(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def test_explain_record_a_verdict_and_download_it_as_annotations(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    corpus = make_corpus(tmp_path)
    corpus.build(SMALL_VGG_KEY, batch_size=6)
    refs = {i: short_reference(corpus.item(i)["hash"]) for i in (1, 4)}
    hashes = {i: corpus.item(i)["hash"] for i in (1, 4)}
    root = corpus.root
    corpus.close()
    with streamlit_server(root, SMALL_VGG_KEY, log=ARTIFACTS / "browser-verdicts-streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 2200}, accept_downloads=True)
        # A link whose ids are wrong (99, 98 do not exist) but whose content references name items 1 and 4.
        page.goto(f"{url}/explain?pair=99-98&h={refs[1]}-{refs[4]}&model={SMALL_VGG_KEY}")
        expect(page.get_by_role("heading", name="Explain a similarity")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("Your verdict on this pair")).to_be_visible(timeout=120_000)
        wait_idle(page)
        assert query(page)["pair"] == "1-4" and query(page)["h"] == f"{refs[1]}-{refs[4]}"

        form = page.get_by_test_id("stForm")
        form.get_by_text("same — the same table or illustration").click()
        form.get_by_text("Right for the wrong reason").click()
        form.get_by_label("Note (optional)").fill("same table, other fount")
        form.get_by_label("Your name").fill("Ada Lovelace")
        form.get_by_role("button", name="Record the verdict").click()
        expect(page.get_by_text("are same (wrong reason)")).to_be_visible(timeout=60_000)
        wait_idle(page)
        expect(page.get_by_text("Current verdicts — Ada Lovelace: same")).to_be_visible()
        page.get_by_text("Your verdict on this pair").scroll_into_view_if_needed()
        page.screenshot(path=ARTIFACTS / "browser-verdicts-1-explain-form.png", full_page=True)

        page.get_by_test_id("stSidebar").get_by_role("link", name=re.compile("Verdicts")).click()
        expect(page.get_by_role("heading", name="Verdicts")).to_be_visible(timeout=60_000)
        wait_idle(page)
        expect(page.get_by_text("1 of 1 verdicts")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "browser-verdicts-2-page.png", full_page=True)
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Verdicts (W3C Web Annotation, JSON-LD)").click()
        target = ARTIFACTS / "browser-verdicts.jsonld"
        download_info.value.save_as(target)
        document = json.loads(target.read_text())
        assert document["type"] == "AnnotationCollection" and document["total"] == 1
        annotation = document["first"]["items"][0]
        assert annotation["motivation"] == "linking" and annotation["creator"]["name"] == "Ada Lovelace"
        assert [t["id"] for t in annotation["target"]] == [f"urn:sphaera:corpus/item/{hashes[i]}" for i in (1, 4)]
        assert annotation["verdict"]["label"] == "same" and annotation["verdict"]["wrong_reason"]
        assert annotation["verdict"]["model_key"] == SMALL_VGG_KEY and annotation["verdict"]["score"] is not None

        page.get_by_role("tab", name="Groups of copies").click()
        wait_idle(page)
        for member in ("#1 · Title b0", "#4 · Title b1"):  # both members of the group, with thumbnails
            expect(page.get_by_text(member)).to_be_visible()
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                               ".filter(img => img.complete && img.naturalWidth > 0).length >= 2", timeout=60_000)
        page.screenshot(path=ARTIFACTS / "browser-verdicts-3-groups.png", full_page=True)
        page.get_by_role("tab", name="Model validation").click()
        page.get_by_role("button", name="Validate the models").click()
        wait_idle(page)
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "browser-verdicts-4-validation.png", full_page=True)
        browser.close()
