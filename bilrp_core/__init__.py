"""bilrp_core — BiLRP explanations of deep similarity models y(x, x') = <φ(x), φ(x')> (Eberle et al., TPAMI 2022).

Rules (:mod:`.rules`), their assignment to layers (:mod:`.composite`), the factored BiLRP attributor
(:mod:`.attribution`), the quadratic reference (:mod:`.reference`), the baselines of Sec. 4 (:mod:`.baselines`),
the similarity models (:mod:`.model`, :mod:`.vgg`, :mod:`.bigram`, :mod:`.rotation`) and the pictures of
explanations (:mod:`.render`).
"""

from .attribution import bilrp, pair_matrix, relevance_factors, relevance_factors_loop, sum_pool
from .baselines import curvature, hessian_product, saliency
from .bigram import BigramOptions, bigram_network
from .composite import resolve_gamma
from .errors import UnsupportedLayerError, WeightsUnavailableError
from .model import SimilarityModel
from .rotation import RotationMax
from .vgg import VGG_LAYERS, vgg16_similarity

__all__ = [
    "BigramOptions", "RotationMax", "SimilarityModel", "UnsupportedLayerError", "VGG_LAYERS", "WeightsUnavailableError",
    "bigram_network", "bilrp", "curvature", "hessian_product", "pair_matrix", "relevance_factors",
    "relevance_factors_loop", "resolve_gamma", "saliency", "sum_pool", "vgg16_similarity",
]
