"""Composites: which rule explains which layer of a model (zennit's idea: a schedule maps layers to rules)."""

import math
import numbers
import re

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


def _gamma_value(value, where):
    """``value`` as a float γ; ``ValueError`` naming γ and ``where`` unless it is a finite number ≥ 0.

    Checked here, where every caller's γ passes, so a bad γ is refused before any computation (a NaN or
    infinite γ would otherwise give NaN factors, computed at length and cached).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        raise TypeError(f"gamma{where} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    except ValueError:
        raise ValueError(f"gamma{where} {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(f"gamma{where} is {shown}; gamma must be a finite number ≥ 0")
    return number


def _layer_index(key, indices):
    """A dict key of a γ schedule as a layer index (an int or a string of digits) that takes a γ."""
    text = str(key).strip()
    if isinstance(key, bool) or not (isinstance(key, numbers.Integral) or re.fullmatch(r"-?[0-9]+", text)):
        raise ValueError(f"gamma: layer index {key!r} is not a whole number; valid layer indices: {indices}")
    index = int(text)
    if index not in indices:
        raise ValueError(f"gamma: layer {index} takes no γ (not Conv2d/Linear, or the z^B pixel layer); valid layer "
                         f"indices: {indices}")
    return index


def resolve_gamma(model, gamma=None):
    """The full γ schedule {layer index: γ} for ``model``.

    Every γ is validated here, the one place the app, the command line and the library share: a γ that is not a
    finite number ≥ 0, or a layer index that the model does not have (or that takes no γ), raises at once with
    a message naming γ and the valid layer indices.

    Parameters
    ----------
    model : SimilarityModel
    gamma : None, float or dict
        ``None`` uses the model's default schedule; a float sets one γ for every Conv2d/Linear layer (the z^B
        pixel layer keeps z^B); a dict {index: γ} overrides the default for the indices it names (indices may
        be ints or strings of digits, as JSON gives them).

    Returns
    -------
    dict
        Keys are the parametric layer indices, values finite floats ≥ 0. Used as the cache key of factors too.

    Raises
    ------
    ValueError
        For a γ that is NaN, infinite or negative, and for a layer index the model has no γ for.
    TypeError
        For a γ that is neither ``None``, a number nor a dict.
    """
    indices = parametric_indices(model)
    default = dict(getattr(model, "default_gamma", {}) or {})
    if gamma is None:
        schedule = {i: float(default.get(i, 0.0)) for i in indices}
    elif isinstance(gamma, numbers.Real) and not isinstance(gamma, bool):
        schedule = dict.fromkeys(indices, _gamma_value(gamma, ""))
    elif isinstance(gamma, dict):
        given = {}
        for key, value in gamma.items():
            index = _layer_index(key, indices)
            given[index] = _gamma_value(value, f" of layer {index}")
        schedule = {i: given.get(i, float(default.get(i, 0.0))) for i in indices}
    else:
        raise TypeError(f"gamma must be None, a number or a dict {{layer index: γ}}, not {type(gamma).__name__}")
    for index, value in schedule.items():
        _gamma_value(value, f" of layer {index}")  # the model's own defaults too
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
