"""Composites: which rule explains which layer of a model (zennit's idea: a table maps layers to rules).

The mapping reads these attributes, and no others:

Of a layer
    ``lrp_rule()``
        The layer brings its own rule (e.g. :class:`~bilrp_core.bigram.BigramPooling`), tested against the
        generic rule and the quadratic reference; it wins over every other entry.
    ``takes_gamma = True``
        The layer is explained with a γ from the model's schedule like a Conv2d/Linear layer; its ``lrp_rule``
        is then called as ``lrp_rule(gamma)`` (e.g. :class:`~bilrp_core.detector.GatedDigitMaps`).
    ``positively_homogeneous = True``
        a_k(t·a) = t·a_k(a) for t > 0: the gradient rule (Eq. 6) explains it (:mod:`bilrp_core.layers`).

Of the model
    ``zb_index``, ``input_bounds``
        The Conv2d/Linear layer at ``zb_index`` (the pixel layer) is explained with z^B, bounded by
        ``input_bounds`` = (low, high).
    ``default_gamma``
        The γ schedule {layer index: γ} used where the caller gives none.

Every other layer is looked up by type in :data:`RULES_BY_TYPE`; a layer found nowhere raises
:class:`~bilrp_core.errors.UnsupportedLayerError` naming it, since explaining through it would give a silently
wrong answer.
"""

import math
import numbers
import re

from torch import nn

from .errors import UnsupportedLayerError
from .rules import GammaRule, GradientRule, MaxPoolRule, PassRule, ReshapeRule, ZBoxRule

PARAMETRIC = (nn.Conv2d, nn.Linear)

#: torch layer types and the rule class explaining them; the first row whose types match wins. Rules of layers
#: that take a γ (Conv2d/Linear) are built with it, the others without arguments.
RULES_BY_TYPE = (
    (PARAMETRIC, GammaRule),
    ((nn.ReLU, nn.Dropout, nn.Identity), PassRule),
    ((nn.Flatten, nn.Unflatten), ReshapeRule),
    ((nn.MaxPool2d,), MaxPoolRule),  # the gradient rule as one scatter of the max indices
    ((nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.AvgPool1d), GradientRule),
)


def takes_gamma(layer):
    """Whether ``layer`` is explained with a γ: Conv2d/Linear, or a layer of our own with ``takes_gamma``."""
    return isinstance(layer, PARAMETRIC) or getattr(layer, "takes_gamma", False)


def parametric_indices(model):
    """Indices of the layers of ``model.layers`` that take a γ (see :func:`takes_gamma`), all but the z^B layer."""
    return [i for i, layer in enumerate(model.layers) if takes_gamma(layer) and i != model.zb_index]


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
    default = model.default_gamma
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
    """The rule explaining ``layer`` at ``index``; raises :class:`UnsupportedLayerError` when there is none.

    ``schedule`` is the resolved γ schedule: a layer gets a γ exactly when its index is in it.
    """
    gamma = (schedule[index],) if index in schedule else ()
    if hasattr(layer, "lrp_rule"):
        return layer.lrp_rule(*gamma)
    if index == model.zb_index and isinstance(layer, PARAMETRIC):
        return ZBoxRule(*model.input_bounds)
    for types, rule in RULES_BY_TYPE:
        if isinstance(layer, types):
            return rule(*gamma)
    if getattr(layer, "positively_homogeneous", False):
        return GradientRule()
    raise UnsupportedLayerError(index, layer)


def rules_for(model, gamma=None):
    """One rule per layer of ``model.layers``, following the resolved γ schedule."""
    schedule = resolve_gamma(model, gamma)
    return [rule_for_layer(i, layer, schedule, model) for i, layer in enumerate(model.layers)]
