"""The "bigram network" of Sec. 6.2.1: a similarity model for numeric tables that compares them digit by digit.

φ(x) = Σ_p max_τ min(a_j(x)_p, a_k(x)_{p+τ})  for every bigram jk ∈ 00–99 (and optionally the 10 unigram sums
Σ_p a_j(x)_p, 110 dimensions as in the authors' later work), with a_0..a_9 the maps of a small conv/ReLU digit
detector trained to put Gaussian blobs on digit centres. min is a continuous AND, max over horizontal shifts τ a
continuous OR, the sum a global translation invariance: all positively homogeneous, so BiLRP explains it.

Scans come at any resolution: :func:`normalise_page` rescales a page so that its print has the size the detector
learnt, measured as the median height of inked connected components (letters and digits).
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from .errors import WeightsUnavailableError
from .layers import shift2d
from .model import SimilarityModel

#: Detector output stride: maps a_j are at 1/4 of the normalised page resolution.
MAP_STRIDE = 4
#: Horizontal shifts τ (in map pixels) between the two digits of a bigram at the normalised print size.
DEFAULT_SHIFTS = (2, 3)
#: Median component height (px) the detector is trained at; the shipped weights file stores its own value.
DEFAULT_COMPONENT_HEIGHT = 12.0
#: Longest side of a normalised page; larger pages are shrunk further (keeps explanation memory bounded).
MAX_SIDE = 1400
WEIGHTS_FILE = Path(__file__).with_name("weights") / "bigram_detector.pt"


def digit_detector(width=16, bias=False):
    """Conv/ReLU stack: grey ink (B, 1, H, W) -> 10 digit maps (B, 10, H/4, W/4).

    Kept light (~1.2 GFLOP on a normalised page): BiLRP costs about h = 110 backward passes of it per page.
    Receptive field 28 px, about two digit heights at the normalised print size. Bias-free by default: blank
    paper is zero ink and gives zero maps anyway, and without biases BiLRP is conservative (Proposition 1), so
    the explanation accounts for the whole similarity score (with biases it explained about half).
    """
    return nn.Sequential(
        nn.Conv2d(1, width, 5, padding=2, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=bias), nn.ReLU(),
        nn.Conv2d(2 * width, 10, 3, padding=1, bias=bias), nn.ReLU(),
    )


def _pairs(unigrams):
    first = [j for j in range(10) for _ in range(10)]
    second = [k for _ in range(10) for k in range(10)]
    if unigrams:  # min(a_j, a_j) = a_j at shift 0: the unigram sums ride along as pairs (j, j)
        first, second = first + list(range(10)), second + list(range(10))
    return torch.tensor(first), torch.tensor(second)


class BigramPooling(nn.Module):
    """Digit maps (B, 10, H, W) -> bigram (and unigram) sums (B, 100 or 110).

    Positively homogeneous; explained by :class:`BigramPoolingRule`, which is the gradient rule (Eq. 6) through
    min, max and sum written out as a routing, so that all 110 dimensions cost one pass over the maps.
    """

    positively_homogeneous = True

    def __init__(self, shifts=DEFAULT_SHIFTS, unigrams=True):
        super().__init__()
        self.shifts = tuple(int(s) for s in shifts)
        self.unigrams = unigrams
        first, second = _pairs(unigrams)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)

    def pair_maps(self, a):
        """Per shift τ: min(a_j, τ a_k) -> (B, T, P, H, W); unigram pairs use shift 0."""
        a_first = a[:, self.first]
        stacked = []
        for tau in self.shifts:
            a_second = shift2d(a[:, self.second], 0, -tau)  # a_k at p + τ
            if self.unigrams:
                a_second[:, 100:] = a[:, self.second[100:]]
            stacked.append(torch.minimum(a_first, a_second))
        return torch.stack(stacked, dim=1)

    def forward(self, a):
        return self.pair_maps(a).amax(dim=1).sum(dim=(-2, -1))

    def lrp_rule(self):
        return BigramPoolingRule()

    def extra_repr(self):
        return f"shifts={self.shifts}, unigrams={self.unigrams}"


class BigramPoolingRule:
    """Gradient rule through sum -> max over τ -> min: a bigram's value at p goes to the arg-min digit map entry.

    With relevance R_m on output m = (j, k), location p receives R_m · a_jk(p) / φ_m (sum pooling), all of it to
    the best shift τ*, and then to a_j(p) or a_k(p + τ*), whichever is smaller (ties between positive values
    have measure zero; zero values carry no relevance).
    """

    def prepare(self, layer, a):
        stacked = layer.pair_maps(a)[0]  # (T, P, H, W)
        value, best = stacked.max(dim=0)  # (P, H, W)
        phi = value.sum(dim=(-2, -1))
        first_side = a[0, layer.first] <= value  # the first map attains the min
        on_first = torch.where(first_side, value, 0.0)
        on_second = value - on_first
        shifts = torch.tensor(layer.shifts, device=a.device)[best]  # τ* per (P, H, W)
        if layer.unigrams:
            shifts[100:] = 0
        # move the second map's share from p back to p + τ* (where a_k was read)
        second = torch.zeros_like(on_second)
        width = a.shape[-1]
        cols = torch.arange(width, device=a.device).expand_as(on_second)
        target = cols + shifts
        inside = target < width
        second.scatter_add_(2, torch.where(inside, target, 0), torch.where(inside, on_second, 0.0))
        return {"a": a, "phi": phi, "on_first": on_first, "on_second": second, "layer": layer}

    def backward(self, ctx, relevance):
        phi, layer = ctx["phi"], ctx["layer"]
        nonzero = phi != 0
        s = torch.where(nonzero, relevance / torch.where(nonzero, phi, torch.ones_like(phi)), 0.0)  # (m, P)
        m, (_, channels, height, width) = s.shape[0], ctx["a"].shape
        out = torch.zeros(m, channels, height * width, dtype=s.dtype, device=s.device)
        for maps, index in ((ctx["on_first"], layer.first), (ctx["on_second"], layer.second)):
            flat = maps.reshape(maps.shape[0], -1)
            for c in range(channels):
                rows = (index == c).nonzero().squeeze(1)
                if len(rows):
                    out[:, c] += s[:, rows] @ flat[rows]
        return out.view(m, channels, height, width)


def estimate_component_height(ink, threshold=0.5):
    """Median height (px) of inked connected components that look like glyphs, or None if there are too few.

    Parameters
    ----------
    ink : ndarray (H, W)
        Ink in [0, 1] (1 = black).
    """
    mask = ink > threshold
    labels, count = ndimage.label(mask)
    if count < 5:
        return None
    slices = ndimage.find_objects(labels)
    heights = np.array([s[0].stop - s[0].start for s in slices])
    widths = np.array([s[1].stop - s[1].start for s in slices])
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    fill = areas / (heights * widths)
    # glyphs: taller than dust, not solid blots (specks of ink are nearly filled), not rules or whole figures
    glyph = (heights >= 5) & (heights <= ink.shape[0] / 8) & (widths <= 3 * heights) & (areas >= 12) & (fill < 0.75)
    if glyph.sum() < 5:
        return None
    return float(np.median(heights[glyph]))


def to_ink(image):
    """PIL page (colour or grey, any mode) -> ink array in [0, 1], 1 = black, with the paper tone removed."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    paper = float(np.percentile(grey, 90))  # yellowed paper counts as white
    return np.clip((paper - grey) / max(paper, 1e-3), 0.0, 1.0)


