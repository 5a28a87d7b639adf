"""Cached BiLRP factors: equal to bilrp_core.bilrp, keyed by the resolved gamma schedule and pool, reused."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_corpus import SMALL_VGG_KEY, make_corpus

import bilrp_core
from bilrp_core.rotation import TRANSFORMS
from corpus_index.explanation import model_input_image, resolve_schedule
from corpus_index.models import load_model
from corpus_index.storage.factor_cache import gamma_hash


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("factors"), per_book=1)
    corpus.build(SMALL_VGG_KEY, batch_size=4)
    return corpus


def test_explanation_from_cache_equals_bilrp(corpus):
    model = load_model(SMALL_VGG_KEY)
    first = corpus.explain(SMALL_VGG_KEY, 1, 3, pool=4)
    assert first.cached == (False, False)
    x1, x2 = (model.preprocess(corpus.image(i)) for i in (1, 3))
    expected = bilrp_core.bilrp(model, x1, x2, pool=4).numpy()
    assert first.pair.shape == (8, 8, 8, 8)
    np.testing.assert_allclose(first.pair, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())

    again = corpus.explain(SMALL_VGG_KEY, 1, 3, pool=4)
    assert again.cached == (True, True)
    np.testing.assert_array_equal(again.pair, first.pair)

    with torch.no_grad():
        score = float((model(x1) * model(x2)).sum())
    assert first.score == pytest.approx(score, rel=1e-5)  # the score the index shows
    assert first.total == pytest.approx(float(first.pair.sum()), rel=1e-6)
    assert first.image1.size == (32, 32) and first.model_key == SMALL_VGG_KEY and first.pool == 4


def test_cache_files_are_keyed_by_schedule_and_pool(corpus):
    model = load_model(SMALL_VGG_KEY)
    default = resolve_schedule(model, None)
    assert resolve_schedule(model, {int(k): v for k, v in default.items()}) == default
    folder = corpus.root / "factors" / SMALL_VGG_KEY / f"{gamma_hash(default)}-p4"
    corpus.factors(SMALL_VGG_KEY, item_id=2, pool=4)
    assert (folder / "2.npy").is_file() and (folder / "spec.json").is_file()
    other = resolve_schedule(model, 0.0)
    assert gamma_hash(other) != gamma_hash(default)
    zero_gamma = corpus.factors(SMALL_VGG_KEY, item_id=2, gamma=0.0, pool=4)
    assert (corpus.root / "factors" / SMALL_VGG_KEY / f"{gamma_hash(other)}-p4" / "2.npy").is_file()
    expected = bilrp_core.relevance_factors(model, model.preprocess(corpus.image(2)), gamma=0.0, pool=4).numpy()
    np.testing.assert_allclose(zero_gamma, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    coarse = corpus.factors(SMALL_VGG_KEY, item_id=2, pool=8)
    assert coarse.shape == (8, 4, 4)


def test_precompute_for_whole_corpus_and_uploaded_image(corpus):
    report = corpus.precompute_factors(SMALL_VGG_KEY, pool=16)
    assert report.computed + report.cached == corpus.count() and report.skipped == []
    again = corpus.precompute_factors(SMALL_VGG_KEY, pool=16)
    assert (again.computed, again.cached) == (0, corpus.count())
    cached = corpus.factors(SMALL_VGG_KEY, item_id=4, pool=16)
    uploaded = corpus.factors(SMALL_VGG_KEY, image=corpus.image(4), pool=16)
    np.testing.assert_allclose(uploaded, cached, rtol=1e-5, atol=1e-7)
    by_upload = corpus.explain_image(SMALL_VGG_KEY, corpus.image(4), 2, pool=16)
    by_items = corpus.explain(SMALL_VGG_KEY, 4, 2, pool=16)
    assert by_upload.ids == (None, 2) and by_upload.cached == (False, True)
    assert by_upload.score == pytest.approx(by_items.score, rel=1e-5)
    np.testing.assert_allclose(by_upload.pair, by_items.pair, rtol=1e-4, atol=1e-6 * np.abs(by_items.pair).max())


def test_model_input_image_inverts_preprocessing(corpus):
    model = load_model(SMALL_VGG_KEY)
    image = corpus.image(1)
    shown = model_input_image(model, model.preprocess(image))  # through the z^B bounds
    expected = np.asarray(image.resize((32, 32), resample=3), dtype=np.int16)
    assert np.abs(np.asarray(shown, dtype=np.int16) - expected).max() <= 1
    from_original = model_input_image(model, model.preprocess(image), original=image)
    assert np.abs(np.asarray(from_original, dtype=np.int16) - expected).max() <= 1


def test_top_pairs_are_the_largest_entries(corpus):
    explanation = corpus.explain(SMALL_VGG_KEY, 2, 4, pool=8)
    table = explanation.table(n=5)
    assert table["relevance"].iloc[0] == pytest.approx(
        explanation.pair.reshape(-1)[np.abs(explanation.pair).argmax()])
    assert table["relevance"].abs().is_monotonic_decreasing
    first = table.iloc[0]
    cell = tuple(int(first[c]) for c in ("row1", "col1", "row2", "col2"))
    assert explanation.pair[cell] == pytest.approx(first["relevance"])
    assert (first["img1_x1"] - first["img1_x0"], first["img2_y1"] - first["img2_y0"]) == (8, 8)
    picture = explanation.draw(top=5)
    assert picture.width > 2 * explanation.image1.width


def test_rotation_max_explains_the_best_flip_pair(tmp_path):
    key = SMALL_VGG_KEY + "-rot"
    corpus = make_corpus(tmp_path, per_book=1)
    report = corpus.build(key, batch_size=4)
    assert report.index_size == 4 and corpus.features(key).load()[1].shape == (4, 8 * 8)
    model = load_model(key)
    explanation = corpus.explain(key, 1, 2, pool=4)
    x1, x2 = (model.preprocess(corpus.image(i)) for i in (1, 2))
    expected, y_max, names = model.bilrp(x1, x2, pool=4)
    assert explanation.transforms == names
    assert explanation.score == pytest.approx(y_max, rel=1e-5)
    np.testing.assert_allclose(explanation.pair, expected.numpy(), rtol=1e-4,
                               atol=1e-6 * float(expected.abs().max()))
    cached = sorted(p.name for p in (corpus.root / "factors" / key).rglob("*.npy"))
    t1, t2 = (f"-t{[name for name, _, _ in TRANSFORMS].index(n)}.npy" for n in names)
    assert cached == sorted([f"1{t1}", f"2{t2}"])
    hits = corpus.search(key, item_id=1, k=3)
    assert hits["score"].iloc[0] == pytest.approx(
        max(corpus.explain(key, 1, int(i), pool=16).score for i in (2, 3, 4)), rel=1e-5)


def test_schedule_has_integer_keys_and_cache_folders_keep_their_names():
    """γ schedules are {int: float} in memory; the folder hash is the one caches written before were named by."""
    vgg = load_model("vgg16-L17-h100-seed0")
    schedule = resolve_schedule(vgg, None)
    assert all(type(k) is int for k in schedule) and list(schedule) == sorted(schedule)
    # Hashes of caches written by earlier versions (string keys in canonical JSON): they must stay valid.
    assert gamma_hash(schedule) == "d1762143d7e5"
    assert gamma_hash(resolve_schedule(vgg, 0.25)) == "ddc6fe30bf24"
    assert gamma_hash({str(k): v for k, v in schedule.items()}) == gamma_hash(schedule)


def test_rotation_max_offers_the_wrapped_model_interface():
    """RotationMax answers layers, default γ and input drawing as its model does, so no caller unwraps it."""
    from bilrp_core.rotation import RotationMax

    inner = load_model(SMALL_VGG_KEY)
    wrapped = RotationMax(inner)
    assert wrapped.layers is inner.layers and wrapped.default_gamma == inner.default_gamma
    assert resolve_schedule(wrapped, 0.1) == resolve_schedule(inner, 0.1)
    assert wrapped.key != inner.key and wrapped.fingerprint.endswith("-rotmax")
    image = Image.new("RGB", (40, 40), (120, 60, 30))
    x = wrapped.preprocess(image)
    np.testing.assert_array_equal(np.asarray(model_input_image(wrapped, x)), np.asarray(model_input_image(inner, x)))
    assert not hasattr(wrapped, "no_such_attribute")


# -- sparse storage (issue 15 §2) ---------------------------------------------------------------------------------
def bigram_like(shape=(100, 50, 70), density=0.004, seed=0) -> np.ndarray:
    """Factors as the bigram network gives them: > 99 % exact zeros, a few signed values per dimension."""
    rng = np.random.default_rng(seed)
    array = np.zeros(shape, dtype=np.float32)
    mask = rng.random(shape) < density
    array[mask] = rng.standard_normal(int(mask.sum())).astype(np.float32) * 10.0 ** rng.integers(-6, 2, mask.sum())
    return array


def cache_file(tmp_path, array, tag="sha@1"):
    from corpus_index.storage.factor_cache import FactorCache

    cache = FactorCache(tmp_path)
    schedule = {0: 0.25, 3: 0.0}
    cache.save("m", schedule, 8, 7, array, tag=tag)
    return cache, schedule, cache.path("m", schedule, 8, 7)


def test_dense_factors_round_trip_exactly_and_stay_plain_npy(tmp_path):
    array = np.random.default_rng(1).standard_normal((16, 9, 11)).astype(np.float32)  # VGG: no zeros
    cache, schedule, path = cache_file(tmp_path, torch.from_numpy(array))
    assert path.read_bytes()[:6] == b"\x93NUMPY"  # sparse is not smaller: written as before
    loaded = cache.load("m", schedule, 8, 7, tag="sha@1")
    assert loaded.dtype == np.float32 and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)
    np.testing.assert_array_equal(np.load(path), array)  # still an .npy numpy reads
    assert cache.load("m", schedule, 8, 7, tag="other") is None


def test_sparse_factors_round_trip_exactly_and_are_ten_times_smaller(tmp_path):
    array = bigram_like()
    array[0, 0, 0] = -0.0
    cache, schedule, path = cache_file(tmp_path, array)
    assert not path.read_bytes().startswith(b"\x93NUMPY")
    assert path.stat().st_size * 10 <= array.nbytes, (path.stat().st_size, array.nbytes)
    loaded = cache.load("m", schedule, 8, 7, tag="sha@1")
    assert loaded.dtype == np.float32 and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)
    assert loaded.sum(dtype=np.float64) == array.sum(dtype=np.float64)  # Σ of an explanation unchanged
    assert cache.is_current("m", schedule, 8, 7, None, "sha@1")
    assert not cache.is_current("m", schedule, 8, 7, None, "sha@2")
    assert cache.load("m", schedule, 8, 7, tag="sha@2") is None


@pytest.mark.parametrize("shape", [(3, 300, 300), (5, 1, 1), (1, 4, 4)])  # > 65536 cells: uint32 cell indices
def test_sparse_edge_cases_round_trip(tmp_path, shape):
    from corpus_index.storage.factor_cache import decode_factors, encode_factors

    for array in (np.zeros(shape, np.float32), bigram_like(shape, density=0.01, seed=3)):
        cache, schedule, path = cache_file(tmp_path, array)
        np.testing.assert_array_equal(cache.load("m", schedule, 8, 7, tag="sha@1"), array)
        sparse = encode_factors(array)
        if sparse is not None:
            np.testing.assert_array_equal(decode_factors(**sparse), array)


def test_old_dense_cache_files_still_load(tmp_path):
    from corpus_index.storage.factor_cache import FactorCache

    cache = FactorCache(tmp_path)
    schedule = {0: 0.25}
    array = bigram_like((10, 8, 8), seed=5)
    path = cache.path("m", schedule, 8, 3)
    with open(path, "wb") as handle:  # as written before sparse storage: dense, with the trailer
        np.save(handle, array)
        handle.write(b"#corpus-index content:abc\n")
    np.testing.assert_array_equal(cache.load("m", schedule, 8, 3, tag="abc"), array)
    np.save(cache.path("m", schedule, 8, 4), array)  # from before trailers: served only without a tag
    np.testing.assert_array_equal(cache.load("m", schedule, 8, 4), array)
    assert cache.load("m", schedule, 8, 4, tag="abc") is None


def test_truncated_or_garbled_sparse_file_is_damaged_and_repaired(tmp_path):
    from corpus_index.storage.integrity import DamagedFileError

    cache, schedule, path = cache_file(tmp_path, bigram_like())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError, match="7.npy"):
        cache.load("m", schedule, 8, 7, tag="sha@1")
    assert not cache.is_current("m", schedule, 8, 7, None, "sha@1")
    moved = cache.repair("m", {7: "sha@1"})
    assert len(moved) == 1 and not path.exists()

    cache, schedule, path = cache_file(tmp_path, bigram_like())
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY", data.index(b"\x93NUMPY") + 1)  # the indptr array: break its order
    header = data.index(b"\n", start) + 1
    data[header:header + 8] = np.int64(10**9).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError):
        cache.load("m", schedule, 8, 7, tag="sha@1")


def test_sparse_files_load_as_csr_without_densifying_and_dense_files_as_arrays(tmp_path):
    from bilrp_core.sparse_pair import SparseFactors

    array = bigram_like()
    cache, schedule, path = cache_file(tmp_path, array)
    sparse = cache.load("m", schedule, 8, 7, tag="sha@1", sparse=True)
    assert isinstance(sparse, SparseFactors) and sparse.shape == array.shape
    assert sparse.nnz == np.count_nonzero(array)
    np.testing.assert_array_equal(sparse.toarray(), array)
    assert cache.load("m", schedule, 8, 7, tag="other", sparse=True) is None
    dense = np.random.default_rng(2).standard_normal((4, 5, 6)).astype(np.float32)
    cache.save("m", schedule, 8, 8, dense, tag="sha@1")
    loaded = cache.load("m", schedule, 8, 8, tag="sha@1", sparse=True)
    assert isinstance(loaded, np.ndarray)
    np.testing.assert_array_equal(loaded, dense)


def test_items_without_features_take_phi_from_their_factors_pass(tmp_path, monkeypatch):
    """An explanation needs φ of both items; for items never built, the forward pass that computed their factors
    gives it (no second pass), and a cached pair re-opened reads and preprocesses no scan."""
    import corpus_index.models

    corpus = make_corpus(tmp_path, per_book=1)  # SMALL_VGG_KEY not built: no stored features
    model = load_model(SMALL_VGG_KEY)
    for item_id in (1, 2):
        corpus.factors(SMALL_VGG_KEY, item_id=item_id, pool=4)  # as the explorer does, with its progress bar
        factors, phi = bilrp_core.relevance_factors(model, model.preprocess(corpus.image(item_id)), pool=4,
                                                    return_phi=True)
        with torch.no_grad():
            torch.testing.assert_close(phi, model(model.preprocess(corpus.image(item_id)))[0])  # the same φ

    def no_pass(*args, **kwargs):
        raise AssertionError("φ was computed again")

    monkeypatch.setattr(corpus_index.models, "embed", no_pass)
    explanation = corpus.explain(SMALL_VGG_KEY, 1, 2, pool=4, images=False)
    x1, x2 = (model.preprocess(corpus.image(i)) for i in (1, 2))
    with torch.no_grad():
        assert explanation.score == pytest.approx(float((model(x1) * model(x2)).sum()), rel=1e-5)
    assert explanation.image1 is None and explanation.input_sizes == ((32, 32), (32, 32))

    monkeypatch.setattr(corpus, "image", no_pass)  # cached factors that know their input size need no scan
    monkeypatch.setattr(model, "preprocess", no_pass)
    again = corpus.explain(SMALL_VGG_KEY, 1, 2, pool=4, images=False)
    assert again.cached == (True, True) and again.score == explanation.score
    np.testing.assert_array_equal(again.table(n=5).to_numpy(), explanation.table(n=5).to_numpy())


def test_a_scan_preprocessed_for_its_shape_is_not_preprocessed_again_for_its_factors(tmp_path, monkeypatch):
    """The Explain page asks an uncached item's input shape, then computes its factors: one preprocessing."""
    corpus = make_corpus(tmp_path, per_book=1)
    model = load_model(SMALL_VGG_KEY)
    calls = []
    preprocess = model.preprocess
    monkeypatch.setattr(model, "preprocess", lambda image: calls.append(1) or preprocess(image))
    assert corpus.input_shape(SMALL_VGG_KEY, 1) == (32, 32) and len(calls) == 1
    factors = corpus.factors(SMALL_VGG_KEY, item_id=1, pool=4)
    assert len(calls) == 1  # the kept input was used
    np.testing.assert_array_equal(factors, bilrp_core.relevance_factors(model, preprocess(corpus.image(1)), pool=4))
    assert not corpus._inputs  # and let go
    corpus.factors(SMALL_VGG_KEY, item_id=2, pool=4)  # nothing kept for this one: preprocessed as before
    assert len(calls) == 2
