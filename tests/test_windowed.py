"""Windowed factors (bilrp_core.windowed) equal dense factors, and "auto" chooses them only where they pay."""

import numpy as np
import pytest
import torch
from torch import nn

import bilrp_core.attribution as attribution
from bilrp_core import BigramOptions, RotationMax, SimilarityModel, bigram_network, relevance_factors
from bilrp_core.attribution import factor_method
from bilrp_core.vgg import vgg16_similarity
from bilrp_core.windowed import Window, plan_windows
from tests.conftest import small_conv_net

TOLERANCE = 1e-5


def _rel_err(windowed, dense):
    """Largest difference relative to the largest factor (0 for two all-zero results)."""
    scale = dense.abs().max()
    return 0.0 if scale == 0 else float((windowed - dense).abs().max() / scale)


def _both(model, x, **kwargs):
    return (relevance_factors(model, x, method="windowed", **kwargs),
            relevance_factors(model, x, method="dense", **kwargs))


def spatial_net(seed=0, bias=False, zb=True, normalize=False):
    """Conv/ReLU/max-pool net whose features are its last maps (no projection): every dimension is one place.

    Padding, stride, dilation, a padded max-pool with overlapping windows and odd sizes exercise every footprint.
    """
    torch.manual_seed(seed)
    layers = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias),  # 0: z^B
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),  # 2
        nn.Conv2d(4, 5, 3, padding=2, dilation=2, bias=bias),  # 3
        nn.ReLU(),
        nn.Conv2d(5, 4, 3, stride=2, padding=1, bias=bias),  # 5
        nn.ReLU(),
        nn.Conv2d(4, 3, 1, bias=bias),  # 7
        nn.ReLU(),
    )
    bounds = (torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    model = SimilarityModel(layers, None, default_gamma={3: 0.25, 5: 0.1, 7: 0.0}, zb_index=0 if zb else None,
                            input_bounds=bounds, key=f"spatial-{seed}", normalize=normalize)
    return model.double()


def random_page(height=128, width=160, blobs=4, seed=0):
    """A page of zeros with a few rectangles of random ink: sparse, like print on paper."""
    g = torch.Generator().manual_seed(seed)
    page = torch.zeros(1, 1, height, width)
    for _ in range(blobs):
        y, x = (int(torch.randint(0, s - 24, (1,), generator=g)) for s in (height, width))
        page[..., y:y + 14, x:x + 24] = torch.rand(14, 24, generator=g)
    return page


@pytest.fixture(scope="module")
def demo_page():
    """A rendered demo table page, normalised as at inference (the whole page and a crop of its table)."""
    from corpus_index.synthetic import table_groups, table_page
    from corpus_index.synthetic.pages import sample_house_style

    rng = np.random.default_rng([0, 5])
    scan, _, _ = table_page(table_groups()[5], sample_house_style(rng, "EB Garamond"), 10, rng)
    page = bigram_network().preprocess(scan)
    top, left = page.shape[-2] // 3, page.shape[-1] // 4
    return page, page[..., top:top + 136, left:left + 184]


@pytest.mark.parametrize("gamma", [None, 0.3, {3: 0.5, 7: 0.2}])
@pytest.mark.parametrize("pool", [1, 3])
@pytest.mark.parametrize("bias, zb, normalize", [(False, True, False), (True, True, True), (False, False, True)])
def test_spatial_features_windowed_equal_dense(gamma, pool, bias, zb, normalize):
    model = spatial_net(seed=1, bias=bias, zb=zb, normalize=normalize)
    x = torch.rand(1, 3, 21, 19, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    windowed, dense = _both(model, x, gamma=gamma, pool=pool)
    assert windowed.shape == dense.shape and dense.abs().max() > 0
    assert _rel_err(windowed, dense) <= 1e-12  # float64: only the order of sums differs


@pytest.mark.parametrize("options", [BigramOptions(threshold=0.02), BigramOptions(threshold=0.02, sqrt=False),
                                     pytest.param(BigramOptions(threshold=0.02, aligned=True), marks=pytest.mark.slow),
                                     BigramOptions(threshold=0.02, unigrams=True, normalize=False),
                                     pytest.param(BigramOptions(threshold=0), marks=pytest.mark.slow)])
@pytest.mark.parametrize("gamma", [None, pytest.param(0.1, marks=pytest.mark.slow),
                                   pytest.param({0: 1.0}, marks=pytest.mark.slow)])
def test_random_bigram_network_on_random_pages(options, gamma):
    torch.manual_seed(3)
    model = bigram_network(options, pretrained=False)
    x = random_page(seed=4)
    windowed, dense = _both(model, x, gamma=gamma, pool=8)
    assert dense.abs().max() > 0
    assert _rel_err(windowed, dense) <= TOLERANCE


@pytest.mark.parametrize("options, gamma", [
    (BigramOptions(), None), (BigramOptions(), {0: 0.0, 3: 1.0}), (BigramOptions(aligned=True), 0.25),
    (BigramOptions(sqrt=False), {6: 2.0}), (BigramOptions(aligned=True, sqrt=False, unigrams=True), None)])
def test_shipped_bigram_network_on_a_rendered_demo_page(demo_page, options, gamma):
    model = bigram_network(options)
    x = demo_page[1]
    windowed, dense = _both(model, x, gamma=gamma, pool=8)
    assert int((model(x)[0] != 0).sum()) >= 5  # the crop holds several bigrams
    assert _rel_err(windowed, dense) <= TOLERANCE
    torch.testing.assert_close(windowed.sum(dim=(1, 2)), model(x)[0], rtol=1e-3, atol=1e-5)  # Σ factors = φ


@pytest.mark.parametrize("transform, pool", [(0, 8), (3, 8), (6, 7)])
def test_rotation_max_factors_windowed_equal_dense(demo_page, transform, pool):
    wrapped = RotationMax(bigram_network(BigramOptions(aligned=True)))
    x = demo_page[1]
    windowed = wrapped.relevance_factors(x, transform, gamma=0.5, pool=pool, method="windowed")
    dense = wrapped.relevance_factors(x, transform, gamma=0.5, pool=pool, method="dense")
    assert _rel_err(windowed, dense) <= TOLERANCE and dense.abs().max() > 0
    torch.testing.assert_close(wrapped.relevance_factors(x, transform, gamma=0.5, pool=pool), windowed)


def test_auto_chooses_windowed_for_a_sparse_page_and_not_for_vgg(demo_page, monkeypatch):
    page = demo_page[0]
    model = bigram_network()
    assert factor_method(model, page) == "windowed"
    assert factor_method(model, page, method="dense") == "dense"
    vgg = vgg16_similarity(layer=5, proj_dim=8, image_size=32)
    assert factor_method(vgg, torch.rand(1, 3, 32, 32)) == "colored"  # cheaper than dense (tests/test_colored.py)
    assert factor_method(vgg, torch.rand(1, 3, 32, 32), method="windowed") == "dense"  # the projection is global
    calls = []
    real = attribution.windowed.run_windows
    monkeypatch.setattr(attribution.windowed, "run_windows", lambda *args: calls.append(1) or real(*args))
    relevance_factors(model, demo_page[1], pool=8)  # the default is "auto"
    assert calls


def test_auto_does_not_window_when_windows_cover_most_of_the_input():
    torch.manual_seed(3)
    model = bigram_network(BigramOptions(threshold=0), pretrained=False)  # every response counts: dense maps
    assert factor_method(model, random_page(64, 64, blobs=6)) == "colored"  # not windowed; colouring is cheaper
    assert factor_method(model, random_page(64, 64, blobs=6), method="windowed") == "windowed"


def test_models_with_non_local_rules_fall_back_to_dense(pair):
    model = small_conv_net(seed=5)  # shifts, min/max over copies and a projection: no footprints
    x, _ = pair
    assert factor_method(model, x, method="windowed") == "dense"
    torch.testing.assert_close(relevance_factors(model, x, pool=2, method="windowed"),
                               relevance_factors(model, x, pool=2, method="dense"), rtol=0, atol=0)
    flat = SimilarityModel(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 4, bias=False)))
    assert factor_method(flat, x.float(), method="windowed") == "dense"  # a Linear over flattened maps


