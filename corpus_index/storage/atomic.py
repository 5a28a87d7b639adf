"""Crash-safe file writes and a cross-process lock.

Every file the engine writes (feature batches, FAISS indexes, cached factors) goes through
:func:`atomic_write`: the bytes land in a temporary file *in the same folder* (so the rename cannot cross file
systems), are fsync'ed, and only then replace the target with :func:`os.replace`, which is atomic on POSIX. A crash
at any point leaves either the old file or the new one, never a torn one.

A process killed mid-write leaves its temporary file ``.NAME.XXXXXXXX.tmp`` behind. The next write into that folder
removes such leftovers once they are older than :data:`STALE_TMP_SECONDS` (:func:`clean_stale_tmp`). Age, not a
lock, decides: a writer in another process may be filling its temporary file right now, and it takes no lock we
could test; but a live writer keeps touching its file, so one untouched for that long belongs to a dead process.
Each folder is swept at most once per that interval and process, so writing many small files stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:  # POSIX only; on other systems the cross-process lock degrades to a no-op (threads are still locked).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


STALE_TMP_SECONDS = 600.0
_swept: dict[str, float] = {}  # folder -> time of its last sweep in this process
_swept_lock = threading.Lock()


def clean_stale_tmp(folder: str | os.PathLike, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Remove temporary files of interrupted atomic writes (``.*.tmp``) last modified over ``max_age`` s ago.

    Returns the removed files. Files younger than ``max_age`` are kept: they may belong to a write in progress.
    """
    folder = Path(folder)
    cutoff = time.time() - max_age
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone meanwhile (another sweeper) or not ours to remove
            continue
    return removed


def _sweep(folder: Path) -> None:
    """Run :func:`clean_stale_tmp` on ``folder`` unless this process did so within the last interval."""
    key, now = str(folder), time.monotonic()
    with _swept_lock:
        last = _swept.get(key)
        if last is not None and now - last < STALE_TMP_SECONDS / 2:
            return
        _swept[key] = now
    clean_stale_tmp(folder)


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the directory entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - some file systems do not allow opening a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write a file atomically.

    Parameters
    ----------
    path : path-like
        The final file.
    write : callable
        ``write(tmp_path)`` writes the complete content to ``tmp_path`` (a path string, e.g. for
        ``faiss.write_index`` or ``np.save`` with an open file).

    Returns
    -------
    Path
        ``path``. On any failure the temporary file is removed and the previous ``path`` (if any) is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_save_npy(path: str | os.PathLike, array) -> Path:
    """Save one numpy array atomically as ``.npy`` (no pickles)."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    return atomic_write(path, write)


def atomic_save_npz(path: str | os.PathLike, **arrays) -> Path:
    """Save several numpy arrays atomically as one uncompressed ``.npz``."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    return atomic_write(path, write)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) across processes.

    Used around read-modify-write of an index so that two ``build`` runs on the same root do not overwrite each
    other's additions. Readers never take it: they read whole files that only ever change by atomic rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
