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
