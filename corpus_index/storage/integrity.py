"""Tying stored features, index rows and factors to the content they came from; damaged files.

Item ids are only row numbers of ``corpus.sqlite``: lose that file and re-ingest, and the same ids name other
scans. So everything computed from an item's image carries the item's *content tag*, :func:`content_tag` of its
``items.hash`` (SHA-256 of the image file) and region, and every reader compares it with the store:

* feature batches hold an array ``hashes`` beside ``ids`` and ``vectors`` (:mod:`corpus_index.storage.features`);
* each index has a sidecar ``<index file>.hashes.npz`` with the row ids and tags it was built from
  (:mod:`corpus_index.storage.faiss_index`);
* each cached factor file ends with a trailer naming its tag (:mod:`corpus_index.storage.factor_cache`).

A build recomputes whatever does not match; a query or explanation refuses it (:class:`StaleContentError`)
rather than serve another image's numbers. A file that cannot be read at all raises :class:`DamagedFileError`
naming the file and the repairing command; the next build moves it to ``ROOT/replaced/`` (nothing is deleted) and
computes it again.
"""

from __future__ import annotations

import shutil
import zipfile
import zlib
from pathlib import Path

from corpus_index.storage.layout import Layout

# What reading a truncated or overwritten .npy/.npz file can raise.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)


class DamagedFileError(RuntimeError):
    """A stored feature batch, index or factor file cannot be read (truncated, overwritten, not ours).

    Parameters
    ----------
    path : path-like
        The damaged file.
    root : path-like
        The corpus root (for the repair command).
    model_key : str
        The model key whose build repairs the file.
    reason : str
        What reading it said.
    """

    def __init__(self, path, root, model_key: str, reason: str = ""):
        self.path = Path(path)
        self.model_key = model_key
        detail = f" ({reason})" if reason else ""
        super().__init__(f"{self.path} is damaged{detail}; repair it with "
                         f"'{repair_command(root, model_key)}' (it is moved to {Layout(root).replaced})")


class StaleContentError(RuntimeError):
    """Stored features, index rows or factors of an item were computed from other content than it has now."""


def repair_command(root, model_key: str) -> str:
    """The command line that rebuilds (and so repairs) the stored data of ``model_key``."""
    return f"python -m corpus_index --root {root} build --model {model_key}"


def content_tag(digest: str | None, region: str | None = None) -> str:
    """The content an item shows: its file's SHA-256, plus ``@x,y,w,h`` for a region of the file."""
    return f"{digest or ''}@{region}" if region else str(digest or "")


def replaced_folder(root, model_key: str) -> Path:
    """A fresh ``ROOT/replaced/<key>-<UTC time>/`` folder (created)."""
    return Layout(root).replaced_folder(model_key)


def set_aside_file(root, model_key: str, path) -> Path:
    """Move one damaged or unverifiable file of ``model_key`` into ``ROOT/replaced/``; returns its new path.

    The new name keeps the file's path below the root (``features-tiny-batch_000001.npz``), so files of one
    repair never overwrite each other and one can tell where each came from.
    """
    root, path = Path(root), Path(path)
    try:
        relative = path.resolve().relative_to(root.resolve())
        name = "-".join(relative.parts)
    except ValueError:
        name = path.name
    target = replaced_folder(root, model_key) / name
    number = 1
    while target.exists():
        target = target.with_name(f"{name}.{number}")
        number += 1
    shutil.move(str(path), str(target))
    return target


def check_index(index, store, verified: dict) -> object:
    """Check that every row of a :class:`~corpus_index.storage.faiss_index.VectorIndex` shows its item's current
    content.

    Parameters
    ----------
    index : VectorIndex
    store : Store
        Gives the items' current content tags.
    verified : dict
        Index file -> signature (mtime, size of the index and its sidecar) of the files last found to match;
        updated here, so the check reads the index and the store once per version of the files.

    Returns
    -------
    VectorIndex
        ``index``.

    Raises
    ------
    StaleContentError
        If a row was computed from other content than its item has now (an id reused after a lost database,
        a scan replaced in place), or the index does not record its content (built before such records).
    DamagedFileError
        If the index or its sidecar cannot be read.
    """
    from corpus_index.models import key_transform_count

    if not index.exists():
        return index
    signature = []
    for path in (index.path, index.tags_path):
        try:
            stat = path.stat()
            signature.append((stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:
            signature.append(None)
    if verified.get(str(index.path)) == tuple(signature):
        return index
    rows, stored = index.ids(), index.row_tags()
    repair = repair_command(index.root, index.model_key)
    if stored is None:
        raise StaleContentError(f"the index {index.path} does not record which content its vectors came from "
                                f"(built by an older version); rebuild it with '{repair}'")
    group = key_transform_count(index.model_key)
    current = store.content_tags()
    bad = [int(r) // group for r in rows.tolist() if stored.get(r) is None or stored[r] != current.get(r // group)]
    if bad:
        raise StaleContentError(
            f"the index {index.path} holds vectors of {len(set(bad))} items computed from other content than they "
            f"have now (e.g. item {bad[0]}: its id was reused or its scan replaced); rebuild it with '{repair}'")
    verified[str(index.path)] = tuple(signature)
    return index