def test_dims_subset_and_absent_bigrams(demo_page):
    model = bigram_network()
    x = demo_page[1]
    phi = model(x)[0]
    every = relevance_factors(model, x, pool=4, method="windowed")
    assert (every[phi == 0] == 0).all()
    dims = [int(phi.argmax()), int(phi.argmin()), int(phi.argmax())]
    torch.testing.assert_close(relevance_factors(model, x, pool=4, dims=dims, method="windowed"), every[dims])


def test_window_grows_by_the_receptive_field_and_crops_with_fill():
    window = Window(torch.tensor([[0, 3], [-2, 5]]), (2, 3))
    grown = window.grown(((3, 3), (2, 2), (2, 1), (1, 0)))  # kernel 3, stride 2, dilation (2, 1), padding (1, 0)
    assert grown.origin.tolist() == [[-1, 6], [-5, 10]] and grown.size == (7, 7)
    maps = torch.arange(2 * 4 * 6, dtype=torch.float64).view(1, 2, 4, 6)
    crop = window.take(maps, fill=-1.0)
    assert crop.shape == (2, 2, 2, 3)
    torch.testing.assert_close(crop[0], maps[0, :, 0:2, 3:6])
    assert (crop[1] == -1).all()  # the second window lies above the maps


def test_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="method"):
        relevance_factors(spatial_net(), torch.rand(1, 3, 8, 8, dtype=torch.float64), method="sparse")


