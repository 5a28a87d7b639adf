"""Rotation/flip-max similarity (Sec. 6.1): maximum over the 8 transforms, explained in original coordinates."""

import pytest
import torch

from bilrp_core import RotationMax, bilrp
from bilrp_core.rotation import TRANSFORMS, apply_transform, invert_transform
from tests.conftest import small_conv_net


@pytest.mark.parametrize("index", range(8))
def test_inverse_undoes_each_transform(index):
    x = torch.arange(24.0).reshape(1, 1, 4, 6)
    torch.testing.assert_close(invert_transform(apply_transform(x, index), index), x)


def test_the_eight_transforms_are_distinct():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    outs = {tuple(apply_transform(x, i).flatten().tolist()) for i in range(len(TRANSFORMS))}
    assert len(outs) == 8


def test_max_finds_the_rotation_and_explains_it_in_original_coordinates(pair):
    model = small_conv_net(seed=3, bias=False)
    x, _ = pair
    rotated = apply_transform(x, 1)  # the same page printed turned by 90°
    wrapped = RotationMax(model)
    y_new, i, j = wrapped.similarity(x, rotated)
    with torch.no_grad():
        y_plain, y_self = float(model.similarity(x, rotated)), float(model.similarity(x, x))
    assert y_new >= y_self - 1e-12 and y_new > y_plain  # turning the copy back is one of the 64 pairs
    assert y_new == pytest.approx(float(model.similarity(apply_transform(x, i), apply_transform(rotated, j)).detach()))
    matrix, y, names = wrapped.bilrp(x, rotated, gamma=0.2, pool=2)
    assert y == y_new and matrix.sum().item() == pytest.approx(y_new, rel=1e-6)
    # explaining (x, rot x) under the max = explaining (τ_i x, τ_j rot x) with both maps turned back
    direct = bilrp(model, apply_transform(x, i), apply_transform(rotated, j), gamma=0.2, pool=1)
    back = invert_transform(invert_transform(direct, j).permute(2, 3, 0, 1), i).permute(2, 3, 0, 1)
    pooled = back.reshape(4, 2, 4, 2, 4, 2, 4, 2).sum(dim=(1, 3, 5, 7))
    torch.testing.assert_close(matrix, pooled)


def test_pool_that_does_not_divide_keeps_the_grid_of_the_original(pair):
    model = small_conv_net(seed=4, bias=False)
    x, x2 = pair
    wrapped = RotationMax(model)
    factors = wrapped.relevance_factors(x, 5, gamma=0.1, pool=3)
    assert factors.shape[1:] == (3, 3)
    with torch.no_grad():
        phi = model(apply_transform(x, 5))[0]
    torch.testing.assert_close(factors.sum(dim=(1, 2)), phi, rtol=1e-6, atol=1e-9)
