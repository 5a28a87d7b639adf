"""Explorer responsiveness in a real browser (headless Debian Chromium through Playwright).

Starts ``streamlit run app.py`` on a fresh demo root (built by the app's first start), then measures, from the
click to the moment the new content is on screen and the script run is over (each click waits until the page
before it has finished drawing):
- the neighbour list after clicking "Neighbours" under a gallery thumbnail (target < 1 s), over several items;
- an uncached VGG explanation: that its progress display appears, and how long the factors take;
- an explanation from cached factors (both items' factors already on disk; target < 1 s);
- a redraw of an explanation after changing "Patch pairs drawn" (no new factors).

Usage: ``.venv/bin/python benchmarks/bench_app.py [--books 4] [--model vgg16-L17-h100-seed0] [--repeats 3]``
(writes ``benchmarks/results/app.json``; ``--quick`` uses 2 books and a small VGG and writes ``app_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import command_line  # noqa: E402
from tests.browser_helpers import CHROMIUM, IDLE_JS, launch_chromium, streamlit_server, wait_idle  # noqa: E402

TARGET_S = 1.0


def timed(page, action, text: str, timeout: float = 600_000) -> float:
    """Seconds from ``action()`` until ``text`` is on the page and no script run is in progress."""
    predicate = f"text => ({IDLE_JS})() && document.body.innerText.includes(text)"
    start = time.perf_counter()
    action()
    page.wait_for_function(predicate, arg=text, timeout=timeout, polling=25)
    return time.perf_counter() - start


def settle(page) -> None:
    """Let the browser finish drawing the page (thumbnails, the plotly map) before the timed click: the click
    should time the app's answer, not the end of the previous page's rendering."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1000)


def summary(values: list[float]) -> dict:
    return {"runs_s": [round(v, 3) for v in values], "median_s": round(statistics.median(values), 3),
            "max_s": round(max(values), 3)}


def gallery_ids(page) -> list[int]:
    captions = page.locator("[data-testid=stCaptionContainer]").all_inner_texts()
    return [int(c.split("·")[0].strip().lstrip("#")) for c in captions if c.startswith("#")]


