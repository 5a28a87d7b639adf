"""The server's prefetch computes in a child process at the lowest priority: the same files, failures recorded."""

import os

import numpy as np
import pytest
from tiny_corpus import SMALL_VGG_KEY, make_corpus

from corpus_index.build import default_pool
from explorer.prefetch import FAILED, READY, Prefetcher

pytestmark = pytest.mark.slow  # spawns a Python process that imports torch


def test_the_child_caches_the_factors_the_corpus_would_compute_and_records_failures(tmp_path):
    corpus = make_corpus(tmp_path, per_book=1)
    worker = Prefetcher(in_child=True)
    try:
        worker.request(corpus, SMALL_VGG_KEY, [1, 2, 999])  # 999: no such item
        assert worker.wait_idle(timeout=300)
        states = worker.readiness(corpus, SMALL_VGG_KEY, [1, 2, 999])
        assert states == {1: READY, 2: READY, 999: FAILED}
        child_pid = next(iter(worker._child._executor._processes))
        assert os.getpriority(os.PRIO_PROCESS, child_pid) == 19
    finally:
        worker.stop()
    pool = default_pool(SMALL_VGG_KEY)
    cached = corpus.factors(SMALL_VGG_KEY, item_id=1, pool=pool)
    fresh = make_corpus(tmp_path / "again", per_book=1).factors(SMALL_VGG_KEY, item_id=1, pool=pool)
    np.testing.assert_allclose(cached, fresh, rtol=1e-5, atol=1e-7)  # the child's file: the same factors
    assert worker._child._executor is None  # stopped: no process left behind
