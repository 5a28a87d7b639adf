"""LRP rules in factored form (Sec. 3.3): each maps the relevance factors R_k,m of a layer's outputs to those of its
inputs, for all h feature dimensions m at once.

A rule is used in two steps, so that work that does not depend on m is done once per image:
``ctx = rule.prepare(layer, a)`` (the normalisers z from one forward pass of the modified layer), then
``rule.backward(ctx, R)`` for a chunk of relevance of shape (m, *a.shape[1:]) — one batched backward.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input

from .numerics import DEFAULT_EPS, safe_divide, stabilize


def linear_forward(layer, a, weight, bias):
    """The Conv2d/Linear ``layer`` applied to ``a`` with other parameters (e.g. ρ(w) of the γ rule)."""
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(f"{layer!r}: only zero padding is supported by the LRP rules")
        return F.conv2d(a, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(a, weight, bias)


def linear_transpose(layer, s, weight, input_shape):
    """Transpose of the linear map a -> layer(a; weight) applied to a batch s of output-shaped tensors."""
    if isinstance(layer, nn.Conv2d):
        size = (s.shape[0], *input_shape[1:])
        return conv2d_input(size, weight, s, layer.stride, layer.padding, layer.dilation, layer.groups)
    return s @ weight


@dataclass
class GammaRule:
    """LRP-γ for a Conv2d/Linear layer followed by ReLU (Eq. 5): ρ(p) = p + γ·p⁺ on weights and biases.

    R_j = a_j · Σ_k ρ(w_jk) R_k / z_k with z_k = Σ_j a_j ρ(w_jk) + ρ(b_k). γ = 0 is LRP-0.
    """

    gamma: float = 0.0
    eps: float = DEFAULT_EPS

    def _rho(self, p):
        return None if p is None else p + self.gamma * p.clamp(min=0)

    def prepare(self, layer, a):
        weight = self._rho(layer.weight)
        z = linear_forward(layer, a, weight, self._rho(layer.bias))
        return {"layer": layer, "a": a, "weight": weight, "z": stabilize(z, self.eps)}

    def backward(self, ctx, relevance):
        s = relevance / ctx["z"]
        return ctx["a"] * linear_transpose(ctx["layer"], s, ctx["weight"], ctx["a"].shape)


@dataclass
class ZBoxRule:
    """The z^B rule for the pixel layer, with box bounds low ≤ x ≤ high from the input normalisation.

    R_i = Σ_k (x_i w_ik − l_i w⁺_ik − h_i w⁻_ik) / z_k · R_k, z_k the sum over i of the numerators plus b_k.
    """

    low: torch.Tensor
    high: torch.Tensor
    eps: float = DEFAULT_EPS

    def prepare(self, layer, a):
        low = self.low.to(a).expand_as(a)
        high = self.high.to(a).expand_as(a)
        w_pos, w_neg = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        z = (
            linear_forward(layer, a, layer.weight, layer.bias)
            - linear_forward(layer, low, w_pos, None)
            - linear_forward(layer, high, w_neg, None)
        )
        return {"layer": layer, "a": a, "low": low, "high": high, "w_pos": w_pos, "w_neg": w_neg,
                "z": stabilize(z, self.eps)}

    def backward(self, ctx, relevance):
        s = relevance / ctx["z"]
        layer, shape = ctx["layer"], ctx["a"].shape
        return (
            ctx["a"] * linear_transpose(layer, s, layer.weight, shape)
            - ctx["low"] * linear_transpose(layer, s, ctx["w_pos"], shape)
            - ctx["high"] * linear_transpose(layer, s, ctx["w_neg"], shape)
        )


@dataclass
class GradientRule:
    """Redistribution along the gradient for positively homogeneous layers (Eq. 6).

    R_j = a_j · Σ_k [∇a_k]_j R_k / a_k; by Euler's theorem Σ_j a_j [∇a_k]_j = a_k, so this conserves relevance.
    Outputs with a_k = 0 carry no relevance and send none.
    """

    def prepare(self, layer, a):
        with torch.enable_grad():
            a_in = a.detach().requires_grad_(True)
            out = layer(a_in)
        return {"a": a, "a_in": a_in, "out": out}

    def backward(self, ctx, relevance):
        out = ctx["out"]
        s = safe_divide(relevance, out)
        (grad,) = torch.autograd.grad(out, ctx["a_in"], s.unsqueeze(1), retain_graph=True,
                                      is_grads_batched=True)
        return ctx["a"] * grad.squeeze(1)


class MaxPoolRule(GradientRule):
    """The gradient rule (Eq. 6) for nn.MaxPool2d, with the gradient applied as a scatter of the max indices.

    Same numbers as :class:`GradientRule` (the gradient of a max is the indicator of its arg-max), but the
    batched backward is one scatter-add instead of a loop that autograd's batching falls back to.
    """

    def prepare(self, layer, a):
        out, indices = F.max_pool2d(a, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                    ceil_mode=layer.ceil_mode, return_indices=True)
        return {"a": a, "out": out, "indices": indices.flatten(2)}

    def backward(self, ctx, relevance):
        out, a = ctx["out"], ctx["a"]
        s = safe_divide(relevance, out)
        m, channels = s.shape[0], a.shape[1]
        grad = torch.zeros(m, channels, a.shape[2] * a.shape[3], dtype=s.dtype, device=s.device)
        grad.scatter_add_(2, ctx["indices"].expand(m, -1, -1), s.flatten(2))
        return a * grad.view(m, *a.shape[1:])


class GateRule(GradientRule):
    """The gradient rule (Eq. 6) for elementwise gates out = a · [a > t] (e.g. a detection threshold).

    Piecewise the gate is the identity or zero, so Euler's identity Σ_j a_j [∇out_k]_j = out_k holds and relevance
    passes unchanged where the gate is open; where it is shut the output is zero and carries none.
    """

    def prepare(self, layer, a):
        return {"open": layer(a) != 0}

    def backward(self, ctx, relevance):
        return relevance * ctx["open"]


class SignalTakeAllRule:
    """Signal-take-all for a gated layer out = ReLU(signal(a)) · g(a) (Arras et al., 2017, LRP for LSTMs).

    All relevance of the output goes to the signal branch, none to the gate: through the gate and the ReLU
    unchanged, then LRP-γ through the ``signal`` conv. Conservative, since the γ-rule is, and the gate only decides
    how much of the signal is let through. Used by :class:`bilrp_core.detector.GatedDigitMaps`.
    """

    def __init__(self, gamma=0.0, eps=DEFAULT_EPS):
        self.signal_rule = GammaRule(gamma, eps)

    def prepare(self, layer, a):
        return self.signal_rule.prepare(layer.signal, a)

    def backward(self, ctx, relevance):
        return self.signal_rule.backward(ctx, relevance)


class PassRule:
    """ReLU, Dropout (eval) and Identity: relevance passes unchanged (the rule below it used the ReLU output)."""

    def prepare(self, layer, a):
        return {}

    def backward(self, ctx, relevance):
        return relevance


class ReshapeRule:
    """Flatten/Unflatten: relevance is reshaped back to the input's shape."""

    def prepare(self, layer, a):
        return {"shape": a.shape[1:]}

    def backward(self, ctx, relevance):
        return relevance.reshape(relevance.shape[0], *ctx["shape"])
