"""Feature extraction: batches on disk, Store marks, resumable builds, unreadable images, model keys."""

import numpy as np
import pytest
import torch
from tiny_corpus import SMALL_VGG_KEY, TINY_KEY, make_corpus, tiny_model

from corpus_index.models import UnknownModelKeyError, canonical_key, load_model, parse_model_key
from corpus_index.storage.features import FeatureStore


class Interrupt(Exception):
    pass


def test_features_equal_direct_forward_and_are_marked(tmp_path):
    corpus = make_corpus(tmp_path)
    report = corpus.build(TINY_KEY, batch_size=5)
    assert (report.features.computed, report.features.reused, report.features.skipped) == (12, 0, [])
    assert len(FeatureStore(corpus.root, TINY_KEY).batch_files()) == 3  # 5 + 5 + 2
    ids, vectors = corpus.features(TINY_KEY).load()
    assert ids.tolist() == corpus.items()["id"].tolist()
    model = tiny_model()
    with torch.no_grad():
        expected = torch.cat([model(model.preprocess(corpus.image(int(i)))) for i in ids]).numpy()
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
    assert corpus.store.items_with_features(TINY_KEY) == ids.tolist()
    assert corpus.store.items_without_features(TINY_KEY) == []


def test_interrupted_build_resumes_and_equals_uninterrupted(tmp_path):
    corpus = make_corpus(tmp_path / "a")
    calls = []

    def stop_after_two_batches(done, total, message):
        calls.append(done)
        if done >= 8:  # two batches of 4 finished
            raise Interrupt

    with pytest.raises(Interrupt):
        corpus.build(TINY_KEY, batch_size=4, progress=stop_after_two_batches)
    features = FeatureStore(corpus.root, TINY_KEY)
    kept = features.ids().tolist()
    assert len(features.batch_files()) == 2 and len(kept) == 8
    assert corpus.store.items_with_features(TINY_KEY) == kept
    assert not corpus.index(TINY_KEY, "flat").exists()  # the index is written only at the end

    seen_before = tiny_model().images_seen
    report = corpus.build(TINY_KEY, batch_size=4)
    assert tiny_model().images_seen - seen_before == 4  # only the missing items went through the model
    assert (report.features.reused, report.features.computed, report.index_size) == (8, 4, 12)

    fresh = make_corpus(tmp_path / "b")
    fresh.build(TINY_KEY, batch_size=4)
    resumed_ids, resumed = corpus.features(TINY_KEY).load()
    fresh_ids, uninterrupted = fresh.features(TINY_KEY).load()
    assert resumed_ids.tolist() == fresh_ids.tolist()
    np.testing.assert_array_equal(resumed, uninterrupted)
    # And the searches agree.
    a = corpus.search(TINY_KEY, item_id=3, k=5)
    b = fresh.search(TINY_KEY, item_id=3, k=5)
    assert a["id"].tolist() == b["id"].tolist()


def test_rebuild_does_nothing_when_complete(tmp_path):
    corpus = make_corpus(tmp_path)
    corpus.build(TINY_KEY, batch_size=16)
    report = corpus.build(TINY_KEY, batch_size=16)
    assert (report.features.computed, report.features.reused, report.index_added) == (0, 12, 0)


def test_unreadable_image_is_reported_and_skipped(tmp_path):
    corpus = make_corpus(tmp_path)
    broken = corpus.items().iloc[4]
    corpus.store.resolve_path(broken["path"]).write_bytes(b"\x89PNG garbage")  # damaged after ingest
    report = corpus.build(TINY_KEY, batch_size=3)
    assert [item_id for item_id, _ in report.features.skipped] == [int(broken["id"])]
    assert "b1_p1.png" in report.features.skipped[0][1]
    assert report.features.computed == 11 and report.index_size == 11
    assert int(broken["id"]) not in corpus.store.items_with_features(TINY_KEY)


def test_crash_between_batch_write_and_mark_keeps_latest_vector(tmp_path):
    features = FeatureStore(tmp_path, "k")
    features.write_batch(np.array([1, 2]), np.array([[1.0, 0.0], [2.0, 0.0]]))
    features.write_batch(np.array([2, 3]), np.array([[5.0, 5.0], [3.0, 0.0]]))  # item 2 computed again
    ids, vectors = features.load()
    assert ids.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(vectors[1], [5.0, 5.0])
    np.testing.assert_array_equal(features.vector(2), [5.0, 5.0])
    np.testing.assert_array_equal(features.vector(1), [1.0, 0.0])
    with pytest.raises(KeyError, match="no features"):
        features.vector(4)
    with pytest.raises(ValueError, match="dimensions"):
        features.write_batch(np.array([4]), np.zeros((1, 3)))


def test_model_keys_parse_and_reject():
    spec = parse_model_key("vgg16in-L31-h100-seed3-rot")
    assert (spec.layer, spec.proj_dim, spec.seed, spec.weights, spec.rotation_max) == (31, 100, 3, "imagenet", True)
    assert canonical_key("vgg16-L17-h100-seed0-px128") == "vgg16-L17-h100-seed0"
    assert parse_model_key("bigram").family == "bigram" and not parse_model_key("bigram").aligned
    spec = parse_model_key("bigram-aligned-rot")
    assert (spec.family, spec.aligned, spec.rotation_max, spec.key) == ("bigram", True, True, "bigram-aligned-rot")
    assert parse_model_key("bigram").sqrt and not parse_model_key("bigram-sums-aligned").sqrt
    assert parse_model_key("bigram-sums-aligned").key == "bigram-sums-aligned"
    for bad in ["vgg16-L12-h100-seed0", "vgg16-L17-h0-seed0", "resnet", "vgg16-L17-h100-seed0-px100", "",
                "bigram-rot-aligned", "bigram-aligned-sums"]:
        with pytest.raises(UnknownModelKeyError):
            parse_model_key(bad)


