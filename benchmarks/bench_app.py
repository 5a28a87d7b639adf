"""Explorer responsiveness in a real browser (headless Debian Chromium through Playwright).

Starts ``streamlit run app.py`` on a fresh demo root with the VGG model (``--model``) and the bigram network
(the app's first start builds the demo corpus and precomputes the bigram factors of its tables), then measures,
from the click to the moment the new content is on screen and the script run is over (each click waits until the
page before it has finished drawing), against the targets of issue 15 (:data:`TARGETS`):
- ``cached_explanation``: a demo table pair under the bigram network right after the first start (its factors
  were precomputed by the first start; target ≤ 1 s), switched to from the Explain page's own form;
- ``uncached_real_size_table_pair_s``: two demo tables rendered at real-scan size (≈1400 px tall once
  normalised) added to the corpus, explained under the bigram network with nothing cached (target ≤ 5 s);
- ``uncached_explanation_s``: an uncached VGG pair (target ≤ 10 s), and that its progress display appears;
- ``neighbours_after_click``: the neighbour list after clicking "Neighbours" under a gallery thumbnail (< 1 s);
- ``click_through_with_prefetch``: Neighbours → "Explain" of a neighbour whose card says its explanation is ready
  (the prefetch worker computed it in the background; target ≤ 2 s), and how long the card took to be ready;
- ``redraw_after_slider``: a redraw of an explanation after changing "Patch pairs drawn" (no new factors).

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

TARGET_S = 1.0  # the neighbour list after a click
TABLE_MODEL = "bigram"
#: Targets (seconds) for the keys of the result, ``meets_target`` compares each with its measurement: issue 15's
#: four, and this benchmark's own for the neighbour list (:data:`TARGET_S`).
TARGETS = {"neighbours_after_click": 1.0, "cached_explanation": 1.0, "uncached_real_size_table_pair_s": 5.0,
           "uncached_explanation_s": 10.0, "click_through_with_prefetch": 2.0}
REAL_SIZE_GROUP = 7  # a demo table group printed 1400 px tall once normalised (benchmarks/bench_windowed.py)


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

    results: dict = {"model": args.model, "table_model": TABLE_MODEL, "books": args.books, "target_s": TARGET_S,
                     "targets_s": TARGETS,
                     "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}}
    models = f"{args.model},{TABLE_MODEL}"
    with tempfile.TemporaryDirectory() as tmp, \
            streamlit_server(Path(tmp) / "root", models, books=args.books, log=Path(tmp) / "st.log",
                             threads=None) as url, \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            _measure(page, url, args, results, Path(tmp))
        except Exception:
            page.screenshot(path=str(ROOT / "benchmarks" / "results" / "app_failure.png"), full_page=True)
            raise
        browser.close()
        results["server_side"] = server_side(Path(tmp) / "root", models, results.pop("_probe"))
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["meets_target"] = {key: measured(results[key]) <= target for key, target in TARGETS.items()
                               if results.get(key) is not None}
    return results


def measured(value) -> float:
    """A result's number: a summary's median, or the seconds themselves."""
    return value["median_s"] if isinstance(value, dict) else value


def server_side(root: Path, models: str, probe: dict) -> dict:
    """The same steps without a browser (AppTest: script run time only), to separate the app's own work from
    the browser, the websocket and the machine's load."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(SPHAERA_ROOT=str(root), SPHAERA_MODELS=models)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    timings = {"neighbours_first_search_s": [], "explain_cached_factors_s": []}
    for item in probe["items"]:
        at.query_params.clear()
        at.query_params.update({"item": str(item), "model": probe["model"]})
        at.switch_page("pages/neighbours.py")
        start = time.perf_counter()
        at.run()
        timings["neighbours_first_search_s"].append(round(time.perf_counter() - start, 3))
    for first, second in probe["pairs"]:
        at.query_params.clear()
        at.query_params.update({"pair": f"{first}-{second}", "model": TABLE_MODEL})
        at.switch_page("pages/explain.py")
        start = time.perf_counter()
        at.run()  # both factors are on disk; this process has not explained anything yet (no st.cache_data)
        timings["explain_cached_factors_s"].append(round(time.perf_counter() - start, 3))
    from explorer import prefetch

    prefetch.wait_idle(timeout=600)  # the AppTest pages' background work ends before the root is removed
    timings["note"] = (f"explanations: demo table pairs under {TABLE_MODEL}; the first includes loading the model "
                       "in this process")
    return timings