def normalise_page(image, component_height=DEFAULT_COMPONENT_HEIGHT, max_side=MAX_SIDE):
    """Rescale a page so that its print has the size the detector learnt; returns (ink tensor (1,1,H,W), scale).

    Pages whose print size cannot be measured (no glyph-like components) keep their size, capped at max_side.
    Height and width are rounded to multiples of :data:`MAP_STRIDE`.
    """
    ink = to_ink(image)
    measured = estimate_component_height(ink)
    scale = component_height / measured if measured else 1.0
    scale = min(scale, max_side / max(ink.shape))
    height = max(MAP_STRIDE, int(round(ink.shape[0] * scale / MAP_STRIDE)) * MAP_STRIDE)
    width = max(MAP_STRIDE, int(round(ink.shape[1] * scale / MAP_STRIDE)) * MAP_STRIDE)
    resized = Image.fromarray((ink * 255).astype(np.uint8)).resize((width, height), resample=Image.BILINEAR)
    tensor = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)[None, None]
    return tensor, (width / ink.shape[1], height / ink.shape[0])


def load_detector_weights(path=None):
    """Read the detector's state dict and its training print size from the shipped (or a given) file."""
    path = Path(path) if path is not None else WEIGHTS_FILE
    if not path.is_file():
        raise WeightsUnavailableError(
            f"bigram detector weights '{path}' not found; train them with "
            f"'python -m corpus_index.train_bigram --out {path}' or pass pretrained=False")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return checkpoint["state_dict"], checkpoint
    except Exception as error:
        raise WeightsUnavailableError(f"bigram detector weights '{path}' could not be read: {error}") from error


