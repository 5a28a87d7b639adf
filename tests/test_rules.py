"""Every rule against a slow reference: the explicit per-layer matrix of Eq. (2)/(3) applied to one relevance vector."""

import pytest
import torch
from torch import nn

from bilrp_core.layers import GlobalSumPool, MaxOverAxis, MinOverAxis, MinPool2d, Shift, ShiftedCopies
from bilrp_core.reference import _layer_matrix
from bilrp_core.rules import GammaRule, GradientRule, MaxPoolRule, ZBoxRule


def _check(rule, layer, a, seed=0):
    """rule.backward for 3 relevance vectors equals M @ R with M the reference matrix (d_in, d_out)."""
    with torch.no_grad():
        out = layer(a)
    g = torch.Generator().manual_seed(seed)
    relevance = torch.rand(3, *out.shape[1:], generator=g, dtype=a.dtype) * (out != 0)
    ctx = rule.prepare(layer, a)
    fast = rule.backward(ctx, relevance)
    matrix = _layer_matrix(rule, layer, a)
    slow = (matrix @ relevance.reshape(3, -1).T).T.reshape(fast.shape)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    return fast, relevance


@pytest.mark.parametrize("gamma", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("stride", [1, 2])
def test_gamma_rule_conv(gamma, stride):
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3, padding=1, stride=stride).double()
    a = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    _check(GammaRule(gamma), layer, a)


def test_gamma_rule_linear_conserves_without_bias():
    torch.manual_seed(1)
    layer = nn.Linear(7, 5, bias=False).double()
    a = torch.rand(1, 7, dtype=torch.float64)
    fast, relevance = _check(GammaRule(0.3, eps=1e-15), layer, a)
    torch.testing.assert_close(fast.sum(dim=1), relevance.sum(dim=1))


def test_gamma_rule_changes_with_gamma():
    torch.manual_seed(2)
    layer = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
    a = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    r = torch.rand(1, 3, 5, 5, dtype=torch.float64)
    r0 = GammaRule(0.0).backward(GammaRule(0.0).prepare(layer, a), r)
    r1 = GammaRule(1.0).backward(GammaRule(1.0).prepare(layer, a), r)
    assert not torch.allclose(r0, r1)


def test_zbox_rule_against_reference_and_conserves():
    torch.manual_seed(3)
    layer = nn.Conv2d(3, 4, 3, padding=1, bias=False).double()
    a = torch.rand(1, 3, 6, 6, dtype=torch.float64) * 2 - 1
    rule = ZBoxRule(-torch.ones(1, 3, 1, 1, dtype=torch.float64), torch.ones(1, 3, 1, 1, dtype=torch.float64))
    fast, relevance = _check(rule, layer, a)
    torch.testing.assert_close(fast.sum(dim=(1, 2, 3)), relevance.sum(dim=(1, 2, 3)))


@pytest.mark.parametrize("layer", [
    nn.MaxPool2d(2), nn.AvgPool2d(2), MinPool2d(2), Shift(1, -2), ShiftedCopies([(0, 0), (0, 2)]),
    nn.Sequential(ShiftedCopies([(0, 0), (1, 1)]), MinOverAxis(1)), nn.Sequential(ShiftedCopies([(0, 0), (0, 1)]),
                                                                               MaxOverAxis(1)),
    GlobalSumPool(),
], ids=lambda layer: type(layer).__name__)
def test_gradient_rule(layer):
    a = torch.rand(1, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    _check(GradientRule(), layer, a)


def test_maxpool_rule_equals_generic_gradient_rule_with_overlap():
    layer = nn.MaxPool2d(3, stride=2, padding=1)
    a = torch.rand(1, 2, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    fast, relevance = _check(MaxPoolRule(), layer, a)
    generic = GradientRule().backward(GradientRule().prepare(layer, a), relevance)
    torch.testing.assert_close(fast, generic)


@pytest.mark.parametrize("unigrams", [True, False])
def test_bigram_pooling_rule_is_the_gradient_rule(unigrams):
    from bilrp_core.bigram import BigramPooling

    layer = BigramPooling(shifts=(1, 2), unigrams=unigrams).double()
    g = torch.Generator().manual_seed(6)
    a = torch.rand(1, 10, 3, 7, dtype=torch.float64, generator=g) * (torch.rand(1, 10, 3, 7, generator=g) > 0.4)
    rule = layer.lrp_rule()
    fast, relevance = _check(rule, layer, a)
    generic = GradientRule().backward(GradientRule().prepare(layer, a), relevance)
    torch.testing.assert_close(fast, generic)
    torch.testing.assert_close(fast.sum(dim=(1, 2, 3)), relevance.sum(dim=1))
