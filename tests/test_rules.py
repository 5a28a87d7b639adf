"""Every rule against a slow reference: the explicit per-layer matrix of Eq. (2)/(3) applied to one relevance vector."""

import pytest
import torch
from torch import nn

from bilrp_core.layers import GlobalSumPool, MaxOverAxis, MinOverAxis, MinPool2d, Shift, ShiftedCopies
from bilrp_core.reference import _layer_matrix
from bilrp_core.rules import GammaRule, GateRule, GradientRule, MaxPoolRule, ZBoxRule


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


def test_gate_rule_against_reference_passes_relevance_only_where_open():
    from bilrp_core.bigram import DetectionThreshold

    layer = DetectionThreshold(0.5)
    a = torch.rand(1, 3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    fast, relevance = _check(GateRule(), layer, a)
    generic = GradientRule().backward(GradientRule().prepare(layer, a), relevance)
    torch.testing.assert_close(fast, generic)
    assert (fast[:, (a <= 0.5)[0]] == 0).all() and (a <= 0.5).any()
    torch.testing.assert_close(fast.sum(dim=(1, 2, 3)), relevance.sum(dim=(1, 2, 3)))


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


def _aligned_reference(layer, a, relevance):
    """Aligned bigram routing written as loops over outputs, locations and shifts (no shared code)."""
    _, channels, height, width = a.shape
    out = torch.zeros(relevance.shape[0], channels, height, width, dtype=a.dtype)
    for o in range(relevance.shape[1]):
        pair = o if o < 100 else (o - 100 if o < 200 else o - 100)
        j, k = int(layer.first[pair]), int(layer.second[pair])
        entries, total = [], 0.0
        for y in range(height):
            for x in range(width):
                if pair >= 100:  # a unigram: its own map, no shift
                    value, place = float(a[0, j, y, x]), (j, y, x)
                else:  # best shift; on ties the first (as torch.max), where the second digits of copies differ
                    value, tau = -1.0, None
                    for t in layer.shifts:
                        v = min(float(a[0, j, y, x]), float(a[0, k, y, x + t])) if x + t < width else 0.0
                        if v > value:
                            value, tau = v, t
                    place = (j, y, x) if o < 100 else (k, y, min(x + tau, width - 1))
                entries.append((value, place))
                total += value
        for value, (c, y, x) in entries:
            if total > 0:
                out[:, c, y, x] += relevance[:, o] * value / total
    return out


def test_aligned_bigram_pooling_keeps_the_similarity_and_routes_each_copy_to_its_digit():
    from bilrp_core.bigram import BigramPooling

    plain, aligned = BigramPooling(shifts=(1, 2)).double(), BigramPooling(shifts=(1, 2), aligned=True).double()
    g = torch.Generator().manual_seed(7)
    a, b = (torch.rand(1, 10, 3, 7, dtype=torch.float64, generator=g) * (torch.rand(1, 10, 3, 7, generator=g) > 0.4)
            for _ in range(2))
    torch.testing.assert_close((aligned(a) * aligned(b)).sum(), (plain(a) * plain(b)).sum())
    assert aligned(a).shape == (1, 210)
    relevance = torch.rand(3, 210, dtype=torch.float64, generator=g) * (aligned(a)[0] != 0)
    rule = aligned.lrp_rule()
    fast = rule.backward(rule.prepare(aligned, a), relevance)
    torch.testing.assert_close(fast, _aligned_reference(aligned, a, relevance))
    torch.testing.assert_close(fast.sum(dim=(1, 2, 3)), relevance.sum(dim=1))
    # bigram "23": the first copy's relevance lands only on map 2, the second copy's only on map 3
    only = torch.zeros(1, 210, dtype=torch.float64)
    only[0, 23] = 1.0
    assert rule.backward(rule.prepare(aligned, a), only)[0, 2].sum().item() == pytest.approx(1.0)
    only[0, 23], only[0, 123] = 0.0, 1.0
    assert rule.backward(rule.prepare(aligned, a), only)[0, 3].sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("aligned", [False, True])
def test_rooted_bigram_pooling_passes_relevance_through_the_root(aligned):
    """ψ = √φ; LRP treats the root like any monotone activation, so the shares of the plain sums split it."""
    from bilrp_core.bigram import BigramPooling

    plain = BigramPooling(shifts=(1, 2), aligned=aligned).double()
    rooted = BigramPooling(shifts=(1, 2), aligned=aligned, sqrt=True).double()
    g = torch.Generator().manual_seed(9)
    a = torch.rand(1, 10, 3, 7, dtype=torch.float64, generator=g) * (torch.rand(1, 10, 3, 7, generator=g) > 0.4)
    scale = 0.5 ** 0.5 if aligned else 1.0  # the aligned copies are scaled after the root
    expected = plain(a) if not aligned else torch.cat([plain(a)[:, :100] / scale, plain(a)[:, 200:]], dim=1)
    roots = expected.sqrt()
    if aligned:
        roots = torch.cat([roots[:, :100] * scale, roots[:, :100] * scale, roots[:, 100:]], dim=1)
    torch.testing.assert_close(rooted(a), roots)
    relevance = torch.rand(2, rooted(a).shape[1], dtype=torch.float64, generator=g) * (rooted(a)[0] != 0)
    rule = rooted.lrp_rule()
    fast = rule.backward(rule.prepare(rooted, a), relevance)
    reference_rule = plain.lrp_rule()
    torch.testing.assert_close(fast, reference_rule.backward(reference_rule.prepare(plain, a), relevance))
    torch.testing.assert_close(fast.sum(dim=(1, 2, 3)), relevance.sum(dim=1))


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_signal_take_all_rule_gives_everything_to_the_signal_conv(gamma):
    """Against the reference (the signal conv's γ matrix), conservative, and blind to the gate's weights."""
    from bilrp_core.detector import GatedDigitMaps
    from bilrp_core.rules import SignalTakeAllRule

    torch.manual_seed(9)
    layer = GatedDigitMaps(4, context=1).double()
    a = torch.rand(1, 4, 5, 6, dtype=torch.float64)
    fast, relevance = _check(SignalTakeAllRule(gamma), layer, a)
    torch.testing.assert_close(fast.sum(dim=(1, 2, 3)), relevance.sum(dim=(1, 2, 3)))  # bias-free signal
    by_hand = GammaRule(gamma).backward(GammaRule(gamma).prepare(layer.signal, a), relevance)
    torch.testing.assert_close(fast, by_hand)
    with torch.no_grad():
        before = layer(a)
        for p in layer.gate.parameters():
            p.mul_(-3.0)  # another gate: other outputs, but the same split of whatever relevance arrives
        assert not torch.allclose(layer(a), before)
    rule = SignalTakeAllRule(gamma)
    torch.testing.assert_close(rule.backward(rule.prepare(layer, a), relevance), fast)


class _HalfRule:
    """A made-up rule (half of the relevance passes) that the reference has no equation for."""

    def prepare(self, layer, a):
        return {}

    def backward(self, ctx, relevance):
        return relevance / 2


def test_reference_refuses_a_rule_it_has_no_equation_for():
    """An unknown rule is an error, not silently the gradient rule (the comparison would then mean nothing)."""
    from bilrp_core.bigram import BigramPooling, BigramPoolingRule

    a = torch.rand(1, 10, 3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    with pytest.raises(TypeError, match="_HalfRule"):
        _layer_matrix(_HalfRule(), nn.ReLU(), a)
    with pytest.raises(TypeError, match="BigramPoolingRule"):  # aligned routing is not the gradient rule
        _layer_matrix(BigramPoolingRule(), BigramPooling(shifts=(1, 2), aligned=True).double(), a)


def test_safe_divide_and_stabilize():
    from bilrp_core.numerics import safe_divide, stabilize

    z = torch.tensor([-2.0, 0.0, 4.0])
    torch.testing.assert_close(safe_divide(torch.tensor([1.0, 5.0, 2.0]), z), torch.tensor([-0.5, 0.0, 0.5]))
    torch.testing.assert_close(stabilize(z, 1e-3), torch.tensor([-2.001, 1e-3, 4.001]))  # zero counts positive
