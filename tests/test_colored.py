"""Coloured factors (bilrp_core.colored): each rule's adjoint is the transpose of its backward and equals on crops
what it gives on whole maps, coloured factors (with and without crops) equal dense ones, they conserve the score,
and "auto" chooses them, and crops, only where they pay."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bilrp_core import BigramOptions, SimilarityModel, bigram_network, colored, pair_matrix, relevance_factors
from bilrp_core.attribution import _forward_and_prepare, factor_method
from bilrp_core.composite import rules_for
from bilrp_core.detector import GatedDigitMaps
from bilrp_core.layers import Shift
from bilrp_core.rules import GammaRule, GateRule, MaxPoolRule, PassRule, SignalTakeAllRule, ZBoxRule
from bilrp_core.vgg import vgg16_similarity
from tests.conftest import small_conv_net
from tests.test_windowed import random_page, spatial_net

TOLERANCE = 1e-5


def _rel_err(coloured, dense):
    """Largest difference relative to the largest dense factor."""
    return float((coloured - dense).abs().max() / dense.abs().max())


def _both(model, x, **kwargs):
    return (relevance_factors(model, x, method="colored", **kwargs),
            relevance_factors(model, x, method="dense", **kwargs))


def _assert_adjoint(rule, layer, a, batch=3, seed=0):
    """⟨backward(r), u⟩ = ⟨r, adjoint(u)⟩ for random r (output-shaped) and u (input-shaped), in float64."""
    g = torch.Generator().manual_seed(seed)
    ctx = rule.prepare(layer, a)
    with torch.no_grad():
        out_shape = layer(a).shape[1:]
        r = torch.randn(batch, *out_shape, dtype=a.dtype, generator=g)
        u = torch.randn(batch, *a.shape[1:], dtype=a.dtype, generator=g)
        left = (rule.backward(ctx, r) * u).sum(dim=tuple(range(1, a.dim())))
        right = (r * rule.adjoint(ctx, u)).sum(dim=tuple(range(1, r.dim())))
    assert left.abs().max() > 1e-6  # not trivially zero
    torch.testing.assert_close(left, right, rtol=1e-10, atol=1e-12)


def _conv(*args, **kwargs):
    torch.manual_seed(1)
    layer = nn.Conv2d(*args, **kwargs).double()
    if layer.bias is not None:
        nn.init.uniform_(layer.bias, -0.1, 0.2)
    return layer


def _activations(channels=4, height=9, width=7, seed=2):
    return torch.rand(1, channels, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("gamma", [0.0, 0.25, 2.0])
@pytest.mark.parametrize("layer", [
    lambda: _conv(4, 5, 3, padding=1),
    lambda: _conv(4, 6, 3, stride=2, padding=2, dilation=2, bias=False),
    lambda: _conv(4, 6, (1, 3), groups=2),
])
def test_gamma_rule_adjoint_is_the_transpose(gamma, layer):
    _assert_adjoint(GammaRule(gamma), layer(), _activations())


def test_gamma_rule_adjoint_of_a_linear_layer():
    torch.manual_seed(0)
    _assert_adjoint(GammaRule(0.5), nn.Linear(6, 4).double(), torch.rand(1, 6, dtype=torch.float64))


def _zbox_rule_and_pixels(channels, **size):
    """A z^B rule with random box bounds per channel, and pixels inside them."""
    low = -torch.rand(1, channels, 1, 1, dtype=torch.float64)
    high = 1 + torch.rand(1, channels, 1, 1, dtype=torch.float64)
    return ZBoxRule(low, high), low + (high - low) * _activations(channels, **size)


@pytest.mark.parametrize("layer", [lambda: _conv(3, 5, 3, padding=1), lambda: _conv(4, 6, 3, stride=2, groups=2)])
def test_zbox_rule_adjoint_is_the_transpose(layer):
    layer = layer()
    rule, a = _zbox_rule_and_pixels(layer.in_channels)
    _assert_adjoint(rule, layer, a)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1), nn.MaxPool2d(3, stride=1)])
def test_max_pool_rule_adjoint_is_the_transpose_with_and_without_overlap(pool):
    a = torch.relu(torch.randn(1, 4, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    _assert_adjoint(MaxPoolRule(), pool, a)  # the zeros of the ReLU give maxima of 0: safe division tested too


def test_elementwise_and_signal_rules_adjoints_are_transposes():
    a = torch.randn(1, 4, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    _assert_adjoint(PassRule(), nn.ReLU(), a)
    gate = nn.Threshold(0.3, 0.0)  # out = a · [a > 0.3], as DetectionThreshold
    _assert_adjoint(GateRule(), gate, a)
    torch.manual_seed(5)
    gated = GatedDigitMaps(4, context=1).double()
    rule = SignalTakeAllRule(0.5)
    ctx = rule.prepare(gated, a.relu())
    g = torch.Generator().manual_seed(6)
    r = torch.randn(2, 10, 6, 5, dtype=torch.float64, generator=g)
    u = torch.randn(2, 4, 6, 5, dtype=torch.float64, generator=g)
    with torch.no_grad():
        torch.testing.assert_close((rule.backward(ctx, r) * u).sum(dim=(1, 2, 3)),
                                   (r * rule.adjoint(ctx, u)).sum(dim=(1, 2, 3)), rtol=1e-10, atol=1e-12)


def test_the_adjoint_check_sees_a_wrong_adjoint():
    """The identity is not trivially true: an adjoint that forgets the activations breaks it."""
    layer, a = _conv(4, 5, 3, padding=1), _activations()

    class Wrong(GammaRule):
        def adjoint(self, ctx, u):
            return super().adjoint({**ctx, "a": torch.ones_like(ctx["a"])}, u)

    with pytest.raises(AssertionError):
        _assert_adjoint(Wrong(0.25), layer, a)


@pytest.mark.parametrize("layer, size", [(5, 32), (10, 64), (17, 64)])
@pytest.mark.parametrize("pool", [4, 8, 6, (5, 3)])  # 6 and (5, 3): a ragged border of partial patches
@pytest.mark.parametrize("gamma", [None, 0.0, 0.25, {2: 1.0}])
def test_vgg_colored_equals_dense(layer, size, pool, gamma):
    model = vgg16_similarity(layer=layer, proj_dim=8, image_size=size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(layer))
    coloured, dense = _both(model, x, gamma=gamma, pool=pool)
    assert coloured.shape == dense.shape and dense.abs().max() > 0
    assert _rel_err(coloured, dense) <= TOLERANCE


@pytest.mark.parametrize("pool", [1, 3, 4])
@pytest.mark.parametrize("bias, zb, normalize", [(False, True, False), (True, True, True), (False, False, True)])
def test_spatial_net_colored_equals_dense(pool, bias, zb, normalize):
    """Stride, dilation, padding, an overlapping padded max-pool, odd sizes, biases, no projection (float64)."""
    model = spatial_net(seed=1, bias=bias, zb=zb, normalize=normalize)
    x = torch.rand(1, 3, 21, 19, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    coloured, dense = _both(model, x, gamma={3: 0.5, 7: 0.2}, pool=pool)
    assert _rel_err(coloured, dense) <= 1e-12


def test_split_stops_below_rules_without_adjoint(pair):
    """small_conv_net has shifts and min/max over copies above layer 5: colour layers 0–4, the rest densely."""
    model = small_conv_net(seed=1)
    x, _ = pair
    rules, shapes = rules_for(model), []
    contexts, a_top = _forward_and_prepare(model, x, rules, shapes)
    plan = colored.plan_colors(rules, contexts, shapes + [a_top.shape], (2, 2), 6)
    assert 1 <= plan.split <= 5
    for pool in (1, 2, 3):
        coloured, dense = _both(model, x, pool=pool)
        assert _rel_err(coloured, dense) <= 1e-12


def test_large_colour_maps_move_the_split_down(monkeypatch):
    model = vgg16_similarity(layer=10, proj_dim=8, image_size=64)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(11))
    rules, shapes = rules_for(model), []
    contexts, a_top = _forward_and_prepare(model, x, rules, shapes)
    shapes.append(a_top.shape)
    free = colored.plan_colors(rules, contexts, shapes, (8, 8), 8)
    maps = free.colors * free.level_shape[1:].numel()
    monkeypatch.setattr(colored, "MAP_ELEMENTS", maps - 1)
    bounded = colored.plan_colors(rules, contexts, shapes, (8, 8), 8)
    assert bounded.split != free.split and bounded.colors * bounded.level_shape[1:].numel() < maps
    assert _rel_err(*_both(model, x, pool=8)) <= TOLERANCE
    monkeypatch.setattr(colored, "MAP_ELEMENTS", 0)
    assert colored.plan_colors(rules, contexts, shapes, (8, 8), 8) is None
    assert factor_method(model, x, pool=8, method="colored") == "dense"


def test_without_any_adjoint_colored_falls_back_to_dense(pair):
    layers = nn.Sequential(Shift(1, 0), nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU())
    model = SimilarityModel(layers, nn.Linear(4 * 64, 3, bias=False)).double()
    x, _ = pair
    assert factor_method(model, x, method="colored") == "dense"
    torch.testing.assert_close(*_both(model, x, pool=2), rtol=0, atol=0)


@pytest.mark.parametrize("options", [BigramOptions(threshold=0.02), BigramOptions(threshold=0.02, aligned=True),
                                     BigramOptions(threshold=0, unigrams=True, normalize=False)])
def test_random_bigram_network_colored_equals_dense(options):
    torch.manual_seed(3)
    model = bigram_network(options, pretrained=False)
    x = random_page(64, 80, blobs=3, seed=4)
    coloured, dense = _both(model, x, gamma=0.25, pool=8)
    assert dense.abs().max() > 0 and _rel_err(coloured, dense) <= TOLERANCE


def test_shipped_bigram_network_colored_equals_dense():
    """The gated detector (signal-take-all rule) and the detection threshold (gate rule) below the split."""
    model = bigram_network()
    x = random_page(72, 96, blobs=4, seed=1)
    coloured, dense = _both(model, x, pool=(8, 6))
    assert dense.abs().max() > 0 and _rel_err(coloured, dense) <= TOLERANCE
    assert any(isinstance(rule, SignalTakeAllRule) for rule in rules_for(model))


def test_colored_factors_conserve_the_score():
    """VGG with random weights has zero biases: Σ factors = φ_m, and Σ of the pair matrix = y (Proposition 1)."""
    model = vgg16_similarity(layer=10, proj_dim=8, image_size=32).double()
    g = torch.Generator().manual_seed(8)
    x, x2 = (torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=g) for _ in range(2))
    factors = relevance_factors(model, x, gamma=0.25, pool=6, method="colored")
    torch.testing.assert_close(factors.sum(dim=(1, 2)), model(x)[0], rtol=1e-8, atol=1e-10)
    explained = pair_matrix(factors, relevance_factors(model, x2, gamma=0.25, pool=6, method="colored")).sum()
    y = model.similarity(x, x2)
    assert abs(explained - y) <= 1e-8 * abs(y)


def test_dims_subset_and_progress():
    model = vgg16_similarity(layer=10, proj_dim=8, image_size=32)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    every = relevance_factors(model, x, pool=4, method="colored")
    calls = []
    subset = relevance_factors(model, x, pool=4, dims=[5, 1, 5], method="colored", chunk_size=2,
                               progress=lambda done, total: calls.append((done, total)))
    torch.testing.assert_close(subset, every[[5, 1, 5]])
    done, totals = [d for d, _ in calls], {t for _, t in calls}
    assert len(totals) == 1 and len(calls) >= 3
    assert done == sorted(done) and len(set(done)) == len(done) and done[-1] == calls[-1][1]
    assert calls[-1][1] > 3  # the colours and the three dimensions


def test_auto_chooses_colored_for_vgg_l17_at_128_px_and_dense_where_colours_cost_more():
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(10))
    model = vgg16_similarity(layer=17, proj_dim=100, image_size=128)
    assert factor_method(model, x, pool=8) == "colored"
    assert factor_method(model, x, pool=8, method="dense") == "dense"
    assert factor_method(vgg16_similarity(layer=17, proj_dim=2, image_size=128), x, pool=8) == "dense"  # h < colours
    small = vgg16_similarity(layer=5, proj_dim=4, image_size=32)
    assert factor_method(small, x[..., :32, :32], pool=1) == "dense"  # one patch per pixel: many colours
    assert factor_method(small, x[..., :32, :32], pool=1, method="colored") == "colored"


def test_auto_keeps_windowed_where_windows_are_small():
    """A crop of a rendered demo table: the digits' windows are small, so windowed factors stay the choice."""
    import numpy as np

    from corpus_index.synthetic import table_groups, table_page
    from corpus_index.synthetic.pages import sample_house_style

    rng = np.random.default_rng([0, 5])
    scan, _, _ = table_page(table_groups()[5], sample_house_style(rng, "EB Garamond"), 10, rng)
    model = bigram_network()
    page = model.preprocess(scan)
    top, left = page.shape[-2] // 3, page.shape[-1] // 4
    crop = page[..., top:top + 136, left:left + 184]
    assert factor_method(model, crop) == "windowed"
    assert factor_method(model, crop, method="colored") == "colored"
    coloured, dense = _both(model, crop, pool=8)
    assert dense.abs().max() > 0 and _rel_err(coloured, dense) <= TOLERANCE


