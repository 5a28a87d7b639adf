"""Factors computed before they are asked for: a background worker that prepares the Neighbours page's explanations.

When the Neighbours page shows a query's nearest pages, a click on "Explain" opens one of the pairs (query,
neighbour). The worker computes the BiLRP factors of the query and its neighbours that are not cached yet (for the
default γ and the model's default patch size, where the Explain page starts), one item at a time through the
corpus facade (:meth:`corpus_index.corpus.Corpus.precompute_factors`), so the click is served from the cache.

- One worker thread per server process (:data:`_shared`), started on the first request; it never holds the lock
  while computing, so :func:`request` and :func:`readiness` return at once and never block a page.
- The queue is bounded (:data:`MAX_PENDING` items) and belongs to the latest request: a request for another
  query (or model, γ, patch size, neighbours) drops the pending work of the previous one. The item being computed
  is finished (its factors are cached, useful later).
- Failures (an unreadable scan, a deleted item) are recorded per item and shown as "failed", never raised; a new
  request for the item tries again.
- Pages come first: while a page runs (:func:`page_running`, entered by the shell around every page) and for
  :data:`AFTER_PAGE_S` after, the worker pauses between batches of its backward pass, so the page a user waits
  for gets both cores, and so does a browser drawing it on the same machine.

The worker needs no Streamlit; :func:`show_readiness` is the Neighbours page's caption of one pair.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from corpus_index.build import default_pool
from corpus_index.models import canonical_key, key_transform_count

READY, QUEUED, COMPUTING, FAILED, MISSING = "ready", "queued", "computing", "failed", "missing"
#: The pair states worth no more waiting for (the page stops refreshing its captions when every pair has one).
SETTLED = (READY, FAILED, MISSING)
#: Pending items at most: a page's query and its neighbours (k ≤ 48) fit; more are not prefetched.
MAX_PENDING = 64
#: Seconds between refreshes of the readiness captions while explanations are being prepared.
REFRESH_S = 2.0
#: Seconds a page's pair readiness is reused while no job finished: every card's caption asks for the whole page's
#: pairs (to know when all are settled), within one run and when their fragments refresh together.
READINESS_REUSE_S = 1.0
#: Longest pause (seconds) of the worker for running pages: a page that never ends must not stop the prefetch.
MAX_PAUSE_S = 30.0
#: Seconds the worker still waits after a page run ends, while the browser draws what the run sent (a browser on
#: the server's machine needs its cores for that).
AFTER_PAGE_S = 1.5
#: What a neighbour card says about its pair's explanation.
LABELS = {READY: ":material/check: explanation ready", QUEUED: "preparing the explanation …",
          COMPUTING: "preparing the explanation …", FAILED: "explanation could not be prepared in advance",
          MISSING: "explanation computed when opened"}
# Later states win when a pair's two items are combined (a failed query makes every pair fail).
_PRECEDENCE = (READY, MISSING, QUEUED, COMPUTING, FAILED)


@dataclass(frozen=True)
class Job:
    """One item's factors to compute: the corpus, canonical model key, γ, patch size and item id."""

    corpus: object
    model_key: str
    gamma_id: str
    gamma: object
    pool: int
    item_id: int

    @property
    def cell(self) -> tuple:
        """What identifies the job's result, independent of the γ object's identity."""
        return str(self.corpus.root), self.model_key, self.gamma_id, self.pool, self.item_id


def gamma_id(gamma) -> str:
    """A γ choice (None, a number, or {layer: γ}) as text, so equal choices name the same work."""
    if isinstance(gamma, dict):
        return json.dumps({str(int(k)): float(v) for k, v in gamma.items()}, sort_keys=True)
    return "default" if gamma is None else repr(float(gamma))


