"""Composites: which rule explains which layer of a model (zennit's idea: a schedule maps layers to rules)."""

import numbers

from torch import nn

from .errors import UnsupportedLayerError
from .rules import GammaRule, GradientRule, MaxPoolRule, PassRule, ReshapeRule, ZBoxRule

PARAMETRIC = (nn.Conv2d, nn.Linear)
PASS_THROUGH = (nn.ReLU, nn.Dropout, nn.Identity)
RESHAPING = (nn.Flatten, nn.Unflatten)
#: torch layers that are positively homogeneous (our own carry ``positively_homogeneous = True``).
HOMOGENEOUS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.AvgPool1d)


def parametric_indices(model):
    """Indices of the layers of ``model.layers`` that take a γ: Conv2d/Linear (all but the z^B pixel layer) and
    layers of our own that say so (``takes_gamma``, e.g. the gated digit maps' signal conv)."""
    zb = getattr(model, "zb_index", None)
    return [i for i, layer in enumerate(model.layers)
            if (isinstance(layer, PARAMETRIC) or getattr(layer, "takes_gamma", False)) and i != zb]


def resolve_gamma(model, gamma=None):
    """The full γ schedule {layer index: γ} for ``model``.

    Parameters
    ----------
    model : SimilarityModel
    gamma : None, float or dict
        ``None`` uses the model's default schedule; a float sets one γ for every Conv2d/Linear layer (the z^B
        pixel layer keeps z^B); a dict {index: γ} overrides the default for the indices it names.

    Returns
    -------
    dict
        Keys are the parametric layer indices, values floats ≥ 0. Used as the cache key of factors too.
    """
    indices = parametric_indices(model)
    default = dict(getattr(model, "default_gamma", {}) or {})
    if gamma is None:
        schedule = {i: float(default.get(i, 0.0)) for i in indices}
    elif isinstance(gamma, numbers.Real):
        schedule = dict.fromkeys(indices, float(gamma))
    elif isinstance(gamma, dict):
        unknown = sorted(set(int(k) for k in gamma) - set(indices))
        if unknown:
            raise ValueError(f"gamma: layer indices {unknown} are not Conv2d/Linear layers taking a γ "
                             f"(valid: {indices})")
        schedule = {i: float(gamma.get(i, gamma.get(str(i), default.get(i, 0.0)))) for i in indices}
    else:
        raise TypeError(f"gamma must be None, a number or a dict {{layer index: γ}}, not {type(gamma).__name__}")
    negative = {i: g for i, g in schedule.items() if g < 0}
    if negative:
        raise ValueError(f"gamma must be ≥ 0; got {negative}")
    return schedule


def rule_for_layer(index, layer, schedule, model):
    """The rule explaining ``layer`` at ``index``; raises :class:`UnsupportedLayerError` when there is none."""
    if hasattr(layer, "lrp_rule"):  # a layer that brings its own (tested) rule, e.g. BigramPooling
        return layer.lrp_rule(schedule[index]) if getattr(layer, "takes_gamma", False) else layer.lrp_rule()
    if isinstance(layer, PARAMETRIC):
        if index == getattr(model, "zb_index", None):
            low, high = model.input_bounds
            return ZBoxRule(low, high)
        return GammaRule(schedule[index])
    if isinstance(layer, PASS_THROUGH):
        return PassRule()
    if isinstance(layer, RESHAPING):
        return ReshapeRule()
    if isinstance(layer, nn.MaxPool2d):
        return MaxPoolRule()
    if isinstance(layer, HOMOGENEOUS) or getattr(layer, "positively_homogeneous", False):
        return GradientRule()
    raise UnsupportedLayerError(index, layer)


def rules_for(model, gamma=None):
    """One rule per layer of ``model.layers``, following the resolved γ schedule."""
    schedule = resolve_gamma(model, gamma)
    return [rule_for_layer(i, layer, schedule, model) for i, layer in enumerate(model.layers)]