# Crops: the lowest layers of the colour passes run on windows around each patch (colored.crop_pass).

def _crop_check(rule, layer, a, origins, size, seed=0):
    """The adjoint on crops (``rule.crop``) equals the whole-map adjoint inside the maps, on random u, for output
    windows at ``origins`` (some reaching outside the maps) and their input windows grown by the receptive field."""
    from bilrp_core.windowed import Window

    g = torch.Generator().manual_seed(seed)
    ctx = rule.prepare(layer, a)
    with torch.no_grad():
        u = torch.randn(len(origins), *a.shape[1:], dtype=a.dtype, generator=g)
        full = rule.adjoint(ctx, u)
        above = Window(torch.tensor(origins), size)
        below = above.grown(rule.footprint(ctx))
        crops = torch.stack([below.take(u[i:i + 1])[i] for i in range(len(origins))])
        cropped = rule.adjoint(rule.crop(ctx, below, above), crops)
        expected = torch.stack([above.take(full[i:i + 1])[i] for i in range(len(origins))])
    _, _, inside = above._grid(*full.shape[-2:])
    assert expected[inside[:, None].expand_as(expected)].abs().max() > 1e-6
    torch.testing.assert_close(torch.where(inside[:, None], cropped, 0.0), torch.where(inside[:, None], expected, 0.0),
                               rtol=1e-10, atol=1e-12)