def test_plan_is_none_with_a_projection(pair):
    model = small_conv_net(seed=6)
    assert plan_windows(model, [], [], [], torch.zeros(1, 4), [0]) is None


@pytest.mark.parametrize("method", ["dense", "windowed"])
def test_progress_counts_batches_up_to_the_total(demo_page, method, monkeypatch):
    model = bigram_network()
    monkeypatch.setattr("bilrp_core.windowed.WINDOW_ELEMENTS", 2**14)  # small batches: several reports
    calls = []
    factors = relevance_factors(model, demo_page[1], pool=4, method=method, chunk_size=3,
                                progress=lambda done, total: calls.append((done, total)))
    done = [d for d, _ in calls]
    assert len(calls) >= 3 and len({t for _, t in calls}) == 1
    assert done == sorted(done) and len(set(done)) == len(done) and done[-1] == calls[-1][1] > 0
    torch.testing.assert_close(factors, relevance_factors(model, demo_page[1], pool=4, method=method))


def test_compute_factors_passes_progress_through(demo_page):
    from PIL import Image

    from corpus_index.explanation import compute_factors, resolve_schedule

    model = bigram_network()
    crop = (demo_page[1][0, 0].clamp(0, 1) * 255).byte().numpy()
    image = Image.fromarray(255 - crop).convert("RGB")  # ink dark on paper, as a scan
    calls = []
    compute_factors(model, image, resolve_schedule(model, None), 8, progress=lambda *call: calls.append(call))
    assert calls and calls[-1][0] == calls[-1][1] > 0 and all(message for _, _, message in calls)


def test_cache_factors_reports_batches_within_each_page(demo_page, tmp_path):
    from PIL import Image

    from corpus_index.explanation import cache_factors
    from corpus_index.storage.factor_cache import FactorCache

    model = bigram_network()
    crop = (demo_page[1][0, 0].clamp(0, 1) * 255).byte().numpy()
    image = Image.fromarray(255 - crop).convert("RGB")
    calls = []
    report = cache_factors(FactorCache(tmp_path), model, "bigram", [(1, "a.png", None), (2, "b.png", None)],
                           lambda path, region: image, pool=8, progress=lambda *call: calls.append(call))
    assert report.computed == 2
    items = [done for done, _, _ in calls]
    assert items == sorted(items) and items[-1] == 2 and all(total == 2 for _, total, _ in calls)
    within = [message for done, _, message in calls if "batches" in message]
    assert any(message.startswith("BiLRP factors bigram: 1 (") for message in within)
    assert any(message.startswith("BiLRP factors bigram: 2 (") for message in within)


@pytest.mark.parametrize("method", ["windowed", "dense"])
def test_phi_comes_with_the_factors_from_the_same_forward_pass(demo_page, method):
    model = bigram_network()
    crop = demo_page[1]
    factors, phi = relevance_factors(model, crop, pool=8, method=method, return_phi=True)
    with torch.no_grad():
        torch.testing.assert_close(phi, model(crop)[0])
    torch.testing.assert_close(factors, relevance_factors(model, crop, pool=8, method=method))
