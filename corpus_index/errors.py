"""The errors a user can fix, listed once: the command line prints them as one line ``error: ...`` (exit status
1) and the explorer shows them as a message on the page; anything else is a bug and keeps its traceback (in
``CORPUS_INDEX_DEBUG=1`` runs of the command line, in the explorer's server log).

The facade's own errors are defined here; the others stay beside the code that raises them and are collected in
:func:`user_errors`, which imports their modules only when first asked (the command line parses its arguments
without importing torch or faiss). ``USER_ERRORS`` is the same tuple.
"""

from __future__ import annotations

import functools


class CorpusNotFoundError(FileNotFoundError):
    """The corpus root (or its database) does not exist and ``create`` was not asked for."""


class StaleModelDataError(RuntimeError):
    """Stored data of a model key was computed with another version of the model (e.g. retrained weights)."""


class ItemNotFoundError(KeyError):
    """No item with this id in the corpus."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


@functools.cache
def user_errors() -> tuple[type[BaseException], ...]:
    """Every exception type whose message already tells the user what is wrong and what to do.

    Besides the project's errors: missing or unreadable files and folders, bad values (a γ, a year, an id) and
    unknown keys (an item id, a filter), which the code raises with messages naming the value.
    """
    import bilrp_core
    from corpus_index.ingest.images import ImageRejected
    from corpus_index.models import UnknownModelKeyError
    from corpus_index.storage.faiss_index import IndexMissingError
    from corpus_index.storage.integrity import DamagedFileError, StaleContentError
    from corpus_index.storage.store_migrations import SchemaVersionError  # and its CorpusDatabaseError

    return (CorpusNotFoundError, ItemNotFoundError, StaleModelDataError, IndexMissingError, ImageRejected,
            DamagedFileError, StaleContentError, UnknownModelKeyError, SchemaVersionError,
            bilrp_core.WeightsUnavailableError, bilrp_core.UnsupportedLayerError,
            FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, KeyError, ValueError,
            TypeError)


def __getattr__(name: str):
    if name == "USER_ERRORS":
        return user_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