ORIGINS = [[0, 0], [-2, 3], [2, -1], [4, 3], [1, 2]]  # inside, and beyond every side of a 7×6 output


@pytest.mark.parametrize("gamma", [0.0, 0.25])
@pytest.mark.parametrize("layer", [
    lambda: _conv(4, 5, 3, padding=1),
    lambda: _conv(4, 6, 3, stride=2, padding=2, dilation=2, bias=False),
    lambda: _conv(4, 6, (1, 3), groups=2, padding=(0, 1)),
])
def test_gamma_rule_adjoint_on_crops_equals_the_whole_maps(gamma, layer):
    layer = layer()
    out = layer(_activations(height=12, width=11)).shape[-2:]
    _crop_check(GammaRule(gamma), layer, _activations(height=12, width=11), ORIGINS, (min(4, out[0]), 3))


@pytest.mark.parametrize("layer", [lambda: _conv(3, 5, 3, padding=1), lambda: _conv(4, 6, 3, stride=2, groups=2)])
def test_zbox_rule_adjoint_on_crops_equals_the_whole_maps(layer):
    layer = layer()
    rule, a = _zbox_rule_and_pixels(layer.in_channels, height=12, width=11)
    _crop_check(rule, layer, a, ORIGINS, (3, 3))


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1), nn.MaxPool2d(3, stride=1)])
def test_max_pool_rule_adjoint_on_crops_equals_the_whole_maps(pool):
    a = torch.relu(torch.randn(1, 4, 14, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    _crop_check(MaxPoolRule(), pool, a, ORIGINS, (3, 2))


def test_elementwise_rules_adjoints_on_crops_equal_the_whole_maps():
    a = torch.randn(1, 4, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    _crop_check(GateRule(), nn.Threshold(0.3, 0.0), a, ORIGINS, (3, 3))
    _crop_check(PassRule(), nn.ReLU(), a, ORIGINS, (3, 3))


@pytest.mark.parametrize("footprint", [((3, 3), (1, 1), (1, 1), (1, 1)), ((2, 2), (2, 2), (1, 1), (0, 0)),
                                       ((3, 2), (2, 3), (2, 1), (2, 0))])
def test_reached_windows_hold_every_output_that_reads_the_window(footprint):
    """Brute force: the outputs whose conv reads an input of the window (a conv of its indicator with ones)."""
    from bilrp_core.windowed import Window

    (kernel, stride, dilation, padding), height, width = footprint, 15, 13
    origins = torch.tensor([[0, 0], [5, 4], [12, 10], [3, 11]])
    out = F.conv2d(torch.zeros(1, 1, height, width), torch.ones(1, 1, *kernel), None, stride, padding, dilation)
    reached = Window(origins, (3, 2)).reached(footprint, out.shape[-2:])
    reads = 0
    for origin, found in zip(origins.tolist(), reached.origin.tolist(), strict=True):
        indicator = torch.zeros(1, 1, height, width)
        indicator[..., origin[0]:origin[0] + 3, origin[1]:origin[1] + 2] = 1
        read = F.conv2d(indicator, torch.ones(1, 1, *kernel), None, stride, padding, dilation)[0, 0] > 0
        inside = torch.zeros_like(read)
        inside[found[0]:found[0] + reached.size[0], found[1]:found[1] + reached.size[1]] = True
        assert not (read & ~inside).any()
        assert 0 <= found[0] and found[0] + reached.size[0] <= max(out.shape[-2], reached.size[0])  # in the maps
        reads += bool(read.any())
    assert reads >= 3  # (stride 3 > kernel 2 skips the columns of one window: it reaches no output)


def _plan(model, x, pool, n_dims=8):
    rules, shapes = rules_for(model), []
    contexts, a_top = _forward_and_prepare(model, x, rules, shapes)
    return colored.plan_colors(rules, contexts, shapes + [a_top.shape], (pool, pool) if isinstance(pool, int)
                               else pool, n_dims)


@pytest.mark.parametrize("pool", [8, 6, (5, 3)])
def test_colour_maps_on_crops_equal_whole_maps_for_every_number_of_cropped_layers(pool):
    """VGG L17 at 64 px: crops up to each level (none, through pools, up to the split) give the same maps."""
    model = vgg16_similarity(layer=17, proj_dim=8, image_size=64)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(12))
    plan = _plan(model, x, pool)
    with torch.no_grad():
        whole = colored.colour_maps(dataclasses.replace(plan, crops=0), torch.float32, 5)
        for crops in range(1, plan.split + 1):
            cropped = colored.colour_maps(dataclasses.replace(plan, crops=crops), torch.float32, 5)
            assert _rel_err(cropped, whole) <= TOLERANCE, crops


@pytest.mark.parametrize("layer, size, pool", [(5, 64, 8), (10, 64, 8), (17, 64, 6), (17, 64, (5, 3))])
def test_vgg_colored_runs_on_crops_and_equals_dense(layer, size, pool, monkeypatch):
    """Without the copies' cost the plans of these small inputs crop some layers below the split; crops up to the
    split (CROP_WEIGHT 0) are exact too."""
    model = vgg16_similarity(layer=layer, proj_dim=8, image_size=size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(layer))
    monkeypatch.setattr(colored, "CROP_COPY", 0)
    assert 0 < _plan(model, x, pool).crops < _plan(model, x, pool).split
    assert _rel_err(*_both(model, x, gamma=0.25, pool=pool)) <= TOLERANCE
    monkeypatch.setattr(colored, "CROP_WEIGHT", 0.0)
    plan = _plan(model, x, pool)
    assert plan.crops == plan.split
    assert _rel_err(*_both(model, x, gamma={2: 1.0}, pool=pool)) <= TOLERANCE


def test_spatial_net_colored_on_crops_equals_dense(monkeypatch):
    """Stride, dilation, padding and an overlapping padded max-pool cropped (float64)."""
    monkeypatch.setattr(colored, "CROP_WEIGHT", 0.0)
    model = spatial_net(seed=1, bias=True, zb=True, normalize=True)
    x = torch.rand(1, 3, 21, 19, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rules, shapes = rules_for(model), []
    contexts, a_top = _forward_and_prepare(model, x, rules, shapes)
    assert colored.plan_colors(rules, contexts, shapes + [a_top.shape], (3, 3), 6).crops > 1
    coloured, dense = _both(model, x, gamma={3: 0.5, 7: 0.2}, pool=3)
    assert _rel_err(coloured, dense) <= 1e-12


def test_plan_crops_the_lowest_layers_of_vgg_l17_at_128_px_but_not_the_thin_bigram_layers(monkeypatch):
    """Crops pay for VGG's wide convs (estimated cost below the plan without crops), not for the bigram network's
    thin layers, where copying crops costs more than the multiply-adds they save."""
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(13))
    model = vgg16_similarity(layer=17, proj_dim=100, image_size=128)
    plan = _plan(model, x, 8, n_dims=100)
    monkeypatch.setattr(colored, "CROP_WEIGHT", 1e30)
    whole = _plan(model, x, 8, n_dims=100)
    assert 0 < plan.crops < plan.split and whole.crops == 0
    assert plan.colour_cost < whole.colour_cost and plan.cost < whole.cost < plan.dense_cost
    monkeypatch.undo()
    page = random_page(256, 320, blobs=8, seed=3)
    assert _plan(bigram_network(), page, 8, n_dims=33).crops == 0
    monkeypatch.setattr(colored, "CROP_COPY", 0)  # counting multiply-adds only, crops would look cheaper
    assert _plan(bigram_network(), page, 8, n_dims=33).crops > 0