class Prefetcher:
    """The background worker and its bookkeeping (the module functions use the process's :data:`_shared` one).

    Parameters
    ----------
    max_pending : int
        Items a request queues at most; the rest are not prefetched (their readiness is "missing").
    after_page : float
        Seconds the worker keeps pausing after a page run ends (:data:`AFTER_PAGE_S`).
    """

    def __init__(self, max_pending: int = MAX_PENDING, after_page: float = AFTER_PAGE_S):
        self.max_pending = max_pending
        self.after_page = after_page
        self._lock = threading.Condition()
        self._pending: deque[Job] = deque()
        self._request: tuple | None = None  # what the pending work was asked for
        self._computing: Job | None = None
        self._failed: dict[tuple, str] = {}  # cell -> reason
        self._schedules: dict[tuple[str, str], dict] = {}  # (model key, γ id) -> resolved schedule
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._changes = 0  # requests, take-overs and finished jobs so far: readiness changes only with them
        self._recent: dict[tuple, tuple[int, float, dict[int, str]]] = {}  # pair_readiness reuse
        self._pages = 0  # page runs in progress: the worker waits for them between batches
        self._page_ended = -float("inf")  # when the last page run ended (time.monotonic)

    def _jobs(self, corpus, model_key: str, item_ids: Iterable[int], gamma, pool) -> list[Job]:
        key = canonical_key(model_key)
        pool = default_pool(key) if pool is None else int(pool)
        ids = dict.fromkeys(int(i) for i in item_ids)  # in order, once each
        return [Job(corpus, key, gamma_id(gamma), gamma, pool, i) for i in ids]

    def request(self, corpus, model_key: str, item_ids: Iterable[int], gamma=None, pool: int | None = None) -> None:
        """Prefetch the factors of these items (in this order); drops the pending work of any other request.

        ``pool`` None is the model's default patch size (:func:`corpus_index.build.default_pool`). Returns at once;
        asking again for the same work changes nothing.
        """
        jobs = self._jobs(corpus, model_key, item_ids, gamma, pool)
        signature = tuple(job.cell for job in jobs)
        with self._lock:
            if signature == self._request:
                return
            self._request = signature
            self._changes += 1
            self._pending.clear()
            for job in jobs[: self.max_pending]:
                self._failed.pop(job.cell, None)  # asked again: try again
                self._pending.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="sphaera-prefetch", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    def readiness(self, corpus, model_key: str, item_ids: Iterable[int], gamma=None,
                  pool: int | None = None) -> dict[int, str]:
        """Each item's state: "ready" (cached), "queued", "computing", "failed" or "missing" (not cached and not
        queued: never asked for, dropped by a newer request, or beyond the queue's bound)."""
        jobs = self._jobs(corpus, model_key, item_ids, gamma, pool)
        with self._lock:
            pending = {job.cell for job in self._pending}
            computing = None if self._computing is None else self._computing.cell
            failed = {job.item_id for job in jobs if job.cell in self._failed}
        states = {}
        for job in jobs:
            if job.cell == computing:
                states[job.item_id] = COMPUTING
            elif job.item_id in failed:
                states[job.item_id] = FAILED
            elif self._cached(job):
                states[job.item_id] = READY
            else:
                states[job.item_id] = QUEUED if job.cell in pending else MISSING
        return states

    def pair_readiness(self, corpus, model_key: str, query_id: int | None, neighbour_ids: Sequence[int], gamma=None,
                       pool: int | None = None) -> dict[int, str]:
        """The state of each pair (query, neighbour): its less ready item's (the query may be None, an upload).

        Reused for :data:`READINESS_REUSE_S` seconds while nothing is requested or finished (the same page
        asks once per card).
        """
        ids = [int(i) for i in neighbour_ids]
        key = (id(corpus), model_key, query_id, tuple(ids), gamma_id(gamma), pool)
        with self._lock:
            changes, now = self._changes, time.monotonic()
            recent = self._recent.get(key)
        if recent is not None and recent[0] == changes and now - recent[1] < READINESS_REUSE_S:
            return dict(recent[2])
        pairs = self._pair_states(corpus, model_key, query_id, ids, gamma, pool)
        with self._lock:
            if len(self._recent) > 64:
                self._recent.clear()
            self._recent[key] = (changes, now, pairs)
        return dict(pairs)

    def _pair_states(self, corpus, model_key: str, query_id: int | None, ids: list[int], gamma, pool):
        states = self.readiness(corpus, model_key, ([] if query_id is None else [int(query_id)]) + ids, gamma, pool)
        query = READY if query_id is None else states[int(query_id)]
        return {i: max(query, states[i], key=_PRECEDENCE.index) for i in ids}

    def take_over(self, corpus, model_key: str, item_ids: Iterable[int], gamma=None, pool: int | None = None,
                  timeout: float | None = None) -> None:
        """A page is about to compute these items' factors itself: drop them from the queue, and wait (at most
        ``timeout`` seconds) for the one the worker may be computing, so no factors are computed twice."""
        cells = {job.cell for job in self._jobs(corpus, model_key, item_ids, gamma, pool)}
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._pending = deque(job for job in self._pending if job.cell not in cells)
            self._changes += 1
            while self._computing is not None and self._computing.cell in cells:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self._lock.wait(left)

    @contextlib.contextmanager
    def page_running(self):
        """While this context is open (a page's script run) and ``after_page`` seconds after, the worker pauses at
        its next batch."""
        with self._lock:
            self._pages += 1
        try:
            yield
        finally:
            with self._lock:
                self._pages -= 1
                self._page_ended = time.monotonic()
                self._lock.notify_all()

    def _yield_to_pages(self, *_progress) -> None:
        """The worker's progress callback: wait (at most :data:`MAX_PAUSE_S`) while a page runs and until
        ``after_page`` seconds have passed since the last one ended."""
        deadline = time.monotonic() + MAX_PAUSE_S
        with self._lock:
            while not self._stopping:
                now = time.monotonic()
                quiet = self._page_ended + self.after_page - now
                if now >= deadline or (not self._pages and quiet <= 0):
                    return
                self._lock.wait(deadline - now if self._pages else min(quiet, deadline - now))

    def failures(self) -> dict[tuple, str]:
        """Why items failed: (root, model key, γ id, pool, item id) -> reason."""
        with self._lock:
            return dict(self._failed)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or computing; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending or self._computing is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def _cached(self, job: Job) -> bool:
        """Whether every file an explanation of the item reads exists (the Explain page's own check)."""
        schedule = self._schedules.get((job.model_key, job.gamma_id))
        if schedule is None:  # the worker has not loaded the model yet: nothing is known to be ready
            return False
        count = key_transform_count(job.model_key)
        transforms = [None] if count == 1 else list(range(count))
        cache = job.corpus.factor_cache
        return all(cache.path(job.model_key, schedule, job.pool, job.item_id, t).exists() for t in transforms)

    def stop(self, timeout: float = 60.0) -> None:
        """Drop the pending work and let the worker finish its item and end (called when the process exits: a
        thread killed inside torch aborts the interpreter)."""
        with self._lock:
            self._stopping = True
            self._pending.clear()
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        """The worker thread: one job at a time, until :meth:`stop`."""
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._computing = self._pending.popleft()
            try:
                reason = self._compute(job)
            except Exception as error:  # recorded for the page, never raised: the page explains on demand
                reason = f"{type(error).__name__}: {error}"
            with self._lock:
                if reason is not None:
                    self._failed[job.cell] = reason
                self._computing = None
                self._changes += 1
                self._lock.notify_all()

    def _compute(self, job: Job) -> str | None:
        """Cache one item's factors through the facade; the reason it could not, or None."""
        from corpus_index.explanation import resolve_schedule
        from corpus_index.models import load_model

        schedule_key = (job.model_key, job.gamma_id)
        if schedule_key not in self._schedules:
            self._schedules[schedule_key] = resolve_schedule(load_model(job.model_key), job.gamma)
        job.corpus.item(job.item_id)  # a deleted item: ItemNotFoundError, recorded
        # The default patch size as "auto": with the coarser sizes the Explain page falls back to for large pages.
        pool = "auto" if job.pool == default_pool(job.model_key) else job.pool
        self._yield_to_pages()
        report = job.corpus.precompute_factors(job.model_key, [job.item_id], gamma=job.gamma, pool=pool,
                                               progress=self._yield_to_pages)
        return report.skipped[0][1] if report.skipped else None


