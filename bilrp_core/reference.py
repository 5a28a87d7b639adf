"""Slow reference: the quadratic BiLRP propagation rules of Eq. (2) and (3), for small networks and tests only.

Relevance is held as the full matrix R_jj' over pairs of neurons of the two branches and propagated layer by
layer as R_jj' = Σ_kk' (q_jk / Σ_j q_jk)(q'_j'k' / Σ_j' q'_j'k') R_kk', with the contributions q read off explicit
Jacobians: q_jk = a_j ρ(w_jk) for linear/ReLU layers (Eq. 2) and q_jk = a_j [∇a_k]_j for positively homogeneous
layers (Eq. 3, where ∇²(a_k a_k') factorises across branches). Nothing here shares code with the factored path
except the choice of rule per layer.
"""

import torch
from torch.autograd.functional import jacobian

from .attribution import sum_pool
from .bigram import BigramPoolingRule
from .composite import rules_for
from .model import norm_scale
from .numerics import safe_divide, stabilize
from .rules import GammaRule, GradientRule, PassRule, ReshapeRule, SignalTakeAllRule, ZBoxRule, linear_forward


def _jac(fn, a):
    """Dense Jacobian (d_out, d_in) of fn at a (batch of one)."""
    j = jacobian(fn, a)
    d_in = a[0].numel()
    return j.reshape(-1, d_in)


def _bias_of(layer, a, weight, bias):
    """The bias term of each output neuron, flattened (0.0 without a bias)."""
    if bias is None:
        return 0.0
    return (linear_forward(layer, a, weight, bias) - linear_forward(layer, a, weight, None)).reshape(-1)


def _gamma_matrix(rule, layer, a):
    """Eq. (2) with q_jk = a_j ρ(w_jk), ρ(p) = p + γ p⁺, and the stabilised z_k = Σ_j q_jk + ρ(b_k)."""
    weight = layer.weight + rule.gamma * layer.weight.clamp(min=0)
    bias = None if layer.bias is None else layer.bias + rule.gamma * layer.bias.clamp(min=0)
    jac = _jac(lambda t: linear_forward(layer, t, weight, None), a)
    q = a.reshape(-1)[:, None] * jac.T
    return q / stabilize(q.sum(dim=0) + _bias_of(layer, a, weight, bias), rule.eps)


def _zbox_matrix(rule, layer, a):
    """Eq. (2) with the z^B contributions q_ik = x_i w_ik − l_i w⁺_ik − h_i w⁻_ik."""
    low = rule.low.to(a).expand_as(a).reshape(-1)
    high = rule.high.to(a).expand_as(a).reshape(-1)
    jac = _jac(lambda t: linear_forward(layer, t, layer.weight, None), a)
    q = a.reshape(-1)[:, None] * jac.T - low[:, None] * jac.clamp(min=0).T - high[:, None] * jac.clamp(max=0).T
    return q / stabilize(q.sum(dim=0) + _bias_of(layer, a, layer.weight, layer.bias), rule.eps)


def _gradient_matrix(layer, a):
    """Eq. (3): q_jk = a_j [∇a_k]_j, divided by literally Σ_j q_jk (not a_k via Euler's theorem)."""
    q = a.reshape(-1)[:, None] * _jac(layer, a).T
    return safe_divide(q, q.sum(dim=0))


def _layer_matrix(rule, layer, a):
    """The matrix M (d_in, d_out) with R_in = M R_out M'^T for one branch; None for the identity.

    Raises
    ------
    TypeError
        For a rule this reference has no equation for: treating it as some other rule would make the
        comparison with the factored path pass or fail for the wrong reason.
    """
    if isinstance(rule, GammaRule):
        return _gamma_matrix(rule, layer, a)
    if isinstance(rule, ZBoxRule):
        return _zbox_matrix(rule, layer, a)
    if isinstance(rule, SignalTakeAllRule):  # gate and ReLU pass relevance unchanged: the signal conv's γ matrix
        return _gamma_matrix(rule.signal_rule, layer.signal, a)
    if isinstance(rule, (PassRule, ReshapeRule)):
        return None  # the identity on flattened neurons
    if isinstance(rule, GradientRule) or (isinstance(rule, BigramPoolingRule) and not layer.aligned):
        return _gradient_matrix(layer, a)  # plain bigram pooling is the gradient rule (tested in test_rules)
    raise TypeError(f"the quadratic reference has no equation for {type(rule).__name__} (layer {layer!r}); "
                    "add one before comparing the factored path with it")


def _branch_matrices(model, x, rules):
    matrices, a = [], x
    for layer, rule in zip(model.layers, rules, strict=True):
        matrices.append(_layer_matrix(rule, layer, a))
        a = layer(a)
    feats = a.reshape(-1)
    scale = float(norm_scale(model.unnormalized(x))[0, 0]) if model.normalize else 1.0
    if model.projection is None:
        return matrices, feats * scale, None
    weight = model.projection.weight
    phi = weight @ feats
    top = safe_divide(feats[:, None] * weight.T, phi)  # LRP-0 through the projection
    return matrices, phi * scale, top


def bilrp_reference(model, x, x2, gamma=None, pool=8):
    """BiLRP by the quadratic rules; same output as :func:`bilrp_core.bilrp` (H1/p, W1/p, H2/p, W2/p)."""
    rules = rules_for(model, gamma)
    with torch.no_grad():
        m1, phi1, top1 = _branch_matrices(model, x, rules)
        m2, phi2, top2 = _branch_matrices(model, x2, rules)
        relevance = torch.diag(phi1 * phi2)  # y = Σ_m φ_m φ'_m: the top relevance is diagonal
        if top1 is not None:
            relevance = top1 @ relevance @ top2.T
        for a, b in zip(reversed(m1), reversed(m2), strict=True):
            if a is not None:
                relevance = a @ relevance @ b.T
        c, h, w = x.shape[1:]
        c2, h2, w2 = x2.shape[1:]
        pixel = relevance.reshape(c, h, w, c2 * h2 * w2).permute(3, 0, 1, 2)
        left = sum_pool(pixel, pool)  # (d', P1h, P1w)
        _, p1h, p1w = left.shape
        right = left.reshape(c2, h2, w2, p1h * p1w).permute(3, 0, 1, 2)
        pooled = sum_pool(right, pool)  # (P1, P2h, P2w)
        return pooled.reshape(p1h, p1w, *pooled.shape[1:])