def bigram_network(pretrained=True, weights=None, shifts=None, unigrams=True, gamma=0.5, width=16, normalize=True):
    """The bigram similarity model for tables (Fig. 11B).

    Parameters
    ----------
    pretrained : bool
        Load the detector weights shipped in ``bilrp_core/weights/`` (or ``weights``); False: random weights.
    weights : path, optional
        Another detector weights file written by ``python -m corpus_index.train_bigram``.
    shifts : sequence of int, optional
        Horizontal shifts τ in map pixels (default: those the weights were trained with).
    unigrams : bool
        Append the 10 unigram sums (φ has 110 dimensions, else 100).
    gamma : float
        LRP-γ of every conv layer (0.5 in the paper).
    normalize : bool
        Compare unit-length φ (cosine similarity). Raw bigram counts grow with the amount of print on a page, so
        the plain dot product ranks the fullest tables first whatever they contain (measured on the demo corpus:
        benchmarks/bench_tables.py); the explanation is exact either way.

    Returns
    -------
    SimilarityModel
        ``preprocess`` accepts colour or grey scans of any size.
    """
    component_height, trained_shifts = DEFAULT_COMPONENT_HEIGHT, DEFAULT_SHIFTS
    detector = digit_detector(width)
    if pretrained:
        state, checkpoint = load_detector_weights(weights)
        detector = digit_detector(int(checkpoint.get("width", width)), any(k.endswith("bias") for k in state))
        detector.load_state_dict(state)
        component_height = float(checkpoint.get("component_height", component_height))
        trained_shifts = tuple(checkpoint.get("shifts", trained_shifts))
    layers = nn.Sequential(*detector, BigramPooling(shifts or trained_shifts, unigrams))
    for p in layers.parameters():
        p.requires_grad_(False)

    def preprocess(image):
        return normalise_page(image, component_height)[0]

    schedule = {i: gamma for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)}
    key = f"bigram-{'trained' if pretrained else 'random'}-{110 if unigrams else 100}{'-cos' if normalize else ''}"
    model = SimilarityModel(layers, None, preprocess, schedule, zb_index=None, key=key, normalize=normalize)
    model.component_height = component_height
    return model


@torch.no_grad()
def detect_digits(model, image, threshold=0.4):
    """Digits found by the bigram network's detector: local maxima of the maps a_j above ``threshold``.

    Parameters
    ----------
    model : SimilarityModel
        A :func:`bigram_network` (its layers before :class:`BigramPooling` are the detector).
    image : PIL.Image.Image
        A page at any resolution.

    Returns
    -------
    list of (digit, x, y, score)
        Centres in the pixel coordinates of ``image``.
    """
    ink, (sx, sy) = normalise_page(image, getattr(model, "component_height", DEFAULT_COMPONENT_HEIGHT))
    maps = ink.to(model.device)
    for layer in model.layers:
        if isinstance(layer, BigramPooling):
            break
        maps = layer(maps)
    peaks = (maps == torch.nn.functional.max_pool2d(maps, 3, 1, 1)) & (maps > threshold)
    found = []
    for digit, y, x in peaks[0].nonzero().tolist():
        cx = (x + 0.5) * MAP_STRIDE / sx
        cy = (y + 0.5) * MAP_STRIDE / sy
        found.append((digit, cx, cy, float(maps[0, digit, y, x])))
    return found
