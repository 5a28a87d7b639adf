"""Sphaera similarity explorer — Streamlit entry point.

``streamlit run app.py`` opens the corpus at ``SPHAERA_ROOT`` (default ``data/``); on first start it builds the
demo corpus there, with a progress display. Pages are routed with ``st.navigation``; their URL paths
(``/neighbours``, ``/explain`` …) and query parameters make deep links (see ``explorer/links.py``); pages link
to each other with ``st.page_link`` on the same page objects (:func:`explorer.shell.page`).

The page files live in ``pages/``; :mod:`explorer.shell` lists them (one registry for the navigation and
the links) and hands a page run outside this script, a deep link opened first on a fresh server, over to it.
"""

import time

import streamlit as st

from explorer import config, errors, resources, shell
from explorer.progress import progress_bar

st.set_page_config(page_title="Sphaera similarity explorer", page_icon=":material/public:", layout="wide")


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
                notes = resources.build_demo(state, progress_bar("generating the demo pages …"))
                for note in notes:
                    st.write(note)
                status.update(label="The demo corpus is ready", state="complete", expanded=False)
    finally:
        state.lock.release()
    resources.warm_up(state)
    return state.corpus


navigation = shell.navigation()
corpus = None
with errors.shown("Opening the corpus"):
    corpus = ready_corpus()
if corpus is None:
    st.stop()
with st.sidebar:
    st.caption(f"Corpus: `{corpus.root}` · {corpus.count()} items")
shell.run(navigation)
