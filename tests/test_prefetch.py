"""The prefetch worker: computes missing factors in the background, cancels on a new query, records failures."""

import threading
import time

import numpy as np
import pytest
from tiny_corpus import SMALL_VGG_KEY, make_corpus

from corpus_index import explanation as ex
from corpus_index.build import default_pool
from corpus_index.models import load_model
from explorer.prefetch import COMPUTING, FAILED, MISSING, QUEUED, READY, Prefetcher

TIMEOUT = 120  # seconds the worker may take for a few 32-px factors on a busy machine


@pytest.fixture
def corpus(tmp_path):
    corpus = make_corpus(tmp_path, per_book=2)
    yield corpus
    corpus.close()


def cached(corpus, item_id: int, pool: int | None = None) -> bool:
    schedule = ex.resolve_schedule(load_model(SMALL_VGG_KEY), None)
    pool = default_pool(SMALL_VGG_KEY) if pool is None else pool
    return corpus.factor_cache.path(SMALL_VGG_KEY, schedule, pool, item_id).exists()


class Gate:
    """Holds the worker inside its first computation until released (wraps the corpus' precompute_factors)."""

    def __init__(self, corpus):
        self.entered, self.released = threading.Event(), threading.Event()
        self.calls = []
        real = corpus.precompute_factors

        def gated(model_key, item_ids, **options):
            self.calls.append(list(item_ids))
            self.entered.set()
            assert self.released.wait(TIMEOUT)
            return real(model_key, item_ids, **options)

        corpus.precompute_factors = gated


def test_prefetched_pairs_explain_without_computing(corpus, monkeypatch):
    worker = Prefetcher()
    ids = [1, 2, 3]
    assert worker.readiness(corpus, SMALL_VGG_KEY, ids) == dict.fromkeys(ids, MISSING)
    worker.request(corpus, SMALL_VGG_KEY, ids)
    assert worker.wait_idle(TIMEOUT)
    assert worker.readiness(corpus, SMALL_VGG_KEY, ids) == dict.fromkeys(ids, READY)
    assert worker.pair_readiness(corpus, SMALL_VGG_KEY, 1, [2, 3]) == {2: READY, 3: READY}
    assert all(cached(corpus, i) for i in ids) and not cached(corpus, 4)
    assert all(cached(corpus, i, pool=16) for i in ids)  # the coarser size the Explain page may fall back to

    def no_computation(*args, **kwargs):
        raise AssertionError("an explanation computed factors")

    monkeypatch.setattr(ex, "compute_factors", no_computation)
    monkeypatch.setattr(ex, "factors_of_input", no_computation)  # the backward itself, whatever calls it
    explanation = corpus.explain(SMALL_VGG_KEY, 1, 3, pool=default_pool(SMALL_VGG_KEY))  # the Explain page's
    assert explanation.pair.shape == (4, 4, 4, 4)


def test_a_pages_pair_readiness_is_reused_until_something_changes(corpus, monkeypatch):
    worker = Prefetcher()
    looked = []
    real = worker.readiness
    monkeypatch.setattr(worker, "readiness", lambda *args, **kwargs: looked.append(args) or real(*args, **kwargs))
    first = worker.pair_readiness(corpus, SMALL_VGG_KEY, 1, [2, 3])
    assert worker.pair_readiness(corpus, SMALL_VGG_KEY, 1, [2, 3]) == first == {2: MISSING, 3: MISSING}
    assert len(looked) == 1  # the second card of the page reused the first one's answer
    worker.request(corpus, SMALL_VGG_KEY, [1, 2, 3])  # a request changes the states: asked again at once
    assert worker.wait_idle(TIMEOUT)
    assert worker.pair_readiness(corpus, SMALL_VGG_KEY, 1, [2, 3]) == {2: READY, 3: READY} and len(looked) == 2


def test_the_worker_waits_while_a_page_runs_and_while_the_browser_draws_it(corpus):
    worker = Prefetcher(after_page=2.0)
    gate = Gate(corpus)
    gate.released.set()  # no hold inside the computation: only the page holds the worker
    with worker.page_running():
        worker.request(corpus, SMALL_VGG_KEY, [1, 2])
        assert not gate.entered.wait(1.0)  # a page is running: nothing is computed meanwhile
        assert worker.readiness(corpus, SMALL_VGG_KEY, [1, 2]) == {1: COMPUTING, 2: QUEUED}
    ended = time.monotonic()
    assert not gate.entered.wait(0.5)  # the run is over, but its page is still being drawn
    assert gate.entered.wait(TIMEOUT) and worker.wait_idle(TIMEOUT)  # then the work goes on
    assert time.monotonic() - ended >= 2.0
    assert worker.readiness(corpus, SMALL_VGG_KEY, [1, 2]) == {1: READY, 2: READY}


