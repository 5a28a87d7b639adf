"""LRP rules in factored form (Sec. 3.3): each maps the relevance factors R_k,m of a layer's outputs to those of its
inputs, for all h feature dimensions m at once.

A rule is used in two steps, so that work that does not depend on m is done once per image:
``ctx = rule.prepare(layer, a)`` (the normalisers z from one forward pass of the modified layer), then
``rule.backward(ctx, R)`` for a chunk of relevance of shape (m, *a.shape[1:]) — one batched backward. A rule may
also offer ``rule.prepare_forward(layer, a)`` -> (ctx, layer output), when its context already holds the output.

Rules whose relevance stays local (each input receives relevance only from the outputs whose receptive field holds
it) also say so, for the windowed factors of :mod:`bilrp_core.windowed`: ``rule.footprint(ctx)`` gives the
layer's (kernel, stride, dilation, padding), :data:`SAME` for an elementwise layer, or None when the rule is not
local (e.g. a Linear layer over flattened maps); ``rule.crop(ctx, below, above)`` crops the context, computed on the
whole input, to a batch of windows of the layer's input (``below``) and output (``above``), so that ``backward``
runs unchanged on the crops. Crops reuse the normalisers of the one full forward pass: nothing is recomputed on a
window, so windowed and dense factors are the same numbers.

Rules that are local may also offer ``rule.adjoint(ctx, u)``, the transpose of the linear map ``backward(ctx, ·)``
(u input-shaped with a batch dimension, the result output-shaped): ⟨backward(ctx, r), u⟩ = ⟨r, adjoint(ctx, u)⟩,
for contexts of the whole input, and on crops (``crop``: u on the windows ``below``, the result on ``above``) for the
rules offering both. The coloured factors of :mod:`bilrp_core.colored` run it forward through the bottom of the
network, on crops around each patch in the lowest layers.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input
from torch.nn.modules.utils import _pair

from .numerics import DEFAULT_EPS, safe_divide, stabilize


def linear_forward(layer, a, weight, bias, padding=None):
    """The Conv2d/Linear ``layer`` applied to ``a`` with other parameters (e.g. ρ(w) of the γ rule).

    ``padding`` replaces the conv's own (a cropped window that holds the layer's border is convolved without).
    """
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(f"{layer!r}: only zero padding is supported by the LRP rules")
        padding = layer.padding if padding is None else padding
        return F.conv2d(a, weight, bias, layer.stride, padding, layer.dilation, layer.groups)
    return F.linear(a, weight, bias)


#: Footprint of an elementwise layer: its input window is its output window.
SAME = "same"
#: No padding: the transposed conv of a cropped window, whose input crop already holds the layer's border.
NO_PADDING = (0, 0)


def linear_transpose(layer, s, weight, input_shape, padding=None):
    """Transpose of the linear map a -> layer(a; weight) applied to a batch s of output-shaped tensors.

    ``padding`` replaces the conv's own (a cropped window is transposed without padding, see :meth:`GammaRule.crop`).
    """
    if isinstance(layer, nn.Conv2d):
        size = (s.shape[0], *input_shape[1:])
        padding = layer.padding if padding is None else padding
        return conv2d_input(size, weight, s, layer.stride, padding, layer.dilation, layer.groups)
    return s @ weight


def normaliser(ctx, eps):
    """The stabilised normaliser z of a γ or z^B context, computed from the raw z on first use.

    Stabilised when first needed, not in ``prepare``: windowed factors stabilise only their crops (the same
    elementwise numbers), and skip a pass over every conv output of the page.
    """
    if "z" not in ctx:
        ctx["z"] = stabilize(ctx["z_raw"], eps)
    return ctx["z"]


def conv_footprint(layer):
    """(kernel, stride, dilation, padding) of a Conv2d as pairs; None for a Linear layer or string padding."""
    if not isinstance(layer, nn.Conv2d) or isinstance(layer.padding, str):
        return None
    return layer.kernel_size, layer.stride, layer.dilation, layer.padding


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
        return {"layer": layer, "a": a, "weight": weight, "z_raw": z}

    def backward(self, ctx, relevance):
        s = relevance / normaliser(ctx, self.eps)
        return ctx["a"] * linear_transpose(ctx["layer"], s, ctx["weight"], ctx["a"].shape, ctx.get("padding"))

    def adjoint(self, ctx, u):
        """Transpose of ``backward``: R_in = a ⊙ Tᵀ(R_out / z) gives u_out = T(a ⊙ u) / z, T the layer with ρ(w).

        T has no bias: the bias enters z only, and z is fixed by the forward pass. Runs on crops too (``crop``).
        """
        return (linear_forward(ctx["layer"], ctx["a"] * u, ctx["weight"], None, ctx.get("padding"))
                / normaliser(ctx, self.eps))

    def footprint(self, ctx):
        return conv_footprint(ctx["layer"])

    def crop(self, ctx, below, above):
        return {"layer": ctx["layer"], "a": below.take(ctx["a"]), "weight": ctx["weight"],
                "z": stabilize(above.take(ctx["z_raw"], 1.0), self.eps), "padding": NO_PADDING}


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
        return {"layer": layer, "a": a, "low": low, "high": high, "w_pos": w_pos, "w_neg": w_neg, "z_raw": z}

    def backward(self, ctx, relevance):
        s = relevance / normaliser(ctx, self.eps)
        layer, shape, padding = ctx["layer"], ctx["a"].shape, ctx.get("padding")
        return (
            ctx["a"] * linear_transpose(layer, s, layer.weight, shape, padding)
            - ctx["low"] * linear_transpose(layer, s, ctx["w_pos"], shape, padding)
            - ctx["high"] * linear_transpose(layer, s, ctx["w_neg"], shape, padding)
        )

    def adjoint(self, ctx, u):
        """Transpose of ``backward``: u_out = [T_w(x ⊙ u) − T_w⁺(low ⊙ u) − T_w⁻(high ⊙ u)] / z (no bias).

        With one group the three maps are one conv of the stacked (x, low, high) ⊙ u with (w, −w⁺, −w⁻): the
        pixel layer's few input channels make three thin convs slower than one three times as wide. Runs on crops
        too (``crop``).
        """
        layer, padding = ctx["layer"], ctx.get("padding")
        inputs = [ctx["a"] * u, ctx["low"] * u, ctx["high"] * u]
        weights = [layer.weight, -ctx["w_pos"], -ctx["w_neg"]]
        if getattr(layer, "groups", 1) == 1:
            numerator = linear_forward(layer, torch.cat(inputs, 1), torch.cat(weights, 1), None, padding)
        else:
            numerator = sum(linear_forward(layer, v, w, None, padding) for v, w in zip(inputs, weights, strict=True))
        return numerator / normaliser(ctx, self.eps)

    def footprint(self, ctx):
        return conv_footprint(ctx["layer"])

    def crop(self, ctx, below, above):
        return {"layer": ctx["layer"], "a": below.take(ctx["a"]), "low": below.take(ctx["low"]),
                "high": below.take(ctx["high"]), "w_pos": ctx["w_pos"], "w_neg": ctx["w_neg"],
                "z": stabilize(above.take(ctx["z_raw"], 1.0), self.eps), "padding": NO_PADDING}


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
        geometry = tuple(_pair(v) for v in (layer.kernel_size, layer.stride, layer.dilation, layer.padding))
        return {"a": a, "out": out, "indices": indices.flatten(2), "geometry": geometry}

    def prepare_forward(self, layer, a):
        """(context, layer output): the pooled maps come with the indices, so the forward pass reuses them."""
        ctx = self.prepare(layer, a)
        return ctx, ctx["out"]

    def backward(self, ctx, relevance):
        out, a = ctx["out"], ctx.get("a")
        s = safe_divide(relevance, out)
        m, channels = s.shape[0], out.shape[1]
        height, width = a.shape[2:] if a is not None else ctx["input_size"]
        grad = torch.zeros(m, channels, height * width, dtype=s.dtype, device=s.device)
        if a is None:  # a crop: a_j = out_k at the arg-max j of k, so a_j·s_k is out_k·s_k, scattered
            grad.scatter_add_(2, ctx["indices"].expand(m, -1, -1), (s * out).flatten(2))
            return grad.view(m, channels, height, width)
        grad.scatter_add_(2, ctx["indices"].expand(m, -1, -1), s.flatten(2))
        return a * grad.view(m, *a.shape[1:])

    def adjoint(self, ctx, u):
        """Transpose of ``backward`` (a scatter of a ⊙ R/out): gather a ⊙ u at the arg-max of each output, ÷ out.

        Division by out with the same convention as ``backward`` (0 where out = 0), so the two are exact transposes.
        On a crop (``crop``, no input kept) a at the arg-max is the output itself.
        """
        out, a = ctx["out"], ctx.get("a")
        gathered = (u if a is None else a * u).flatten(2).gather(2, ctx["indices"].expand(u.shape[0], -1, -1))
        gathered = gathered.view(u.shape[0], *out.shape[1:])
        return safe_divide(gathered * out if a is None else gathered, out)

    def footprint(self, ctx):
        return ctx["geometry"]

    def crop(self, ctx, below, above):
        """The arg-max indices, flat over the whole input, become flat indices into each input window.

        Every arg-max of an output in the window lies in the grown input window; outputs outside the map (zero
        relevance) get a clamped index that receives nothing. The input is not cropped: at an arg-max it equals
        the output (the same numbers where pooling windows do not overlap, as in the bigram network; overlapping
        ones sum the shares of an input in another order).
        """
        out, a = ctx["out"], ctx["a"]
        width = a.shape[-1]
        flat = above.take(ctx["indices"].view(out.shape), 0)
        height_w, width_w = below.size
        origin = below.origin.to(flat.device)[:, :, None, None, None]
        rows = (flat // width - origin[:, 0]).clamp(0, height_w - 1)
        cols = (flat % width - origin[:, 1]).clamp(0, width_w - 1)
        return {"out": above.take(out), "indices": (rows * width_w + cols).flatten(2), "input_size": below.size}


class GateRule(GradientRule):
    """The gradient rule (Eq. 6) for elementwise gates out = a · [a > t] (e.g. a detection threshold).

    Piecewise the gate is the identity or zero, so Euler's identity Σ_j a_j [∇out_k]_j = out_k holds and relevance
    passes unchanged where the gate is open; where it is shut the output is zero and carries none.
    """

    def prepare(self, layer, a):
        return {"open": layer(a) != 0}

    def backward(self, ctx, relevance):
        return relevance * ctx["open"]

    def adjoint(self, ctx, u):
        """A diagonal map is its own transpose: u ⊙ [gate open]."""
        return u * ctx["open"]

    def footprint(self, ctx):
        return SAME

    def crop(self, ctx, below, above):
        return {"open": above.take(ctx["open"], False)}


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

    def adjoint(self, ctx, u):
        """The signal conv's γ-rule adjoint (the gate and ReLU pass relevance unchanged)."""
        return self.signal_rule.adjoint(ctx, u)

    def footprint(self, ctx):
        return self.signal_rule.footprint(ctx)

    def crop(self, ctx, below, above):
        return self.signal_rule.crop(ctx, below, above)


class PassRule:
    """ReLU, Dropout (eval) and Identity: relevance passes unchanged (the rule below it used the ReLU output)."""

    def prepare(self, layer, a):
        return {}

    def backward(self, ctx, relevance):
        return relevance

    def adjoint(self, ctx, u):
        """The identity is its own transpose."""
        return u

    def footprint(self, ctx):
        return SAME

    def crop(self, ctx, below, above):
        return {}


class ReshapeRule:
    """Flatten/Unflatten: relevance is reshaped back to the input's shape."""

    def prepare(self, layer, a):
        return {"shape": a.shape[1:]}

    def backward(self, ctx, relevance):
        return relevance.reshape(relevance.shape[0], *ctx["shape"])
