"""Factored BiLRP against the quadratic reference, conservation (Prop. 1), γ = 0 (Prop. 2) and API contracts."""

import pytest
import torch
from torch import nn

import bilrp_core
from bilrp_core import UnsupportedLayerError, bilrp, hessian_product, pair_matrix, relevance_factors
from bilrp_core.attribution import relevance_factors_loop
from bilrp_core.reference import bilrp_reference
from tests.conftest import small_conv_net


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("gamma", [None, 0.0, 0.05, 0.5, 2.0])
@pytest.mark.parametrize("pool", [1, 2, 4])
def test_factored_equals_quadratic_reference(pair, gamma, pool):
    model = small_conv_net(seed=1)
    x, x2 = pair
    fast = bilrp(model, x, x2, gamma=gamma, pool=pool)
    slow = bilrp_reference(model, x, x2, gamma=gamma, pool=pool)
    assert fast.shape == slow.shape == (8 // pool,) * 4
    assert _rel_err(fast, slow) <= 1e-5


def test_reference_sees_a_wrong_rule(pair):
    """The reference is not trivially equal: a different γ gives a different answer."""
    model = small_conv_net(seed=1)
    x, x2 = pair
    assert _rel_err(bilrp(model, x, x2, gamma=0.5, pool=2), bilrp_reference(model, x, x2, gamma=0.1, pool=2)) > 1e-3


@pytest.mark.parametrize("gamma", [0.0, 0.1, 1.0])
def test_proposition_1_conservation_without_biases(pair, gamma):
    model = small_conv_net(seed=2, bias=False)
    x, x2 = pair
    explained = bilrp(model, x, x2, gamma=gamma, pool=2).sum()
    y = model.similarity(x, x2)
    assert abs(explained - y) <= 1e-4 * abs(y)


def test_biases_absorb_relevance(pair):
    model = small_conv_net(seed=2, bias=True)
    x, x2 = pair
    assert abs(bilrp(model, x, x2, gamma=0.1, pool=2).sum() - model.similarity(x, x2)) > 1e-6


def test_factors_sum_to_phi_without_biases(pair):
    model = small_conv_net(seed=3, bias=False)
    x, _ = pair
    factors = relevance_factors(model, x, gamma=0.3, pool=2)
    torch.testing.assert_close(factors.sum(dim=(1, 2)), model(x)[0], rtol=1e-6, atol=1e-9)


def test_proposition_2_gamma_zero_is_hessian_times_product(pair):
    model = small_conv_net(seed=4, bias=False, zb=False)
    x, x2 = pair
    ours = bilrp(model, x, x2, gamma=0.0, pool=2)
    theirs = hessian_product(model, x, x2, pool=2)
    assert _rel_err(ours, theirs) <= 1e-6
    assert _rel_err(bilrp(model, x, x2, gamma=0.5, pool=2), theirs) > 1e-3


@pytest.mark.parametrize("chunk_size", [1, 4])
def test_batched_equals_one_dimension_at_a_time(pair, chunk_size):
    model = small_conv_net(seed=5)
    x, _ = pair
    batched = relevance_factors(model, x, gamma=0.25, pool=2)
    torch.testing.assert_close(relevance_factors(model, x, gamma=0.25, pool=2, chunk_size=chunk_size), batched)
    torch.testing.assert_close(relevance_factors_loop(model, x, gamma=0.25, pool=2), batched)


def test_swapping_images_transposes_the_explanation(pair):
    model = small_conv_net(seed=6)
    x, x2 = pair
    forward = bilrp(model, x, x2, pool=2)
    backward = bilrp(model, x2, x, pool=2)
    torch.testing.assert_close(backward, forward.permute(2, 3, 0, 1))


def test_pair_matrix_is_the_outer_product_sum():
    a, b = torch.randn(5, 2, 3), torch.randn(5, 4, 1)
    expected = sum(torch.einsum("ij,kl->ijkl", a[m], b[m]) for m in range(5))
    torch.testing.assert_close(pair_matrix(a, b), expected)
    with pytest.raises(ValueError, match="disagree on h"):
        pair_matrix(a, torch.randn(4, 2, 2))


def test_pooling_keeps_the_sum_when_the_image_is_not_divisible(pair):
    model = small_conv_net(seed=7, bias=False)
    x, x2 = pair
    out = bilrp(model, x, x2, gamma=0.2, pool=3)
    assert out.shape == (3, 3, 3, 3)
    assert abs(out.sum() - model.similarity(x, x2)) <= 1e-4 * abs(model.similarity(x, x2))


def test_per_layer_gamma_dict_and_bad_gamma(pair):
    model = small_conv_net(seed=8)
    x, x2 = pair
    default = bilrp(model, x, x2, pool=2)
    torch.testing.assert_close(bilrp(model, x, x2, gamma={3: 0.25, 8: 0.1}, pool=2), default)
    assert not torch.allclose(bilrp(model, x, x2, gamma={3: 1.0}, pool=2), default)
    with pytest.raises(ValueError, match="not Conv2d/Linear"):
        bilrp(model, x, x2, gamma={1: 0.5})
    with pytest.raises(ValueError, match="≥ 0"):
        bilrp(model, x, x2, gamma=-0.1)


def test_unsupported_layer_names_it():
    model = bilrp_core.SimilarityModel(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Tanh()), key="bad")
    with pytest.raises(UnsupportedLayerError, match=r"layer 1 \(Tanh\(\)\) of type Tanh"):
        relevance_factors(model, torch.rand(1, 3, 6, 6))


def test_rejects_a_batch():
    model = small_conv_net(seed=9)
    with pytest.raises(ValueError, match="one input"):
        relevance_factors(model, torch.rand(2, 3, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("project", [True, False])
def test_normalised_features_explain_the_cosine_exactly(pair, project):
    model = small_conv_net(seed=10, bias=False)
    if not project:
        model.projection = None
    model.normalize = True
    x, x2 = pair
    with torch.no_grad():
        assert model(x).norm().item() == pytest.approx(1.0)
        cosine = model.similarity(x, x2)
    out = bilrp(model, x, x2, gamma=0.3, pool=2)
    assert out.sum().item() == pytest.approx(cosine.item(), rel=1e-5)
    assert _rel_err(out, bilrp_reference(model, x, x2, gamma=0.3, pool=2)) <= 1e-5