def test_bigram_aligned_key_builds_the_aligned_network():
    plain, aligned = load_model("bigram"), load_model("bigram-aligned")
    x = torch.rand(1, 1, 48, 64)
    assert plain(x).shape == (1, 100) and aligned(x).shape == (1, 200)
    assert aligned.fingerprint != plain.fingerprint  # stored data of one is never taken for the other's


def test_bigram_sums_key_builds_the_network_without_the_root():
    rooted, sums = load_model("bigram"), load_model("bigram-sums")
    assert rooted.layers[-1].sqrt and not sums.layers[-1].sqrt
    assert sums.fingerprint != rooted.fingerprint


def test_load_model_builds_small_vgg_once():
    model = load_model(SMALL_VGG_KEY)
    assert load_model(SMALL_VGG_KEY) is model
    assert model.projection.out_features == 8


def test_data_of_another_model_version_is_set_aside_and_rebuilt(tmp_path, monkeypatch):
    from corpus_index.corpus import Corpus, StaleModelDataError
    from corpus_index.storage.model_stamp import read_stamp

    corpus = make_corpus(tmp_path)
    corpus.build(TINY_KEY, batch_size=16)
    assert read_stamp(corpus.root, TINY_KEY) == TINY_KEY and corpus.stale_models() == []
    old_vectors = corpus.features(TINY_KEY).load()[1]
    monkeypatch.setattr(tiny_model(), "fingerprint", "tiny-test:retrained", raising=False)  # new weights shipped
    reopened = Corpus.open(corpus.root)
    assert reopened.stale_models() == [TINY_KEY]
    with pytest.raises(StaleModelDataError, match="build --model tiny-test"):
        reopened.factors(TINY_KEY, item_id=int(reopened.items()["id"].iloc[0]))
    report = reopened.build(TINY_KEY, batch_size=16)
    assert (report.features.computed, report.features.reused, report.index_size) == (12, 0, 12)
    assert read_stamp(corpus.root, TINY_KEY) == "tiny-test:retrained" and reopened.stale_models() == []
    kept = list((corpus.root / "replaced").iterdir())  # nothing deleted: the old data is kept aside
    assert len(kept) == 1 and {p.name.split("-")[0] for p in kept[0].iterdir()} >= {"features", "indexes"}
    old = FeatureStore(kept[0], TINY_KEY)
    old.folder = kept[0] / f"features-{TINY_KEY}"
    np.testing.assert_array_equal(old.load()[1], old_vectors)


def test_unstamped_data_counts_as_stale_only_when_its_dimension_differs(tmp_path):
    from corpus_index.storage.model_stamp import is_stale

    corpus = make_corpus(tmp_path)
    corpus.build(TINY_KEY, batch_size=16)
    (corpus.root / "stamps" / f"{TINY_KEY}.json").unlink()  # data written before stamps existed
    model = tiny_model()
    assert not is_stale(corpus.root, TINY_KEY, model, 16, lambda: 16)
    assert is_stale(corpus.root, TINY_KEY, model, 110, lambda: 210)
    assert not is_stale(tmp_path / "empty", TINY_KEY, model, None, None)


def test_bigram_fingerprint_names_its_weights_file(tmp_path):
    import shutil

    from bilrp_core.bigram import WEIGHTS_FILE, bigram_network

    shipped = bigram_network()
    assert shipped.fingerprint.startswith(shipped.key + ":") and len(shipped.fingerprint) == len(shipped.key) + 13
    copy = tmp_path / "same.pt"
    shutil.copy(WEIGHTS_FILE, copy)
    assert bigram_network(weights=copy).fingerprint == shipped.fingerprint
    changed = torch.load(WEIGHTS_FILE, weights_only=True)
    changed["steps"] = -1
    torch.save(changed, tmp_path / "other.pt")
    assert bigram_network(weights=tmp_path / "other.pt").fingerprint != shipped.fingerprint


def test_stored_paths_of_a_key_follow_from_the_layout(tmp_path):
    """Everything a build and an explanation write for a key is what the key's data is (set aside as a whole);
    nothing of another key, no lock file."""
    from corpus_index.storage.layout import Layout

    corpus = make_corpus(tmp_path)
    corpus.build(TINY_KEY, batch_size=16, index="flat")
    corpus.build(TINY_KEY, batch_size=16, index="hnsw")
    other = Layout(corpus.root).index("other-key", "flat")
    other.write_bytes(b"")
    stored = set(Layout(corpus.root).stored_paths(TINY_KEY))
    written = {p for p in (corpus.root / "indexes").iterdir() if not p.name.startswith(".") and p != other}
    assert written and written <= stored and other not in stored
    assert Layout(corpus.root).features(TINY_KEY) in stored
    assert Layout(corpus.root).indexed_keys() == sorted([TINY_KEY, "other-key"])