_shared = Prefetcher()
atexit.register(_shared.stop)


def request(corpus, model_key: str, item_ids: Iterable[int], gamma=None, pool: int | None = None) -> None:
    """:meth:`Prefetcher.request` of this server process's worker."""
    _shared.request(corpus, model_key, item_ids, gamma, pool)


def page_running():
    """:meth:`Prefetcher.page_running` of this server process's worker (the shell wraps every page run in it)."""
    return _shared.page_running()


def wait_idle(timeout: float | None = None) -> bool:
    """:meth:`Prefetcher.wait_idle` of this server process's worker (tests and benchmarks, before they clean up)."""
    return _shared.wait_idle(timeout)


def readiness(corpus, model_key: str, item_ids: Iterable[int], gamma=None, pool: int | None = None) -> dict[int, str]:
    """:meth:`Prefetcher.readiness` of this server process's worker."""
    return _shared.readiness(corpus, model_key, item_ids, gamma, pool)


def take_over(corpus, model_key: str, item_ids: Iterable[int], gamma=None, pool: int | None = None,
              timeout: float | None = None) -> None:
    """:meth:`Prefetcher.take_over` of this server process's worker (call before computing missing factors)."""
    _shared.take_over(corpus, model_key, item_ids, gamma, pool, timeout)


def show_readiness(corpus, model_key: str, query_id: int | None, neighbour_id: int, neighbour_ids: Sequence[int],
                   gamma=None, pool: int | None = None) -> None:
    """A neighbour card's caption: is the explanation of (query, neighbour) ready?

    While any pair of the page is being prepared, the caption is a fragment refreshed every :data:`REFRESH_S`
    seconds (not the whole page); once every pair is settled, one rerun of the page stops the refreshing.
    """
    import streamlit as st

    args = (corpus, model_key, query_id, tuple(int(i) for i in neighbour_ids), gamma, pool)
    states = _shared.pair_readiness(*args)
    if all(state in SETTLED for state in states.values()):
        st.caption(LABELS[states[int(neighbour_id)]])
    else:
        _live_caption()(int(neighbour_id), *args)


@functools.cache
def _live_caption():
    """The refreshing caption (a Streamlit fragment, made on first use so the worker imports no Streamlit)."""
    import streamlit as st

    @st.fragment(run_every=REFRESH_S)
    def live(neighbour_id: int, *args) -> None:
        states = _shared.pair_readiness(*args)
        st.caption(LABELS[states[neighbour_id]])
        if all(state in SETTLED for state in states.values()):
            st.rerun()  # the whole page: its captions become static, the refreshing stops

    return live