def done_js(text: str) -> str:
    """A page predicate: the app is idle and ``text`` is on the page."""
    return f"() => ({IDLE_JS})() && document.body.innerText.includes({json.dumps(text)})"


def open_pair(page, url: str, pair: tuple[int, int], model: str) -> float:
    """Open the Explain page of ``pair`` by its URL and wait for the explanation; returns the seconds."""
    start = time.perf_counter()
    page.goto(f"{url}/explain?pair={pair[0]}-{pair[1]}&model={model}")
    page.wait_for_function(done_js("Share explained"), timeout=1_800_000)
    return time.perf_counter() - start


def switch_pair(page, pair: tuple[int, int], progress: str | None = None) -> tuple[float, bool]:
    """On an open Explain page, enter ``pair`` in its form and click "Explain": one click, as a user switching
    pairs does. Returns the seconds until the new explanation is shown, and whether ``progress`` appeared."""
    fields = page.get_by_role("spinbutton")
    if not fields.nth(0).is_visible():  # the form's expander keeps its state between switches
        page.get_by_text("Choose the pair").click()
    for field, value in ((fields.nth(0), pair[0]), (fields.nth(1), pair[1])):
        field.fill(str(value))
        field.press("Enter")  # commits the value (one short rerun), before the timed click
        wait_idle(page)
    settle(page)
    start, seen = time.perf_counter(), False
    page.get_by_role("button", name="Explain", exact=True).click()
    while True:  # one light check per poll: the page's text is read only once the app is idle
        done, shown = page.evaluate(POLL_JS, {"first": f"A: #{pair[0]} ", "progress": progress or "\u0000"})
        seen = seen or (progress is not None and shown)
        if done:
            return time.perf_counter() - start, seen
        if time.perf_counter() - start > 1800:
            raise TimeoutError(f"the explanation of {pair} did not finish in 30 minutes")
        page.wait_for_timeout(50)


#: [explanation shown and the app idle, progress label shown]: the body's text is read only when the app is idle
#: (reading it forces a layout; while the server computes, the browser must not take the CPU it needs).
POLL_JS = (f"(args) => {{ const idle = ({IDLE_JS})(); "
           "const progress = Array.from(document.querySelectorAll('[data-testid=\"stProgress\"]')).some("
           "s => s.textContent.includes(args.progress)); "
           "const text = idle ? document.body.innerText : ''; "
           "return [idle && text.includes(args.first) && text.includes('Share explained'), progress]; }")


def kinds(root: Path) -> dict[str, list[int]]:
    """Item ids by kind (read from the corpus the server built)."""
    from corpus_index.corpus import Corpus

    corpus = Corpus.open(root)
    try:
        items = corpus.items()
        return {str(kind): [int(i) for i in group["id"]] for kind, group in items.groupby("kind")}
    finally:
        corpus.close()


def add_real_size_tables(root: Path, folder: Path) -> list[int]:
    """Two demo tables rendered at real-scan size, added to the corpus as a user adds scans; their ids."""
    import numpy as np

    from corpus_index.corpus import Corpus
    from corpus_index.synthetic import table_groups, table_page
    from corpus_index.synthetic.pages import sample_house_style

    folder.mkdir(parents=True, exist_ok=True)
    for seed in (0, 1):
        rng = np.random.default_rng([seed, REAL_SIZE_GROUP])
        scan, _, _ = table_page(table_groups()[REAL_SIZE_GROUP], sample_house_style(rng, "EB Garamond"), 10, rng)
        scan.save(folder / f"real-size-{seed}.png")
    corpus = Corpus.open(root)
    try:
        return [int(i) for i in corpus.ingest_folder(folder).added]
    finally:
        corpus.close()


