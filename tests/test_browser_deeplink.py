"""A deep link opened as the very first request of a fresh server renders its page inside ``app.py``'s shell.

With the page files in ``pages/``, a fresh Streamlit process starts in its old multipage mode, where such a link
would run ``pages/explain.py`` alone (navigation by file names, no corpus caption from ``app.py``);
``explorer.shell.enter`` hands the run over to ``app.py`` with the link's query parameters.
"""

import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser_helpers import CHROMIUM, REPO, launch_chromium, streamlit_server, wait_idle

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is not installed")]
MODEL = "vgg16-L5-h8-seed0-px64"
ARTIFACTS = REPO / "test-artifacts"


def test_first_request_deep_link_runs_inside_the_shell(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "root"
    subprocess.run([sys.executable, "-m", "corpus_index", "--root", str(root), "demo", "--books", "2",
                    "--model", MODEL], cwd=REPO, check=True, capture_output=True, env={"OMP_NUM_THREADS": "1",
                                                                                       "PATH": "/usr/bin:/bin"})
    with streamlit_server(root, MODEL, books=2, log=ARTIFACTS / "deeplink-streamlit.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(f"{url}/explain?pair=1-2&model={MODEL}&gamma=0.3")  # the server's first page request
        expect(page.get_by_role("heading", name="Explain a similarity")).to_be_visible(timeout=120_000)
        wait_idle(page)
        sidebar = page.locator("[data-testid=stSidebar]")
        expect(sidebar.get_by_text("Compare models")).to_be_visible()  # app.py's page titles, not file names
        expect(sidebar.get_by_text("Corpus:")).to_be_visible()  # written by app.py before the page runs
        expect(page.get_by_text("A: #1")).to_be_visible()
        expect(page.get_by_text("Share explained")).to_be_visible(timeout=120_000)  # the explanation is drawn
        wait_idle(page)
        parsed = urlparse(page.url)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        assert parsed.path.endswith("/explain")
        assert query["pair"] == "1-2" and query["model"] == MODEL and query["gamma"] == "0.3"
        page.screenshot(path=ARTIFACTS / "browser-deeplink-explain.png")
        browser.close()
