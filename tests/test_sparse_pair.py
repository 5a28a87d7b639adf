"""Sparse pairs (bilrp_core.sparse_pair) answer every question of a pair as the dense pair matrix does."""

import pickle

import numpy as np
import pytest
import torch

from bilrp_core import bigram_network, pair_matrix, relevance_factors
from bilrp_core.render import PairStyle, draw_pair, heatmap, marginal, select_pairs, top_pairs
from bilrp_core.sparse_pair import SparseFactors, SparsePair, sparse_pair_pays
from corpus_index.explanation import PairSide, explain_pair, pair_from_factors
from corpus_index.storage.factor_cache import FactorCache


def sparse_random_factors(h, grid, density, seed, integers=False):
    """Factors (h, H, W) float32 with ``density`` of their entries non-zero, of both signs.

    ``integers``: small whole numbers, whose products and sums are exact in float32 (so dense and sparse
    products agree bit for bit and pictures can be compared pixel for pixel).
    """
    rng = np.random.default_rng(seed)
    values = rng.integers(-3, 6, (h, *grid)) if integers else rng.normal(0.2, 1.0, (h, *grid))
    return np.where(rng.random((h, *grid)) < density, values, 0).astype(np.float32)


@pytest.fixture
def factors():
    return sparse_random_factors(12, (9, 7), 0.08, seed=1), sparse_random_factors(12, (6, 11), 0.08, seed=2)


def dense_pair(first, second):
    return pair_matrix(torch.from_numpy(first), torch.from_numpy(second)).numpy()


def test_sparse_pair_equals_the_dense_pair_matrix(factors):
    first, second = factors
    dense = dense_pair(first, second)
    sparse = pair_matrix(SparseFactors.from_dense(first), SparseFactors.from_dense(second))
    assert isinstance(sparse, SparsePair) and sparse.shape == dense.shape == (9, 7, 6, 11) and sparse.ndim == 4
    scale = np.abs(dense).max()
    assert np.abs(np.asarray(sparse) - dense).max() <= 1e-6 * scale
    assert sparse.nnz == np.count_nonzero(np.asarray(sparse)) < dense.size  # only non-zero pairs are stored
    assert sparse.sum() == pytest.approx(float(dense.sum(dtype=np.float64)), rel=1e-6)
    for axis in (0, 1):
        np.testing.assert_allclose(sparse.marginal(axis), marginal(dense, axis), rtol=1e-6, atol=1e-6 * scale)
        np.testing.assert_allclose(marginal(sparse, axis), marginal(dense, axis), rtol=1e-6, atol=1e-6 * scale)
    cell = np.unravel_index(np.abs(dense).argmax(), dense.shape)
    assert sparse[cell] == pytest.approx(dense[cell], rel=1e-6)
    again = pickle.loads(pickle.dumps(sparse))  # the explorer's st.cache_data pickles explanations
    np.testing.assert_array_equal(again.toarray(), sparse.toarray())


@pytest.mark.parametrize("sign", ["both", "positive", "negative"])
@pytest.mark.parametrize("top, threshold", [(None, None), (15, None), (None, 0.3), (40, 0.1)])
def test_strongest_pairs_and_tables_are_the_dense_ones(sign, top, threshold):
    first = sparse_random_factors(10, (8, 9), 0.1, seed=3, integers=True)
    second = sparse_random_factors(10, (7, 8), 0.1, seed=4, integers=True)
    dense = dense_pair(first, second)
    sparse = SparsePair(SparseFactors.from_dense(first), SparseFactors.from_dense(second))
    np.testing.assert_array_equal(sparse.toarray(), dense)  # whole numbers: exact, ties included
    indices, values, scale = select_pairs(sparse, top, threshold, sign)
    expected = select_pairs(dense, top, threshold, sign)
    assert len(indices) > 0
    np.testing.assert_array_equal(indices, expected[0])
    np.testing.assert_array_equal(values, expected[1])
    assert scale == expected[2]
    everything = select_pairs(sparse, None, threshold, sign)  # a cut at ``top`` keeps the order of a full sort
    np.testing.assert_array_equal(indices, everything[0][:len(indices)])
    table = top_pairs(sparse, pool=4, n=25, sign=sign, threshold=threshold, original_sizes=((64, 56), (60, 49)))
    assert table.equals(top_pairs(dense, pool=4, n=25, sign=sign, threshold=threshold,
                                  original_sizes=((64, 56), (60, 49))))


