"""Baselines of Sec. 4 against brute-force definitions on a tiny model."""

import pytest
import torch
from torch.autograd.functional import hessian

from bilrp_core import curvature, hessian_product, saliency
from bilrp_core.baselines import cross_hessian
from tests.conftest import small_conv_net


def _pool_pairs(full, shape1, shape2, pool):
    """Brute force: sum a (d, d') pixel-pair matrix over channels and pool×pool patches."""
    c, h, w = shape1
    c2, h2, w2 = shape2
    t = full.reshape(c, h // pool, pool, w // pool, pool, c2, h2 // pool, pool, w2 // pool, pool)
    return t.sum(dim=(0, 2, 4, 5, 7, 9))


@pytest.mark.slow
def test_cross_hessian_equals_autograd_hessian(pair):
    model = small_conv_net(seed=1, bias=True)
    x, x2 = pair
    d = x.numel()

    def y(z):
        return model.similarity(z[:d].reshape(x.shape), z[d:].reshape(x2.shape))

    full = hessian(y, torch.cat([x.reshape(-1), x2.reshape(-1)]))
    torch.testing.assert_close(cross_hessian(model, x, x2), full[:d, d:])


def test_baselines_match_their_definitions(pair):
    model = small_conv_net(seed=2)
    x, x2 = pair
    h = cross_hessian(model, x, x2)
    xx = x.reshape(-1)[:, None] * x2.reshape(-1)[None, :]
    shape = tuple(x.shape[1:])
    torch.testing.assert_close(saliency(model, x, x2, pool=2), _pool_pairs(xx**2, shape, shape, 2))
    torch.testing.assert_close(curvature(model, x, x2, pool=2, row_chunk=50), _pool_pairs(h**2, shape, shape, 2))
    torch.testing.assert_close(hessian_product(model, x, x2, pool=2), _pool_pairs(xx * h, shape, shape, 2))


def test_saliency_ignores_the_model_curvature_does_not(pair):
    x, x2 = pair
    a, b = small_conv_net(seed=3), small_conv_net(seed=4)
    torch.testing.assert_close(saliency(a, x, x2, pool=2), saliency(b, x, x2, pool=2))
    assert not torch.allclose(curvature(a, x, x2, pool=2), curvature(b, x, x2, pool=2))
