"""Errors become clear messages on the page (``st.error``), never tracebacks; tracebacks go to the server log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from corpus_index.errors import user_errors

log = logging.getLogger("sphaera.explorer")


def plain(text: str) -> str:
    """``text`` in plain words: Pillow's "decompression bomb" (a file claiming more pixels than is safe to decode)
    becomes "image too large: W×H pixels, limit N pixels". Used for every message and ingest reason the app shows.
    """
    if "decompression bomb" not in text.lower():
        return text
    refused = re.search(r"decompression bomb refused:?\s*", text, re.IGNORECASE)
    prefix = text[:refused.start()] if refused else ""
    size = re.search(r"(\d+)\s*[x×]\s*(\d+)", text)
    limit = re.search(r"limit of (\d+)", text)
    pixels = re.search(r"\((\d+) pixels\)", text)
    limit_text = f", limit {int(limit.group(1)):,} pixels" if limit else ""
    if size:
        return f"{prefix}image too large: {size.group(1)}×{size.group(2)} pixels{limit_text}"
    if pixels:
        return f"{prefix}image too large: {int(pixels.group(1)):,} pixels{limit_text}"
    return f"{prefix}image too large to open safely"


def message(error: BaseException) -> str:
    """One readable line (or a few) for an exception."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return plain(text) or type(error).__name__


def report(action: str, error: BaseException) -> None:
    """Show ``error`` as :func:`shown` would have, had the block raised it (for problems found without raising)."""
    log.info("%s failed: %s", action or "action", error)
    st.error(f"{action + ': ' if action else ''}{message(error)}")


@contextmanager
def shown(action: str = "") -> Iterator[None]:
    """Run a block; a failure is shown as ``st.error`` and the rest of the page goes on.

    Streamlit's own control flow (``st.rerun``, ``st.stop``, ``st.switch_page``) raises BaseExceptions that are
    not caught here.
    """
    try:
        yield
    except user_errors() as error:  # the one list the command line uses too
        report(action, error)
    except Exception as error:  # anything unexpected: a readable message here, the traceback in the log
        log.exception("%s failed", action or "action")
        st.error(f"{action + ' failed' if action else 'Something went wrong'} ({type(error).__name__}: "
                 f"{message(error)}). The details are in the server log.")
