"""Positively homogeneous layers, a_k(t·a) = t·a_k(a) for t > 0, explained by the gradient rule (Eq. 6).

They are the building blocks the paper names besides conv/ReLU: min over maps (a continuous AND), max over
alternatives (a continuous OR), spatial shifts (translations), and sum pooling. Each carries
``positively_homogeneous = True`` so the rule mapping recognises it.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Shift(nn.Module):
    """Translate maps by (dy, dx) pixels, filling with zeros (a linear, positively homogeneous map).

    Parameters
    ----------
    dy, dx : int
        Shift down and right; negative values shift up and left.
    """

    positively_homogeneous = True

    def __init__(self, dy=0, dx=0):
        super().__init__()
        self.dy, self.dx = int(dy), int(dx)

    def forward(self, x):
        return shift2d(x, self.dy, self.dx)

    def extra_repr(self):
        return f"dy={self.dy}, dx={self.dx}"


def shift2d(x, dy, dx):
    """Zero-filled translation of the last two axes of ``x`` by (dy, dx)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


class MinPool2d(nn.Module):
    """Min pooling, -maxpool(-x): a continuous AND over a window."""

    positively_homogeneous = True

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size

    def forward(self, x):
        return -F.max_pool2d(-x, self.kernel_size, self.stride)


class MinOverAxis(nn.Module):
    """Element-wise minimum over one axis (e.g. min(a_j, τ(a_k)) stacked on that axis)."""

    positively_homogeneous = True

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.amin(dim=self.dim)


class MaxOverAxis(nn.Module):
    """Element-wise maximum over one axis (max over alternatives, e.g. over translations τ)."""

    positively_homogeneous = True

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.amax(dim=self.dim)


class GlobalSumPool(nn.Module):
    """Sum over the last two (spatial) axes: global translation invariance."""

    positively_homogeneous = True

    def forward(self, x):
        return x.sum(dim=(-2, -1))


class ShiftedCopies(nn.Module):
    """Stack a map and shifted copies of it along a new axis 1 (a linear map: one output per shift).

    Parameters
    ----------
    shifts : sequence of (dy, dx)
    """

    positively_homogeneous = True

    def __init__(self, shifts):
        super().__init__()
        self.shifts = [tuple(int(v) for v in s) for s in shifts]

    def forward(self, x):
        return torch.stack([shift2d(x, dy, dx) for dy, dx in self.shifts], dim=1)

    def extra_repr(self):
        return f"shifts={self.shifts}"
