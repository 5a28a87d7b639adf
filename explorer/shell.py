"""The explorer's pages, in one list; their ``st.Page`` objects for links; and the hand-over that keeps every page
inside ``app.py``'s shell.

``app.py`` is the shell: it opens (or first builds) the corpus, shows the sidebar, and runs the page the URL
names through ``st.navigation``. The page files live in the top-level ``pages/`` folder. Streamlit treats a
folder of that name beside the entry script as an old-style multipage app: when a process is fresh, its
``PagesManager.uses_pages_directory`` flag is set from the folder's existence, and until some run calls
``st.navigation`` a deep link such as ``/explain?pair=3-7`` runs ``pages/explain.py`` on its own, without the
shell. So every page file starts with :func:`enter`: inside the shell it does nothing; outside it, it runs
``app.py`` in its place, in the same script run (so the link's query parameters and any button just clicked
still count): ``app.py``'s ``st.navigation`` ends the old mode for the whole process and runs the page the URL
names inside the shell.
"""

from __future__ import annotations

import runpy
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st


@dataclass(frozen=True)
class PageSpec:
    """One page: its short name (used by links), file, title, icon and URL path (``None``: served at ``/``)."""

    name: str
    file: str
    title: str
    icon: str
    url_path: str | None = None


PAGES = (
    PageSpec("corpus", "pages/corpus.py", "Corpus", ":material/photo_library:"),
    PageSpec("neighbours", "pages/neighbours.py", "Neighbours", ":material/search:", "neighbours"),
    PageSpec("explain", "pages/explain.py", "Explain", ":material/conversion_path:", "explain"),
    PageSpec("compare", "pages/compare.py", "Compare models", ":material/compare:", "compare"),
    PageSpec("invariance", "pages/invariance.py", "Invariance", ":material/360:", "invariance"),
    PageSpec("editions", "pages/editions.py", "Editions", ":material/hub:", "editions"),
    PageSpec("add", "pages/add_scans.py", "Add scans", ":material/add_photo_alternate:", "add"),
    PageSpec("verdicts", "pages/verdicts.py", "Verdicts", ":material/gavel:", "verdicts"),
)
APP = Path(__file__).resolve().parent.parent / "app.py"

_run = threading.local()  # each script run has its own thread: is this run inside the shell?


def streamlit_pages() -> dict[str, st.Page]:
    """The pages as ``st.Page`` objects, by short name (the first is the default page, served at ``/``)."""
    return {spec.name: st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path,
                               default=spec.url_path is None) for spec in PAGES}


def navigation():
    """``st.navigation`` over the pages, created once for this script run and kept for :func:`page`."""
    _run.pages = streamlit_pages()
    return st.navigation(list(_run.pages.values()))


def page(name: str) -> st.Page:
    """The ``st.Page`` of page ``name`` (for ``st.page_link`` and ``st.switch_page``): the one this run's
    :func:`navigation` created; a run without one (a fragment's rerun) creates the pages again."""
    pages = getattr(_run, "pages", None)
    if pages is None:
        pages = _run.pages = streamlit_pages()
    return pages[name]


def run(page) -> None:
    """Run the page ``st.navigation`` chose, marked as running inside the shell; the background prefetch waits
    for it (:func:`explorer.prefetch.page_running`)."""
    from explorer import prefetch

    _run.inside = True
    try:
        with prefetch.page_running():
            page.run()
    finally:
        _run.inside = False


def enter() -> None:
    """First call of every page file: a page run outside the shell runs ``app.py`` instead (stops this run)."""
    if getattr(_run, "inside", False):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()
