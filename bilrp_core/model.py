"""The one contract every similarity model follows: y(x, x') = <φ(x), φ(x')>, φ = projection ∘ flatten ∘ layers."""

import torch
from torch import nn

from .numerics import safe_divide


def norm_scale(phi):
    """1/||φ|| per row (0 for a zero vector: a blank page has no similarity to anything), shape (B, 1)."""
    return safe_divide(1.0, phi.norm(dim=1, keepdim=True))


class SimilarityModel(nn.Module):
    """A feature map φ whose dot products are the similarity BiLRP explains.

    Parameters
    ----------
    layers : nn.Sequential
        The feature extractor, walked layer by layer by the LRP rules.
    projection : nn.Linear or None
        Optional bias-free projection of the flattened features to h dimensions (explained with LRP-0).
    preprocess_fn : callable
        PIL image -> float tensor (C, H, W) or (1, C, H, W) in the model's input space.
    default_gamma : dict, optional
        Default γ schedule {layer index: γ} of the Conv2d/Linear layers.
    zb_index : int or None
        Index of the pixel layer explained with the z^B rule (None: every layer uses LRP-γ).
    input_bounds : (Tensor, Tensor) or None
        Lowest and highest input values, broadcastable to (1, C, H, W); needed by z^B.
    key : str
        A name saying which model and parameters this is (used as the index/cache key).
    normalize : bool
        Divide φ by its norm, so y is the cosine similarity. The norm is a per-image constant for the
        explanation: BiLRP then explains the cosine exactly as it explains the dot product (same maps, scaled).
    """

    def __init__(self, layers, projection=None, preprocess_fn=None, default_gamma=None, zb_index=None,
                 input_bounds=None, key="similarity-model", normalize=False):
        super().__init__()
        if projection is not None and projection.bias is not None:
            raise ValueError("projection must be an nn.Linear without bias (bias=False): a bias breaks y = <φ, φ'>")
        if zb_index is not None and input_bounds is None:
            raise ValueError("zb_index needs input_bounds=(low, high) for the z^B rule")
        self.layers = layers
        self.projection = projection
        self._preprocess_fn = preprocess_fn
        self.default_gamma = dict(default_gamma or {})
        self.zb_index = zb_index
        if input_bounds is not None:
            self.register_buffer("input_low", torch.as_tensor(input_bounds[0], dtype=torch.float32))
            self.register_buffer("input_high", torch.as_tensor(input_bounds[1], dtype=torch.float32))
        self.key = key
        self.normalize = normalize
        self.eval()

    @property
    def input_bounds(self):
        """(low, high) tensors of the z^B rule, on the model's device."""
        return self.input_low, self.input_high

    @property
    def device(self):
        """The device the model's parameters (or buffers) live on."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def features(self, x):
        """Flattened output of ``layers`` (the representation before the projection)."""
        return self.layers(x).flatten(1)

    def unnormalized(self, x):
        """φ(x) before the optional normalisation, shape (B, h)."""
        feats = self.features(x)
        return self.projection(feats) if self.projection is not None else feats

    def forward(self, x):
        """φ(x), shape (B, h) (unit length when ``normalize``)."""
        return self.phi_from_top(self.layers(x))

    def phi_from_top(self, a_top):
        """φ from the output of ``layers`` (flattened, projected, normalised): an explanation's forward pass
        already has it, so φ costs no second pass."""
        feats = a_top.flatten(1)
        phi = self.projection(feats) if self.projection is not None else feats
        return phi * norm_scale(phi) if self.normalize else phi

    def similarity(self, x, x2):
        """y(x, x') = <φ(x), φ(x')> for single images (batch 1) — the number BiLRP explains."""
        return (self(x) * self(x2)).sum()

    def preprocess(self, image):
        """Turn a PIL image into the model's input tensor (1, C, H, W) on the model's device."""
        if self._preprocess_fn is None:
            raise NotImplementedError(f"{self.key} has no preprocess function")
        x = self._preprocess_fn(image)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        return x.to(self.device)
