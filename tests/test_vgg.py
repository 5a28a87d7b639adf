"""The VGG-16 similarity models: every layer runs, the γ schedule is the authors', weights load or fail clearly."""

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import bilrp_core
from bilrp_core import (
    VGG_LAYERS,
    WeightsUnavailableError,
    bilrp,
    relevance_factors,
    resolve_gamma,
    vgg16_similarity,
)


@pytest.mark.parametrize("layer", VGG_LAYERS)
def test_every_layer_gives_finite_maps_of_the_right_shape(layer):
    model = vgg16_similarity(layer=layer, proj_dim=4, image_size=32)
    g = torch.Generator().manual_seed(layer)
    x, x2 = torch.randn(1, 3, 32, 32, generator=g), torch.randn(1, 3, 32, 32, generator=g)
    factors = relevance_factors(model, x, pool=8)
    assert factors.shape == (4, 4, 4)
    out = bilrp(model, x, x2, pool=8)
    assert out.shape == (4, 4, 4, 4)
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    assert model(x).shape == (1, 4)
    assert isinstance(model.layers, nn.Sequential) and len(model.layers) == layer
    assert isinstance(model.projection, nn.Linear) and model.projection.bias is None


def test_authors_gamma_schedule_and_zb_pixel_layer():
    model = vgg16_similarity(layer=31, proj_dim=2, image_size=32)
    schedule = resolve_gamma(model)
    assert model.zb_index == 0 and 0 not in schedule
    assert schedule == {2: 0.5, 5: 0.5, 7: 0.5, 10: 0.5, 12: 0.25, 14: 0.25, 17: 0.25,
                        19: 0.1, 21: 0.1, 24: 0.1, 26: 0.0, 28: 0.0}
    assert set(resolve_gamma(model, 0.3).values()) == {0.3}


def test_projection_is_seeded_and_preprocess_makes_a_batch():
    a = vgg16_similarity(layer=5, proj_dim=3, image_size=32, seed=1)
    b = vgg16_similarity(layer=5, proj_dim=3, image_size=32, seed=1)
    c = vgg16_similarity(layer=5, proj_dim=3, image_size=32, seed=2)
    torch.testing.assert_close(a.projection.weight, b.projection.weight)
    assert not torch.allclose(a.projection.weight, c.projection.weight)
    page = Image.fromarray(np.full((90, 60), 200, dtype=np.uint8))  # grey, any size
    x = a.preprocess(page)
    assert x.shape == (1, 3, 32, 32)
    low, high = a.input_bounds
    assert (x >= low - 1e-6).all() and (x <= high + 1e-6).all()


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="layer must be one of"):
        vgg16_similarity(layer=12)
    with pytest.raises(ValueError, match="image_size"):
        vgg16_similarity(layer=5, image_size=100)


def test_imagenet_offline_says_how_to_provide_the_file(monkeypatch, tmp_path):
    from torchvision.models import _api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(_api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError, match=r"vgg16-397923af\.pth.*TORCH_HOME.*weights="):
        vgg16_similarity(layer=5, weights="imagenet", image_size=32)


@pytest.mark.slow
def test_weights_from_a_state_dict_file(tmp_path):
    from torchvision.models import vgg16

    torch.manual_seed(123)
    net = vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(net.state_dict(), path)
    model = vgg16_similarity(layer=5, proj_dim=2, weights=str(path), image_size=32)
    torch.testing.assert_close(model.layers[0].weight, net.features[0].weight)
    assert "file" in model.key
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        vgg16_similarity(layer=5, weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="junk.pth"):
        vgg16_similarity(layer=5, weights=str(tmp_path / "junk.pth"))


def test_runs_on_cuda_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    model = vgg16_similarity(layer=5, proj_dim=2, image_size=32).cuda()
    out = bilrp(model, torch.randn(1, 3, 32, 32).cuda(), torch.randn(1, 3, 32, 32).cuda())
    assert out.is_cuda


def test_public_api_names():
    for name in ["vgg16_similarity", "relevance_factors", "bilrp", "saliency", "curvature", "hessian_product"]:
        assert callable(getattr(bilrp_core, name))
