"""Sphaera similarity explorer — Streamlit entry point.

``streamlit run app.py`` opens the corpus at ``SPHAERA_ROOT`` (default ``data/``); on first start it builds the
demo corpus there, with a progress display. Pages are routed with ``st.navigation``; their URL paths
(``/neighbours``, ``/explain`` …) and query parameters make deep links (see ``explorer/links.py``).

The page files live in ``pages/``; :mod:`explorer.shell` lists them (one registry for the navigation and
the links) and hands a page run outside this script, a deep link opened first on a fresh server, over to it.
"""

import time

import streamlit as st

from explorer import config, errors, links, resources, shell

st.set_page_config(page_title="Sphaera similarity explorer", page_icon=":material/public:", layout="wide")


def _progress_display(title: str):
    """A progress bar and a ``progress(done, total, message)`` callback that updates it at most 5× a second."""
    bar = st.progress(0.0, text=title)
    last = [0.0]

    def progress(done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and done < total:
            return
        last[0] = now
        bar.progress(min(1.0, done / total) if total else 0.0, text=f"{message} ({done}/{total})")

    return progress


def ready_corpus():
    """The shared corpus; builds the demo corpus (once, for every session) when the root has none."""
    state = resources.shared(str(config.root()))
    if state.corpus is not None and not resources.missing_demo_models(state):
        resources.warm_up(state)
        return state.corpus
    if not state.lock.acquire(blocking=False):
        st.info("The demo corpus is being built (started from another browser session); this page refreshes "
                "when it is ready.")
        time.sleep(2)
        st.rerun()
    try:
        if state.corpus is None and not resources.demo_needed(state.root):
            resources.open_corpus(state)
        if state.corpus is None or resources.missing_demo_models(state):
            with st.status(f"First start: building the demo corpus in {state.root} …", expanded=True) as status:
                notes = resources.build_demo(state, _progress_display("generating the demo pages …"))
                for note in notes:
                    st.write(note)
                status.update(label="The demo corpus is ready", state="complete", expanded=False)
    finally:
        state.lock.release()
    resources.warm_up(state)
    return state.corpus


navigation = st.navigation(list(shell.streamlit_pages().values()))
corpus = None
with errors.shown("Opening the corpus"):
    corpus = ready_corpus()
if corpus is None:
    st.stop()
links.follow()  # a button asked for another page: go there before running this one
with st.sidebar:
    st.caption(f"Corpus: `{corpus.root}` · {corpus.count()} items")
shell.run(navigation)