def test_pictures_of_a_sparse_pair_are_the_dense_ones():
    from PIL import Image

    first = sparse_random_factors(10, (8, 9), 0.1, seed=5, integers=True)
    second = sparse_random_factors(10, (7, 8), 0.1, seed=6, integers=True)
    dense = dense_pair(first, second)
    sparse = SparsePair(first, second)  # dense factors are taken too
    rng = np.random.default_rng(0)
    image1 = Image.fromarray(rng.integers(0, 255, (32, 36, 3), dtype=np.uint8))
    image2 = Image.fromarray(rng.integers(0, 255, (28, 32, 3), dtype=np.uint8))
    for options in ({"top": 12}, {"threshold": 0.5, "sign": "positive"}):
        picture = draw_pair(image1, image2, sparse, style=PairStyle(height=64), **options)
        wanted = draw_pair(image1, image2, dense, style=PairStyle(height=64), **options)
        np.testing.assert_array_equal(np.asarray(picture), np.asarray(wanted))
        assert picture.info["boxes"] == wanted.info["boxes"]
    for axis, image in enumerate((image1, image2)):
        np.testing.assert_array_equal(np.asarray(heatmap(sparse, image, axis=axis)),
                                      np.asarray(heatmap(dense, image, axis=axis)))


def test_factors_must_agree_and_sparse_pairs_only_where_they_pay(factors):
    first, second = factors
    with pytest.raises(ValueError, match="disagree on h"):
        SparsePair(first, second[:5])
    with pytest.raises(TypeError, match="toarray"):
        SparsePair(first, second)[0]
    assert sparse_pair_pays(first, second) and sparse_pair_pays(SparseFactors.from_dense(first), second)
    full = np.ones((12, 9, 7), dtype=np.float32)  # VGG-like factors: no zeros
    assert not sparse_pair_pays(full, second)
    assert isinstance(pair_from_factors(full, second), np.ndarray)
    assert isinstance(pair_from_factors(SparseFactors.from_dense(first), second), SparsePair)
    np.testing.assert_allclose(SparseFactors.from_dense(first).toarray(), first)


@pytest.fixture(scope="module")
def table_crops():
    """Two crops of rendered demo table pages (PIL), small enough for a quick bigram explanation."""
    from corpus_index.synthetic import table_groups, table_page
    from corpus_index.synthetic.pages import sample_house_style

    crops = []
    for seed, group in ((0, 5), (1, 5)):
        rng = np.random.default_rng([seed, group])
        scan, _, _ = table_page(table_groups()[group], sample_house_style(rng, "EB Garamond"), 10, rng)
        width, height = scan.size
        crops.append(scan.crop((width // 5, height // 4, width // 5 + 300, height // 4 + 260)))
    return crops


def test_a_bigram_pair_is_explained_sparse_and_equals_the_dense_explanation(tmp_path, table_crops):
    model = bigram_network()
    cache = FactorCache(tmp_path)
    sides = [PairSide(image=crop, item_id=number, tag="t") for number, crop in enumerate(table_crops, start=1)]
    first = explain_pair(cache, model, model.key, sides)  # computed, then cached sparse
    again = explain_pair(cache, model, model.key, sides)  # from the cache's CSR form
    assert again.cached == (True, True) and isinstance(again.pair, SparsePair)
    dense = dense_pair(*(relevance_factors(model, model.preprocess(crop), pool=8).numpy() for crop in table_crops))
    scale = np.abs(dense).max()
    assert scale > 0 and again.pair.nnz < 0.2 * dense.size
    for explanation in (first, again):
        assert np.abs(np.asarray(explanation.pair) - dense).max() <= 1e-6 * scale
        assert explanation.total == pytest.approx(float(dense.sum(dtype=np.float64)), rel=1e-5)
        assert explanation.total == pytest.approx(explanation.score, rel=1e-3)  # Σ = y (bias-free network)
    table = again.table(n=10)
    cells = table[["row1", "col1", "row2", "col2"]].to_numpy()
    np.testing.assert_allclose(table["relevance"], dense[tuple(cells.T)], rtol=1e-5)
    assert np.abs(table["relevance"]).iloc[0] == pytest.approx(scale, rel=1e-6)
    picture = again.draw(top=5)
    assert picture.width > again.image1.width + again.image2.width
