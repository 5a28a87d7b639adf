"""Rotation/flip-max similarity of Sec. 6.1: y_new(x, x') = max over τ, τ' of y(τx, τ'x'), τ in the 8 flips/rotations.

The explanation is BiLRP of the arg-max pair (τ*, τ'*), with each image's factors mapped back to its original
orientation, so the matched patches are drawn on the scans as the historian sees them.
"""

import torch

from .attribution import pair_matrix, relevance_factors, sum_pool

#: The dihedral group of the square: (name, quarter turns k, mirrored). τ(x) = rot90^k(mirror(x)).
TRANSFORMS = tuple((f"{'mirror+' if f else ''}rot{90 * k}", k, f) for f in (False, True) for k in range(4))


def apply_transform(x, index):
    """τ_index on the last two axes of x."""
    _, k, mirrored = TRANSFORMS[index]
    if mirrored:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1))


def invert_transform(x, index):
    """τ_index⁻¹ on the last two axes of x (maps relevance of τx back to the coordinates of x)."""
    _, k, mirrored = TRANSFORMS[index]
    x = torch.rot90(x, -k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if mirrored else x


#: What a :class:`RotationMax` shares with the model it wraps: the layers the LRP rules walk, their default γ
#: schedule and z^B layer, the projection, and how inputs look (optional ones only if the wrapped model has them).
SHARED_ATTRIBUTES = ("layers", "default_gamma", "zb_index", "projection", "normalize", "device", "input_low",
                     "input_high", "input_bounds", "input_image")


class RotationMax:
    """Wrap a :class:`SimilarityModel` to take the maximum similarity over the 8 flips/rotations of both inputs.

    It offers the :class:`SimilarityModel` interface where the answer is the wrapped model's (its ``layers``,
    ``default_gamma``, ``preprocess``, ``input_image`` …, listed in :data:`SHARED_ATTRIBUTES`), so callers that
    resolve a γ schedule or draw the model's input treat both alike. Its ``key`` and ``fingerprint`` are its own:
    the similarity differs. Features and factors come per transform (:meth:`transformed_features`,
    :meth:`relevance_factors` with a transform index), never from ``forward`` of the wrapper.

    Parameters
    ----------
    model : SimilarityModel
        Any dot-product model (VGG-16, bigram network); its inputs may be non-square.
    """

    def __init__(self, model):
        self.model = model
        self.key = f"{model.key}-rotmax"
        self.fingerprint = f"{getattr(model, 'fingerprint', model.key)}-rotmax"

    def __getattr__(self, name):
        # Only called for attributes not found on the wrapper itself; AttributeError when the wrapped model lacks
        # an optional one (e.g. input_image), so getattr(wrapper, name, default) behaves as for the model.
        if name in SHARED_ATTRIBUTES and "model" in self.__dict__:
            return getattr(self.model, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def preprocess(self, image):
        """Same input as the wrapped model."""
        return self.model.preprocess(image)

    @torch.no_grad()
    def transformed_features(self, x):
        """φ(τx) for the 8 transforms τ: (8, h). Its rows are what an index stores for max-over-τ search."""
        return torch.cat([self.model(apply_transform(x, i)) for i in range(len(TRANSFORMS))], dim=0)

    def similarity(self, x, x2):
        """(y_new, i, j): the maximal similarity and the arg-max transforms τ_i of x and τ_j of x2."""
        scores = self.transformed_features(x) @ self.transformed_features(x2).T
        best = int(scores.argmax())
        i, j = divmod(best, scores.shape[1])
        return float(scores[i, j]), i, j

    def relevance_factors(self, x, transform, gamma=None, pool=8, method="auto"):
        """Factors of τ_transform(x), mapped back to the original orientation of x: (h, H/pool, W/pool).

        ``method`` as for :func:`~bilrp_core.attribution.relevance_factors` ("auto", "dense" or "windowed").
        """
        height, width = x.shape[-2:]
        ph, pw = (pool, pool) if isinstance(pool, int) else pool
        turned = apply_transform(x, transform)
        if height % ph or width % pw:  # pool after mapping back, so the patch grid stays that of x
            full = relevance_factors(self.model, turned, gamma, pool=1, method=method)
            return sum_pool(invert_transform(full, transform), pool)
        return invert_transform(relevance_factors(self.model, turned, gamma, pool, method=method), transform)

    def bilrp(self, x, x2, gamma=None, pool=8):
        """BiLRP of the arg-max pair in original coordinates; returns (pair matrix, y_new, (name_i, name_j))."""
        y, i, j = self.similarity(x, x2)
        matrix = pair_matrix(self.relevance_factors(x, i, gamma, pool), self.relevance_factors(x2, j, gamma, pool))
        return matrix, y, (TRANSFORMS[i][0], TRANSFORMS[j][0])