def _measure(page, url: str, args, results: dict, tmp: Path) -> None:
    """The measurements (see the module docstring), written into ``results``; uncached ones come before any
    Neighbours page starts the prefetch worker (which would compute in the background)."""
    start = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name="Corpus", exact=True).wait_for(timeout=1_800_000)
    wait_idle(page, timeout=1_800_000)
    results["first_start_s"] = round(time.perf_counter() - start, 2)
    ids = gallery_ids(page)
    results["gallery_items"] = len(ids)
    by_kind = kinds(tmp / "root")
    tables, others = by_kind.get("table", []), [i for k, v in by_kind.items() if k != "table" for i in v]

    # A demo table pair after the first start: precomputed factors (the first open also loads the model).
    results["first_table_pair_open_s"] = round(open_pair(page, url, (tables[0], tables[1]), TABLE_MODEL), 2)
    pairs = [(tables[1 + n], tables[2 + n]) for n in range(args.repeats)]
    results["cached_explanation"] = summary([switch_pair(page, pair)[0] for pair in pairs])

    # A real-size table pair, nothing cached.
    real = add_real_size_tables(tmp / "root", tmp / "real-size")
    results["real_size_items"] = real
    results["uncached_real_size_table_pair_s"] = round(switch_pair(page, (real[0], real[1]))[0], 2)

    # An uncached VGG pair (two pages no explanation touched): its progress display must appear.
    open_pair(page, url, (others[0], others[0]), args.model)  # the Explain page under VGG (untimed)
    seconds, seen = switch_pair(page, (others[1], others[2]), progress="Computing BiLRP factors")
    results["uncached_explanation_s"] = round(seconds, 2)
    results["uncached_progress_shown"] = seen

    redraws = []
    slider = page.locator("[data-testid=stSlider]").filter(has_text="Patch pairs drawn").get_by_role("slider")
    settle(page)
    for number in range(args.repeats):
        slider.focus()
        redraws.append(timed(page, lambda: slider.press("ArrowLeft"), f"the {29 - number} strongest"))
    results["redraw_after_slider"] = summary(redraws)
    name = "app_quick_explain.png" if args.quick else "app_explain.png"
    page.screenshot(path=str(ROOT / "benchmarks" / "results" / name), full_page=True)

    # Neighbour list after a click in the gallery (the first search of each item is not cached).
    clicks = []
    for item in ids[: args.repeats]:
        page.goto(url)
        wait_idle(page)
        settle(page)
        button = page.locator("[data-testid=stMain]").get_by_role("link", name="Neighbours", exact=True) \
            .nth(ids.index(item))
        clicks.append(timed(page, button.click, "nearest by"))
    results["neighbours_after_click"] = summary(clicks)

    results["click_through_with_prefetch"] = click_through(page, url, args, others[3:3 + args.repeats])
    results["_probe"] = {"items": ids[args.repeats:2 * args.repeats], "model": args.model, "pairs": pairs}


def click_through(page, url: str, args, queries: list[int]) -> dict:
    """Neighbours of each query → wait until a card says its explanation is ready → click its "Explain"."""
    cards = page.locator("[data-testid=stColumn]").filter(has=page.get_by_role("link", name="Explain", exact=True))
    ready_after, clicks = [], []
    for query in queries:
        page.goto(f"{url}/neighbours?item={query}&model={args.model}")
        start = time.perf_counter()
        page.wait_for_function("() => document.body.innerText.includes('explanation ready')", timeout=1_800_000,
                               polling=500)  # seldom: the prefetch in the server needs the CPU
        ready_after.append(time.perf_counter() - start)
        wait_idle(page)
        settle(page)
        card = cards.filter(has_text="explanation ready").last  # the innermost column: one neighbour's card
        link = card.get_by_role("link", name="Explain", exact=True)
        clicks.append(timed(page, link.click, "Share explained"))
    return {**summary(clicks), "card_ready_after_s": [round(v, 2) for v in ready_after],
            "note": "seconds from the Explain click on a card marked 'explanation ready'; card_ready_after_s: "
                    "from opening the Neighbours page until the first card was ready (prefetch in the background)"}


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
