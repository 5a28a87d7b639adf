"""The Ray Data engine gives the same features and factors as the in-process engine (one test: Ray is slow)."""

import numpy as np
import pytest
from tiny_corpus import SMALL_VGG_KEY, make_corpus

from corpus_index.cli import main
from corpus_index.explanation import resolve_schedule
from corpus_index.models import load_model
from corpus_index.storage.features import FeatureStore

pytestmark = pytest.mark.slow  # starts a local Ray cluster

ray = pytest.importorskip("ray")


def test_ray_engine_equals_in_process(tmp_path):
    local = make_corpus(tmp_path / "local", per_book=2)
    local.build(SMALL_VGG_KEY, batch_size=3)
    distributed = make_corpus(tmp_path / "ray", per_book=2)
    broken = distributed.items().iloc[5]
    distributed.store.resolve_path(broken["path"]).write_bytes(b"not a png")

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        report = distributed.build(SMALL_VGG_KEY, batch_size=3, engine="ray", concurrency=2, factors=True,
                                   pool=16)
        # The command line's `build --factors --engine ray` (the driver reuses this Ray): factors for pool 8 too.
        assert main(["--root", str(distributed.root), "build", "--model", SMALL_VGG_KEY, "--engine", "ray",
                     "--factors", "--pool", "8", "--concurrency", "2"]) == 0
    finally:
        ray.shutdown()

    assert report.features.computed == 7
    assert [item_id for item_id, _ in report.features.skipped] == [int(broken["id"])]
    assert len(FeatureStore(distributed.root, SMALL_VGG_KEY).batch_files()) >= 3  # written batch by batch
    ray_ids, ray_vectors = distributed.features(SMALL_VGG_KEY).load()
    local_ids, local_vectors = local.features(SMALL_VGG_KEY).load()
    keep = local_ids != int(broken["id"])
    assert ray_ids.tolist() == local_ids[keep].tolist()
    np.testing.assert_allclose(ray_vectors, local_vectors[keep], rtol=1e-5, atol=1e-6)
    assert distributed.store.items_with_features(SMALL_VGG_KEY) == ray_ids.tolist()
    assert report.index_size == 7

    assert report.factors.computed == 7 and len(report.factors.skipped) == 1
    schedule = resolve_schedule(load_model(SMALL_VGG_KEY), None)
    for pool in (16, 8):
        assert all(distributed.factor_cache.path(SMALL_VGG_KEY, schedule, pool, int(i)).exists() for i in ray_ids)
        for item_id in ray_ids[:3]:
            from_ray = distributed.factors(SMALL_VGG_KEY, item_id=int(item_id), pool=pool)  # read from the cache
            in_process = local.factors(SMALL_VGG_KEY, item_id=int(item_id), pool=pool)  # computed here
            np.testing.assert_allclose(from_ray, in_process, rtol=1e-4, atol=1e-6 * np.abs(in_process).max())


def test_ray_factors_of_pages_of_different_sizes_keep_their_input_sizes(tmp_path):
    """The bigram network keeps a page's size: factors of two pages differ in shape and travel back as they are,
    with the size of the model input each was computed at (an explanation from cache then needs no scan)."""
    from PIL import Image

    from corpus_index.corpus import Corpus
    from corpus_index.synthetic import table_groups, table_page
    from corpus_index.synthetic.pages import sample_house_style

    folder = tmp_path / "scans"
    folder.mkdir()
    for seed, crop in ((0, (0, 0, 520, 700)), (1, (0, 0, 640, 560))):
        rng = np.random.default_rng([seed, 5])
        scan, _, _ = table_page(table_groups()[5], sample_house_style(rng, "EB Garamond"), 10, rng)
        Image.fromarray(np.asarray(scan)).crop(crop).save(folder / f"table-{seed}.png")
    corpus = Corpus.open(tmp_path / "root", create=True)
    ids = [int(i) for i in corpus.ingest_folder(folder).added]
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        report = corpus.precompute_factors("bigram", ids, pool=16, engine="ray", concurrency=2)
    finally:
        ray.shutdown()
    assert report.computed == 2 and not report.skipped
    model = load_model("bigram")
    schedule = resolve_schedule(model, None)
    shapes = []
    for item_id in ids:
        from_ray, input_shape = corpus.factor_cache.load_entry("bigram", schedule, 16, item_id)
        x = model.preprocess(corpus.image(item_id))
        assert input_shape == tuple(x.shape[-2:])
        in_process = corpus.factors("bigram", image=corpus.image(item_id), pool=16)
        np.testing.assert_allclose(from_ray, in_process, rtol=1e-4, atol=1e-6 * np.abs(in_process).max())
        shapes.append(from_ray.shape)
    assert shapes[0] != shapes[1]
