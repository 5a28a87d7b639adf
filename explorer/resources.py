"""Objects shared by every browser session: the open :class:`~corpus_index.corpus.Corpus` and its first build.

``st.cache_resource`` makes one :class:`Shared` per corpus root for the whole server, so two sessions see the
same index; a lock makes sure only one of them builds the demo corpus (the other waits and shows why). The
``data_version`` of the corpus (items, built indexes) is part of every cached-data key, so results computed
before an ingest or a build are never shown after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from corpus_index.corpus import Corpus
from corpus_index.progress import Progress
from corpus_index.storage.layout import Layout
from explorer import config


@dataclass
class Shared:
    """Per-root state shared across sessions."""

    root: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    corpus: Corpus | None = None
    failed_models: dict[str, str] = field(default_factory=dict)  # model key -> why it could not be built
    notes: list[str] = field(default_factory=list)
    warmed: bool = False


@st.cache_resource(show_spinner=False)
def shared(root: str) -> Shared:
    """The one :class:`Shared` of ``root`` in this server process."""
    return Shared(Path(root))


def demo_needed(root: Path) -> bool:
    """Whether ``root`` holds no corpus with items yet (so the demo corpus is built there)."""
    if not Layout(root).db.is_file():
        return True
    corpus = Corpus.open(root)
    try:
        return corpus.count() == 0
    finally:
        corpus.close()


def missing_demo_models(state: Shared) -> list[str]:
    """Demo models of a demo root with no index yet (an interrupted first start resumes them), or whose index came
    from another version of the model (new weights shipped: they are rebuilt, the old data is kept aside)."""
    if not Layout(state.root).demo_source.is_dir() or state.corpus is None:
        return []
    built = set(state.corpus.models()) - set(state.corpus.stale_models())
    return [k for k in config.demo_models() if k not in built and k not in state.failed_models]


def build_demo(state: Shared, progress: Progress) -> list[str]:
    """Generate, ingest and index the demo corpus in ``state.root`` (:func:`corpus_index.demo.build_demo`, as
    the command line's ``demo``); returns notes for the user.

    Models that cannot be built (e.g. weights missing) are recorded in ``state.failed_models`` and skipped;
    the corpus opens anyway.
    """
    from corpus_index.demo import build_demo as build

    def models(corpus: Corpus) -> list[str]:
        state.corpus = corpus
        return missing_demo_models(state)

    result = build(state.root, books=config.demo_books(), seed=config.demo_seed(), models=models,
                   progress=progress, corpus=state.corpus)
    for key, error in result.failed.items():  # one unavailable model must not keep the explorer from opening
        state.failed_models[key] = f"{type(error).__name__}: {error}"
    state.notes = result.notes()
    return state.notes


def open_corpus(state: Shared) -> Corpus:
    """Open an existing corpus root once per server."""
    if state.corpus is None:
        state.corpus = Corpus.open(state.root)
    return state.corpus


def warm_up(state: Shared) -> None:
    """Load the default model in the background once per server, so the first explanation does not wait for it."""
    if state.warmed:
        return
    state.warmed = True

    def load() -> None:
        from corpus_index.models import load_model

        try:
            load_model(config.default_model())
        except Exception:  # shown to the user when a page actually needs the model
            pass

    threading.Thread(target=load, name="sphaera-warm-up", daemon=True).start()


def corpus() -> Corpus:
    """The corpus of the configured root (opened by ``app.py`` before any page runs)."""
    state = shared(str(config.root()))
    return open_corpus(state)


def data_version(corpus: Corpus) -> tuple:
    """Changes whenever items are added, metadata is edited or an index is rebuilt: part of every cached-data key."""
    from corpus_index.metadata_edit import last_edit

    indexes = corpus.layout.indexes
    stamps = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in indexes.glob("*.faiss"))) if indexes.is_dir() \
        else ()
    return corpus.count(), stamps, last_edit(corpus.store)
