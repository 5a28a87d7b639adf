"""The prefetch's computations in a child process at the lowest CPU priority.

In the server's own process the prefetch thread shares the interpreter lock and both cores with the page a user
waits for. A child process at nice 19 computes the same factors (through the same corpus facade, written to the
same factor cache, which is how the pages see them) but only with the CPU the server and the browser leave.
The child is started (spawned: torch does not survive a fork) on the first job and serves one job at a time.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

_corpora: dict = {}  # in the child: root -> open Corpus


def _lower_priority() -> None:
    """The child's start: lowest CPU priority, and glibc's memory reuse (corpus_index.malloc)."""
    from corpus_index.malloc import keep_freed_memory

    keep_freed_memory()
    try:
        os.nice(19)
    except OSError:  # not allowed here: the child still runs, at normal priority
        pass


def _precompute(root: str, model_key: str, item_id: int, gamma, pool) -> str | None:
    """In the child: cache one item's factors; the reason it could not, or None."""
    from corpus_index.corpus import Corpus

    corpus = _corpora.get(root)
    if corpus is None:
        corpus = _corpora[root] = Corpus.open(root)
    report = corpus.precompute_factors(model_key, [int(item_id)], gamma=gamma, pool=pool)
    return report.skipped[0][1] if report.skipped else None


class ChildComputer:
    """One child process computing prefetch jobs; :meth:`compute` blocks the calling (worker) thread only."""

    def __init__(self):
        self._executor: ProcessPoolExecutor | None = None

    def compute(self, root: str, model_key: str, item_id: int, gamma, pool) -> str | None:
        """Cache the factors of one item in the child (started if needed); the reason it could not, or None."""
        if self._executor is None:
            self._executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_lower_priority)
        try:
            return self._executor.submit(_precompute, root, model_key, item_id, gamma, pool).result()
        except BrokenProcessPool:  # the child died (killed, out of memory): the next job starts a new one
            self._executor = None
            return "the background process ended while computing"

    def stop(self) -> None:
        """End the child at once (its current job is lost; its files are written atomically)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            for process in list(getattr(executor, "_processes", {}).values()):
                process.terminate()
            executor.shutdown(wait=False, cancel_futures=True)