def test_a_new_query_drops_the_pending_work(corpus):
    worker = Prefetcher()
    gate = Gate(corpus)
    worker.request(corpus, SMALL_VGG_KEY, [1, 2, 3])
    assert gate.entered.wait(TIMEOUT)  # item 1 is being computed; request returned without waiting for it
    assert worker.readiness(corpus, SMALL_VGG_KEY, [1, 2, 3]) == {1: COMPUTING, 2: QUEUED, 3: QUEUED}
    worker.request(corpus, SMALL_VGG_KEY, [1, 2, 3])  # the same request again: nothing changes
    assert worker.readiness(corpus, SMALL_VGG_KEY, [2, 3]) == {2: QUEUED, 3: QUEUED}

    worker.request(corpus, SMALL_VGG_KEY, [4, 5])  # another query
    assert worker.readiness(corpus, SMALL_VGG_KEY, [2, 3, 4, 5]) == {2: MISSING, 3: MISSING, 4: QUEUED, 5: QUEUED}
    gate.released.set()
    assert worker.wait_idle(TIMEOUT)
    assert gate.calls == [[1], [4], [5]]  # the running item finished, the dropped ones never started
    assert worker.readiness(corpus, SMALL_VGG_KEY, [1, 2, 3, 4, 5]) == {1: READY, 2: MISSING, 3: MISSING, 4: READY,
                                                                         5: READY}


def test_the_queue_is_bounded(corpus):
    worker = Prefetcher(max_pending=2)
    gate = Gate(corpus)
    worker.request(corpus, SMALL_VGG_KEY, [1, 2, 3, 4])
    assert gate.entered.wait(TIMEOUT)
    assert worker.readiness(corpus, SMALL_VGG_KEY, [1, 2, 3, 4]) == {1: COMPUTING, 2: QUEUED, 3: MISSING,
                                                                     4: MISSING}
    gate.released.set()
    assert worker.wait_idle(TIMEOUT)
    assert gate.calls == [[1], [2]]


def test_failures_are_recorded_not_raised(corpus):
    broken = int(corpus.items().iloc[2]["id"])
    corpus.store.resolve_path(corpus.item(broken)["path"]).write_bytes(b"not a png")
    worker = Prefetcher()
    worker.request(corpus, SMALL_VGG_KEY, [1, broken, 999])
    assert worker.wait_idle(TIMEOUT)
    assert worker.readiness(corpus, SMALL_VGG_KEY, [1, broken, 999]) == {1: READY, broken: FAILED, 999: FAILED}
    reasons = {cell[-1]: reason for cell, reason in worker.failures().items()}
    assert "no item with id 999" in reasons[999] and reasons[broken]
    assert worker.pair_readiness(corpus, SMALL_VGG_KEY, broken, [1]) == {1: FAILED}  # the query failed
    assert worker.pair_readiness(corpus, SMALL_VGG_KEY, None, [1]) == {1: READY}  # an uploaded query


def test_stop_ends_the_worker_after_its_item(corpus):
    worker = Prefetcher()
    gate = Gate(corpus)
    worker.request(corpus, SMALL_VGG_KEY, [1, 2])
    assert gate.entered.wait(TIMEOUT)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    gate.released.set()
    stopper.join(TIMEOUT)
    assert not stopper.is_alive() and not worker._thread.is_alive()
    assert gate.calls == [[1]] and cached(corpus, 1) and not cached(corpus, 2)


def test_a_page_takes_over_items_without_computing_them_twice(corpus):
    worker = Prefetcher()
    gate = Gate(corpus)
    worker.request(corpus, SMALL_VGG_KEY, [1, 2, 3])
    assert gate.entered.wait(TIMEOUT)
    taker = threading.Thread(target=worker.take_over, args=(corpus, SMALL_VGG_KEY, [1, 3]))
    taker.start()
    taker.join(0.5)
    assert taker.is_alive()  # waits for item 1, which the worker is computing
    assert worker.readiness(corpus, SMALL_VGG_KEY, [2, 3]) == {2: QUEUED, 3: MISSING}  # 3 is the page's now
    gate.released.set()
    taker.join(TIMEOUT)
    assert not taker.is_alive() and cached(corpus, 1)
    assert worker.wait_idle(TIMEOUT)
    assert gate.calls == [[1], [2]]


def test_the_readiness_captions_share_the_corpus_instead_of_copying_it(corpus):
    """Streamlit deep-copies a fragment's arguments on every call (12 captions per Neighbours page): the corpus,
    with its kept φs and inputs, is shared, never duplicated."""
    import copy

    corpus._phis_computed[("m", 1, "t")] = np.zeros(100, np.float32)
    args = (corpus, "model", None, (1, 2), None, 16)
    copied = copy.deepcopy(args)
    assert copied[0] is corpus and copied[3] == (1, 2)
