"""Errors become clear messages on the page (``st.error``), never tracebacks; tracebacks go to the server log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

log = logging.getLogger("sphaera.explorer")


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions whose message already tells the user what is wrong and what to do."""
    import bilrp_core
    from corpus_index.corpus import CorpusNotFoundError, ItemNotFoundError
    from corpus_index.faiss_index import IndexMissingError
    from corpus_index.images import ImageRejected
    from corpus_index.models import UnknownModelKeyError

    return (bilrp_core.WeightsUnavailableError, bilrp_core.UnsupportedLayerError, CorpusNotFoundError,
            ItemNotFoundError, IndexMissingError, ImageRejected, UnknownModelKeyError, FileNotFoundError,
            PermissionError, ValueError)


def message(error: BaseException) -> str:
    """One readable line (or a few) for an exception."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return text or type(error).__name__


@contextmanager
def shown(action: str = "") -> Iterator[None]:
    """Run a block; a failure is shown as ``st.error`` and the rest of the page goes on.

    Streamlit's own control flow (``st.rerun``, ``st.stop``, ``st.switch_page``) raises BaseExceptions that are
    not caught here.
    """
    try:
        yield
    except _user_error_types() as error:
        log.info("%s failed: %s", action or "action", error)
        st.error(f"{action + ': ' if action else ''}{message(error)}")
    except Exception as error:  # anything unexpected: a readable message here, the traceback in the log
        log.exception("%s failed", action or "action")
        st.error(f"{action + ' failed' if action else 'Something went wrong'} ({type(error).__name__}: "
                 f"{message(error)}). The details are in the server log.")
