"""VGG-16 similarity models of Sec. 5: y = <P·VGG_:L(x), P·VGG_:L(x')>, P a seeded Gaussian random projection."""

import copy
import os
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsUnavailableError
from .model import SimilarityModel

#: The layers after each max-pooling layer of vgg16().features, where the paper builds similarities.
VGG_LAYERS = (5, 10, 17, 24, 31)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_gamma(index):
    """The authors' γ by index in vgg.features: ≤ 10 → 0.5, 11–17 → 0.25, 18–24 → 0.1, > 24 → 0.0."""
    if index <= 10:
        return 0.5
    if index <= 17:
        return 0.25
    if index <= 24:
        return 0.1
    return 0.0


def _imagenet_state_dict():
    """ImageNet weights through torchvision's weights API and cache (TORCH_HOME), with a clear offline error."""
    from torchvision.models import VGG16_Weights

    weights = VGG16_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as error:  # offline: URLError, socket errors, HTTP errors, a partial download …
        raise WeightsUnavailableError(
            f"ImageNet weights for VGG-16 could not be obtained ({type(error).__name__}: {error}). "
            f"Provide them without network: copy '{os.path.basename(weights.url)}' (from {weights.url}) to "
            f"'{cached}' (torchvision's cache; set TORCH_HOME to use another cache folder), or pass "
            "weights='/path/to/vgg16.pth' (a torchvision VGG-16 state dict)."
        ) from error


def _file_state_dict(path):
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file '{path}' does not exist (expected a torchvision VGG-16 "
                                      "state dict, e.g. vgg16-397923af.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsUnavailableError(f"weights file '{path}' could not be read as a PyTorch state dict: "
                                      f"{error}") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _vgg16_features(seed):
    """vgg16().features alone, initialised as torchvision's VGG does, reproducibly from ``seed``.

    Building only the feature layers skips the 120 M-parameter classifier (about 0.5 GB and 2 s per model).
    """
    from torchvision.models.vgg import cfgs, make_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # untrained weights are reproducible from the seed, like the projection
        features = make_layers(cfgs["D"], batch_norm=False)
        for module in features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
    return features


def _load_features(weights, seed):
    features = _vgg16_features(seed)
    if weights is None:
        return features
    state = _imagenet_state_dict() if weights == "imagenet" else _file_state_dict(weights)
    own = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(own or state)  # a full VGG-16 state dict, or a features-only one
    except RuntimeError as error:
        raise WeightsUnavailableError(f"weights {weights!r} do not fit VGG-16's feature layers: {error}") from error
    return features


def make_vgg_preprocess(image_size):
    """PIL image -> ImageNet-normalised (3, S, S) tensor (pages are resized to a square, as in the paper)."""
    from torchvision.transforms import functional as tf

    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)

    def preprocess(image):
        image = image.convert("RGB").resize((image_size, image_size), resample=3)  # bicubic
        return tf.normalize(tf.to_tensor(image), mean, std)

    return preprocess


def vgg16_similarity(layer=31, proj_dim=100, weights=None, seed=0, image_size=128):
    """A similarity model on VGG-16 features at ``layer`` with a random projection to ``proj_dim`` dimensions.

    Parameters
    ----------
    layer : {5, 10, 17, 24, 31}
        Cut point in ``vgg16().features`` (after a max-pooling layer).
    proj_dim : int or None
        h, the projected dimension (default 100, as in the paper); None keeps all flattened features.
    weights : None, "imagenet" or path
        None: random (untrained) weights from ``seed`` — for tests and offline demonstration; "imagenet":
        torchvision's standard weights (cache in TORCH_HOME; no silent fallback when they are missing);
        a path: a torchvision VGG-16 state-dict file.
    seed : int
        Seed of the Gaussian projection (and of untrained weights).
    image_size : int
        Side of the square input; the projection is sized for it.

    Returns
    -------
    SimilarityModel
    """
    if layer not in VGG_LAYERS:
        raise ValueError(f"layer must be one of {VGG_LAYERS}, got {layer!r}")
    if image_size < 32 or image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 (≥ 32), got {image_size!r}")
    features = _load_features(weights, seed)
    layers = nn.Sequential(*[nn.ReLU() if isinstance(m, nn.ReLU) else copy.deepcopy(m)
                             for m in list(features)[:layer]])  # no in-place ReLUs: LRP reads every activation
    for p in layers.parameters():
        p.requires_grad_(False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    projection = None
    if proj_dim is not None:
        with torch.no_grad():
            dim = layers(torch.zeros(1, 3, image_size, image_size)).numel()
        generator = torch.Generator().manual_seed(seed)
        projection = nn.Linear(dim, proj_dim, bias=False)
        # N(0, 1/h) keeps E<Px, Px'> = <x, x'>: the projected similarity estimates the full one.
        projection.weight.data = torch.randn(proj_dim, dim, generator=generator) / proj_dim**0.5
        projection.weight.requires_grad_(False)
    schedule = {i: vgg_gamma(i) for i, m in enumerate(layers) if isinstance(m, nn.Conv2d) and i > 0}
    source = "random" if weights is None else ("imagenet" if weights == "imagenet" else "file")
    key = f"vgg16-L{layer}-h{proj_dim or 'all'}-seed{seed}-{source}-{image_size}px"
    return SimilarityModel(layers, projection, make_vgg_preprocess(image_size), schedule, zb_index=0,
                           input_bounds=((0 - mean) / std, (1 - mean) / std), key=key)
