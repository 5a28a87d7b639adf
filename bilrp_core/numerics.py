"""The two divisions LRP needs, in one place.

Every rule divides relevance by a normaliser (the layer's output, or z = Σ_j q_jk). Where that normaliser can
vanish the division has to be defined, and there are two conventions, one function each:

- :func:`stabilize` pushes z away from zero by a tiny ε (the LRP-ε stabiliser of the γ and z^B rules, where z
  is a sum of many contributions and exact zeros are rare);
- :func:`safe_divide` gives 0 where the denominator is 0 (the gradient rule and the projections: an output that
  is exactly zero carries no relevance and sends none).
"""

import torch

#: Relative stabiliser added to normalisers (z + eps·sign(z)); small enough to leave conservation intact.
DEFAULT_EPS = 1e-9


def stabilize(z, eps=DEFAULT_EPS):
    """Push ``z`` away from zero by ``eps``, keeping its sign (zero counts as positive).

    Parameters
    ----------
    z : Tensor
        Normalisers.
    eps : float
        Absolute shift.

    Returns
    -------
    Tensor
        z + eps · sign(z), with sign(0) = +1, so the result is never zero.
    """
    return torch.where(z >= 0, z + eps, z - eps)  # the same numbers as z + eps·sign(z), in fewer passes


def safe_divide(numerator, denominator):
    """``numerator / denominator`` elementwise, and 0 wherever the denominator is 0.

    The denominator is replaced by 1 before dividing where it is 0, so no NaN or infinity is ever formed (not
    even in a branch that is then discarded, which would still poison gradients).

    Parameters
    ----------
    numerator : Tensor or float
        Broadcastable against ``denominator``.
    denominator : Tensor

    Returns
    -------
    Tensor
    """
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, torch.ones_like(denominator)), 0.0)