def run(args) -> dict:
    from playwright.sync_api import sync_playwright

    results: dict = {"model": args.model, "books": args.books, "target_s": TARGET_S,
                     "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}}
    with tempfile.TemporaryDirectory() as tmp, \
            streamlit_server(Path(tmp) / "root", args.model, books=args.books, log=Path(tmp) / "st.log") as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            _measure(page, url, args, results)
        except Exception:
            page.screenshot(path=str(ROOT / "benchmarks" / "results" / "app_failure.png"), full_page=True)
            raise
        browser.close()
        results["server_side"] = server_side(Path(tmp) / "root", args.model, results.pop("_probe"))
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["meets_target"] = {
        "neighbours_after_click": results["neighbours_after_click"]["median_s"] < TARGET_S,
        "cached_explanation": results["cached_explanation"]["median_s"] < TARGET_S,
    }
    return results


def server_side(root: Path, model: str, probe: dict) -> dict:
    """The same steps without a browser (AppTest: script run time only), to separate the app's own work from
    the browser, the websocket and the machine's load."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(SPHAERA_ROOT=str(root), SPHAERA_MODELS=model)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    timings = {"neighbours_first_search_s": [], "explain_cached_factors_s": []}
    for item in probe["items"]:
        at.query_params.clear()
        at.query_params.update({"item": str(item), "model": model})
        at.switch_page("pages/neighbours.py")
        start = time.perf_counter()
        at.run()
        timings["neighbours_first_search_s"].append(round(time.perf_counter() - start, 3))
    for first, second in probe["pairs"]:
        at.query_params.clear()
        at.query_params.update({"pair": f"{first}-{second}", "model": model})
        at.switch_page("pages/explain.py")
        start = time.perf_counter()
        at.run()  # both factors are on disk; this process has not explained anything yet (no st.cache_data)
        timings["explain_cached_factors_s"].append(round(time.perf_counter() - start, 3))
    timings["note"] = "the first explanation includes loading the model in this process"
    return timings


def _measure(page, url: str, args, results: dict) -> None:
    """The measurements (see the module docstring), written into ``results``."""
    start = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name="Corpus", exact=True).wait_for(timeout=1_800_000)
    wait_idle(page, timeout=1_800_000)
    results["first_start_s"] = round(time.perf_counter() - start, 2)
    ids = gallery_ids(page)
    results["gallery_items"] = len(ids)

    # Neighbour list after a click in the gallery (the first search of each item is not cached).
    clicks = []
    for item in ids[: args.repeats]:
        page.goto(url)
        wait_idle(page)
        settle(page)
        button = page.get_by_role("button", name="Neighbours").nth(ids.index(item))
        clicks.append(timed(page, button.click, "nearest by y"))
    results["neighbours_after_click"] = summary(clicks)
    item = ids[0]
    page.goto(f"{url}/neighbours?item={item}&model={args.model}")
    wait_idle(page)
    neighbours = [int(t.split("#")[1].split()[0]) for t in page.locator("[data-testid=stMarkdown]")
                  .filter(has_text="score").all_inner_texts() if "#" in t][:3]

    # Uncached explanation: the progress display must appear while the factors are computed.
    page.get_by_role("button", name="Explain", exact=True).first.click()
    start, seen = time.perf_counter(), False
    done = f"() => ({IDLE_JS})() && document.body.innerText.includes('Share explained')"
    while True:
        seen = seen or "Computing BiLRP factors" in page.inner_text("body")
        if page.evaluate(done):
            break
        if time.perf_counter() - start > 1800:
            raise TimeoutError("the uncached explanation did not finish in 30 minutes")
        page.wait_for_timeout(50)
    results["uncached_explanation_s"] = round(time.perf_counter() - start, 2)
    results["uncached_progress_shown"] = seen

    # Factors of the query and its first neighbours are cached now; pairs among them need no new factors.
    page.goto(f"{url}/explain?pair={item}-{neighbours[1]}&model={args.model}")  # caches neighbour 2
    page.wait_for_function(f"() => ({IDLE_JS})() && document.body.innerText.includes('Share explained')",
                           timeout=1_800_000)
    cached = []
    for first, second in [(neighbours[0], neighbours[1]), (neighbours[1], item), (neighbours[1], neighbours[0])]:
        page.goto(f"{url}/explain?pair={first}-{second}&model={args.model}")
        wait_idle(page)
        page.get_by_role("button", name="Compare models on this pair").wait_for()
        # Open the pair from the page's own form: one click, as a user switching pairs does.
        page.get_by_text("Choose the pair").click()
        fields = page.get_by_role("spinbutton")
        for field, value in ((fields.nth(0), second), (fields.nth(1), first)):
            field.fill(str(value))
            field.press("Enter")  # commits the value (one short rerun), before the timed click
            wait_idle(page)
        cached.append(timed(page, page.get_by_role("button", name="Explain", exact=True).click,
                            f"A: #{second} "))
    results["cached_explanation"] = summary(cached)
    results["_probe"] = {"items": ids[args.repeats:2 * args.repeats],
                         "pairs": [(neighbours[0], neighbours[1]), (neighbours[1], item), (neighbours[0], item),
                                   (neighbours[1], neighbours[0])]}

    redraws = []
    slider = page.locator("[data-testid=stSlider]").filter(has_text="Patch pairs drawn").get_by_role("slider")
    settle(page)
    for number in range(args.repeats):
        slider.focus()
        redraws.append(timed(page, lambda: slider.press("ArrowLeft"), f"the {29 - number} strongest"))
    results["redraw_after_slider"] = summary(redraws)
    name = "app_quick_explain.png" if args.quick else "app_explain.png"
    page.screenshot(path=str(ROOT / "benchmarks" / "results" / name), full_page=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--books", type=int, default=4)
    parser.add_argument("--model", default="vgg16-L17-h100-seed0")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 books, VGG-16 L5 at 64 px: checks the script")
    args = parser.parse_args()
    if not CHROMIUM.is_file():
        print("error: /usr/bin/chromium is missing (apt-get install chromium)", file=sys.stderr)
        return 1
    if args.quick:
        args.books, args.model = 2, "vgg16-L5-h8-seed0-px64"
    try:
        results = {"command": command_line(), **run(args)}
    except Exception:
        print("the benchmark failed; the last screenshot is in benchmarks/results/app_failure.png", file=sys.stderr)
        raise
    out = ROOT / "benchmarks" / "results" / ("app_quick.json" if args.quick else "app.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
