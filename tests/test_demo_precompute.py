"""The demo build precomputes the table pages' factors exactly as the Explain page looks them up."""

import numpy as np
import pytest
from tiny_corpus import SMALL_VGG_KEY, make_corpus

from corpus_index import build, demo
from corpus_index import explanation as ex
from corpus_index.demo import build_demo
from corpus_index.models import load_model


@pytest.fixture
def vgg_as_table_model(monkeypatch):
    """Treat the small VGG as a table model (the bigram network is too slow for a unit test)."""
    monkeypatch.setattr(demo, "TABLE_MODEL_FAMILIES", ("vgg16",))


def kind_ids(corpus, kind: str) -> list[int]:
    return [int(i) for i in corpus.items(kind=kind)["id"]]


@pytest.mark.slow  # builds a small VGG index and its factors
def test_demo_build_caches_every_table_pair(tmp_path, monkeypatch, vgg_as_table_model):
    from explorer import data  # the Explain page's own choice of the default patch size

    corpus = make_corpus(tmp_path, per_book=2)
    result = build_demo(corpus.root, models=[SMALL_VGG_KEY], corpus=corpus)
    tables, woodcuts = kind_ids(corpus, "table"), kind_ids(corpus, "woodcut")
    assert len(tables) == 4 and woodcuts
    report = result.built[0].factors
    assert (report.computed, report.cached, report.skipped) == (len(tables), 0, [])
    assert any("BiLRP factors of the table pages: 4 computed" in line for line in result.notes())

    model = load_model(SMALL_VGG_KEY)
    schedule = ex.resolve_schedule(model, None)  # the Explain page's default γ
    pool = data.default_pool(SMALL_VGG_KEY)  # the Explain page's default patch size
    for item_id in tables:  # the Explain page's check (data.missing_factors), also for its larger fallbacks
        assert all(corpus.factor_cache.path(SMALL_VGG_KEY, schedule, p, item_id).exists()
                   for p in data.POOLS if p >= pool)
    assert not corpus.factor_cache.path(SMALL_VGG_KEY, schedule, pool, woodcuts[0]).exists()

    def no_computation(*args, **kwargs):
        raise AssertionError("factors were computed for a table pair")

    monkeypatch.setattr(ex, "compute_factors", no_computation)
    monkeypatch.setattr(ex, "factors_of_input", no_computation)  # the backward itself, whatever calls it
    explanation = corpus.explain(SMALL_VGG_KEY, tables[0], tables[1], gamma=None, pool=pool)
    assert explanation.total == pytest.approx(explanation.score, rel=1e-3)

    again = build_demo(corpus.root, models=[SMALL_VGG_KEY], corpus=corpus)  # a rerun computes nothing
    assert (again.built[0].factors.computed, again.built[0].factors.cached) == (0, len(tables))


def test_auto_pool_is_the_default_and_its_coarser_fallbacks(tmp_path, monkeypatch):
    """The default patch size is computed; the coarser ones (for pairs of large pages) are sums of it."""
    corpus = make_corpus(tmp_path, per_book=1)
    computed = []
    real_compute, real_backward = ex.compute_factors, ex.factors_of_input

    def counting(model, x, schedule, pool, *rest, **options):
        computed.append(pool)
        return real_backward(model, x, schedule, pool, *rest, **options)

    monkeypatch.setattr(ex, "factors_of_input", counting)
    report = corpus.precompute_factors(SMALL_VGG_KEY, [1, 2], pool="auto")
    default = build.default_pool(SMALL_VGG_KEY)
    assert report.computed == 2 and computed == [default, default]  # one backward pass per item
    model = load_model(SMALL_VGG_KEY)
    schedule = ex.resolve_schedule(model, None)
    assert not corpus.factor_cache.path(SMALL_VGG_KEY, schedule, default, 3).exists()  # only the items asked for
    for pool in (16, 32, 64):
        coarse, input_shape = corpus.factor_cache.load_entry(SMALL_VGG_KEY, schedule, pool, 2)
        direct = real_compute(model, corpus.image(2), schedule, pool)  # 32-px inputs: 2×2, 1×1, 1×1 patches
        assert coarse.shape == direct.shape and input_shape == (32, 32)  # the input's size travels with them
        np.testing.assert_allclose(coarse, direct, rtol=1e-5, atol=1e-6 * np.abs(direct).max())


def test_coarsen_factors_sums_zero_padded_blocks():
    factors = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    coarse = build.coarsen_factors(factors, 2)
    assert coarse.shape == (2, 2, 3)
    assert coarse[0, 0, 0] == factors[0, :2, :2].sum() and coarse[1, 1, 2] == factors[1, 2, 4]
    assert coarse.sum() == factors.sum()
