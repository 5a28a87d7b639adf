"""The "bigram network" of Sec. 6.2.1: a similarity model for numeric tables that compares them digit by digit.

φ(x) = Σ_p max_τ min(a_j(x)_p, a_k(x)_{p+τ})  for every bigram jk ∈ 00–99 (and optionally the 10 unigram sums
Σ_p a_j(x)_p, 110 dimensions as in the authors' later work), with a_0..a_9 the maps of a small conv/ReLU digit
detector trained to put Gaussian blobs on digit centres. min is a continuous AND, max over horizontal shifts τ a
continuous OR, the sum a global translation invariance: all positively homogeneous, so BiLRP explains it.

Scans come at any resolution: :func:`normalise_page` rescales a page so that its print has the size the detector
learnt, measured as the median height of inked connected components (letters and digits).
"""

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from .composite import parametric_indices
from .detector import digit_detector
from .errors import WeightsUnavailableError
from .layers import shift2d
from .model import SimilarityModel
from .rules import GateRule

#: Detector output stride: maps a_j are at 1/4 of the normalised page resolution.
MAP_STRIDE = 4
#: Horizontal shifts τ (in map pixels) between the two digits of a bigram at the normalised print size.
DEFAULT_SHIFTS = (2, 3)
#: Median component height (px) the detector is trained at; the shipped weights file stores its own value.
DEFAULT_COMPONENT_HEIGHT = 12.0
#: Detector responses at or below this are not digits (see :class:`DetectionThreshold`); the maps peak near 1.
DEFAULT_THRESHOLD = 0.3
#: Longest side of a normalised page; larger pages are shrunk further (keeps explanation memory bounded).
MAX_SIDE = 1400
WEIGHTS_FILE = Path(__file__).with_name("weights") / "bigram_detector.pt"


class DetectionThreshold(nn.Module):
    """Digit maps a -> a where a > threshold, else 0: only confident detections enter the bigram sums.

    Without it every weak response of the detector to a letter, a rule or a stain adds to the sums; over a page
    of headings and labels these add up to a noise floor that hid the few numbers in which near-identical
    tables differ (on the demo corpus, table retrieval mAP@10 rose from 0.51 to 0.74 with threshold 0.3 and the
    shipped detector, see README). Elementwise the gate is the identity or zero, so LRP passes relevance
    through it unchanged (:class:`~bilrp_core.rules.GateRule`) and BiLRP stays conservative. It is not
    positively homogeneous in the strict sense, which is why pages are normalised first: :func:`to_ink` fixes
    the darkest ink at 1.
    """

    def __init__(self, threshold=DEFAULT_THRESHOLD):
        super().__init__()
        if not threshold >= 0:
            raise ValueError(f"threshold must be ≥ 0; got {threshold}")
        self.threshold = float(threshold)

    def forward(self, a):
        return a * (a > self.threshold)

    def lrp_rule(self):
        return GateRule()

    def extra_repr(self):
        return f"threshold={self.threshold:g}"


def _pairs(unigrams):
    first = [j for j in range(10) for _ in range(10)]
    second = [k for _ in range(10) for k in range(10)]
    if unigrams:  # min(a_j, a_j) = a_j at shift 0: the unigram sums ride along as pairs (j, j)
        first, second = first + list(range(10)), second + list(range(10))
    return torch.tensor(first), torch.tensor(second)


class BigramPooling(nn.Module):
    """Digit maps (B, 10, H, W) -> bigram (and unigram) sums (B, 100 or 110; 200 or 210 when ``aligned``).

    Positively homogeneous (of degree ½ with ``root``); explained by :class:`BigramPoolingRule`, so that all
    dimensions cost one pass over the maps.

    ``root`` takes the square root of every sum (power normalisation, as for bags of visual words: Perronnin et
    al., ECCV 2010; with the cosine it is the Hellinger kernel). A table's bigram counts are dominated by the few
    bigrams every table of a kind shares (the degree columns 0–29, say); the root lets the rarer bigrams in which
    near-identical tables differ weigh in. A monotone elementwise map, so LRP passes relevance through it
    unchanged (as through a ReLU) and the pooling rule below splits it as before.

    ``aligned`` writes each bigram sum twice, scaled by 1/√2, so that y = <φ, φ'> and the cosine are unchanged.
    The first copy's relevance goes to the bigram's first digit, the second copy's to its second digit: BiLRP then
    links the '2' of a '23' in one page to the '2' of a '23' in the other, and the '3' to the '3'. Without it, the
    gradient rule through the min sends a bigram's relevance to whichever digit is detected more weakly, which can
    be the '2' in one page and the '3' in the other, a link between different digits (measured on the demo corpus
    in ``benchmarks/bench_tables.py``).
    """

    def __init__(self, shifts=DEFAULT_SHIFTS, unigrams=True, aligned=False, root=False):
        super().__init__()
        self.shifts = tuple(int(s) for s in shifts)
        self.unigrams = unigrams
        self.aligned = aligned
        self.root = root
        first, second = _pairs(unigrams)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)

    @property
    def positively_homogeneous(self):  # in the strict sense (degree 1); √ of the sums has degree ½
        return not self.root

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
        pairs = self.pair_maps(a).amax(dim=1).sum(dim=(-2, -1))
        if self.root:
            pairs = pairs.sqrt()
        if not self.aligned:
            return pairs
        half = pairs[:, :100] * 0.5 ** 0.5
        return torch.cat([half, half, pairs[:, 100:]], dim=1)

    def lrp_rule(self):
        return BigramPoolingRule()

    def extra_repr(self):
        return f"shifts={self.shifts}, unigrams={self.unigrams}, aligned={self.aligned}, root={self.root}"


class BigramPoolingRule:
    """Relevance of bigram sums to the digit maps, through sum -> max over τ -> min.

    With relevance R_m on output m = (j, k), location p receives R_m · v_jk(p) / Σ_p v_jk(p) (sum pooling), where
    v_jk(p) = max_τ min(a_j(p), a_k(p + τ)); all of it goes to the best shift τ*. Plain pooling: then to a_j(p) or
    a_k(p + τ*), whichever is smaller: the gradient rule (Eq. 6; ties between positive values have measure zero,
    zero values carry no relevance). Aligned pooling: the first copy sends it to a_j(p), the second to
    a_k(p + τ*); unigram sums have one map and send it there. With ``root`` the relevance of √sum passes the
    root unchanged, so the same shares of the (unrooted) sums split it.
    """

    def prepare(self, layer, a):
        stacked = layer.pair_maps(a)[0]  # (T, P, H, W)
        value, best = stacked.max(dim=0)  # (P, H, W)
        phi = value.sum(dim=(-2, -1))
        shifts = torch.tensor(layer.shifts, device=a.device)[best]  # τ* per (P, H, W)
        if layer.unigrams:
            shifts[100:] = 0

        def to_second(share):  # move the second map's share from p back to p + τ* (where a_k was read)
            moved = torch.zeros_like(share)
            cols = torch.arange(share.shape[-1], device=a.device).expand_as(share)
            target = cols + shifts
            inside = target < share.shape[-1]
            return moved.scatter_add_(2, torch.where(inside, target, 0), torch.where(inside, share, 0.0))

        first, second = layer.first, layer.second
        if layer.aligned:
            bigrams, none = slice(0, 100), torch.zeros_like(value[:100])
            on_first = torch.cat([value[bigrams], none, value[100:]])
            on_second = torch.cat([none, to_second(value)[bigrams], torch.zeros_like(value[100:])])
            first, second = torch.cat([first[:100], first]), torch.cat([second[:100], second])
            phi = torch.cat([phi[:100], phi])
        else:
            on_first = torch.where(a[0, first] <= value, value, 0.0)  # the first map attains the min
            on_second = to_second(value - on_first)
        return {"a": a, "phi": phi, "on_first": on_first, "on_second": on_second, "first": first, "second": second}

    def backward(self, ctx, relevance):
        phi = ctx["phi"]
        nonzero = phi != 0
        s = torch.where(nonzero, relevance / torch.where(nonzero, phi, torch.ones_like(phi)), 0.0)  # (m, O)
        m, (_, channels, height, width) = s.shape[0], ctx["a"].shape
        out = torch.zeros(m, channels, height * width, dtype=s.dtype, device=s.device)
        for maps, index in ((ctx["on_first"], ctx["first"]), (ctx["on_second"], ctx["second"])):
            flat = maps.reshape(maps.shape[0], -1)
            for c in range(channels):
                rows = (index == c).nonzero().squeeze(1)
                if len(rows):
                    out[:, c] += s[:, rows] @ flat[rows]
        return out.view(m, channels, height, width)


#: Ink levels tried when measuring print size: faint print next to dark rules breaks up above 0.5 (to_ink scales
#: the darkest ink, often the rules, to 1), heavy print merges below it.
INK_LEVELS = (0.25, 0.35, 0.5)


def glyph_component_heights(ink, threshold):
    """Heights (px) of the connected components of ``ink > threshold`` that look like glyphs."""
    mask = ink > threshold
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(0, dtype=int)
    slices = ndimage.find_objects(labels)
    heights = np.array([s[0].stop - s[0].start for s in slices])
    widths = np.array([s[1].stop - s[1].start for s in slices])
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    fill = areas / (heights * widths)
    # glyphs: taller than dust, not solid blots (specks of ink are nearly filled), not rules or whole figures
    glyph = (heights >= 5) & (heights <= ink.shape[0] / 8) & (widths <= 3 * heights) & (areas >= 12) & (fill < 0.75)
    return heights[glyph]


def estimate_component_height(ink, levels=INK_LEVELS):
    """Median height (px) of inked connected components that look like glyphs, or None if there are too few.

    The page is cut at each ink level in ``levels`` and measured at the one that splits it into the most
    glyph-like components: there the glyphs neither break into pieces nor run together. (One fixed level of 0.5
    measured a faint ruled table at twice its print size and halved its digits; see the README.)

    Parameters
    ----------
    ink : ndarray (H, W)
        Ink in [0, 1] (1 = black).
    levels : sequence of float
        Ink levels to try.
    """
    heights = max((glyph_component_heights(ink, level) for level in levels), key=len)
    if len(heights) < 5:
        return None
    return float(np.median(heights))


def to_ink(image):
    """PIL page (colour or grey, any mode) -> ink array in [0, 1], 1 = black, paper tone and ink fading removed.

    The bias-free detector's output scales with the ink's darkness, so faded or grey print is stretched until its
    darkest strokes reach 1; a page whose darkest ink stays below 0.3 (blank paper, dust) is left as it is.
    """
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    paper = float(np.percentile(grey, 90))  # yellowed paper counts as white
    ink = np.clip((paper - grey) / max(paper, 1e-3), 0.0, 1.0)
    darkest = float(np.percentile(ink, 99.5))
    return np.clip(ink / darkest, 0.0, 1.0) if darkest > 0.3 else ink


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
    """Read the detector's state dict and its training print size from the shipped (or a given) file.

    The checkpoint dict gets ``"digest"``: the first 12 hex digits of the file's SHA-256, which names this
    version of the weights (stored features computed with other weights are not comparable).
    """
    path = Path(path) if path is not None else WEIGHTS_FILE
    if not path.is_file():
        raise WeightsUnavailableError(
            f"bigram detector weights '{path}' not found; train them with "
            f"'python -m corpus_index.train_bigram --out {path}' or pass pretrained=False")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        checkpoint["digest"] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return checkpoint["state_dict"], checkpoint
    except Exception as error:
        raise WeightsUnavailableError(f"bigram detector weights '{path}' could not be read: {error}") from error


def bigram_network(pretrained=True, weights=None, shifts=None, unigrams=False, gamma=0.5, width=16, normalize=True,
                   aligned=False, threshold=DEFAULT_THRESHOLD, root=True):
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
        Append the 10 unigram sums (as in the authors' later work). Off by default: on the demo corpus they
        outweigh the bigrams in the cosine (about 90% of a pair's score) while saying less about which table it
        is; without them table retrieval was better (mAP@10 0.46 vs 0.40, precision@1 0.79 vs 0.67, measured
        with the previous detector weights before the threshold existed).
    gamma : float
        LRP-γ of every conv layer (0.5 in the paper).
    normalize : bool
        Compare unit-length φ (cosine similarity). Raw bigram counts grow with the amount of print on a page, so
        the plain dot product ranks the fullest tables first whatever they contain (measured on the demo corpus:
        benchmarks/bench_tables.py); the explanation is exact either way.
    aligned : bool
        Write each bigram twice (scaled by 1/√2, same similarity) so that BiLRP links the first digits of a
        bigram's two occurrences and the second digits, never a '2' to a '3' (see :class:`BigramPooling`).
        φ then has 200 dimensions (210 with unigrams). It lifts the faithfulness measure on the demo corpus from
        0.65 to 0.87 (benchmarks/results/tables.json) but doubles the cost of an explanation, and φ is no longer
        the paper's 100 bigram sums; hence off by default.
    threshold : float
        Detector responses at or below it count zero (:class:`DetectionThreshold`); 0 keeps every response.
    root : bool
        φ holds the square roots of the bigram sums (power normalisation, see :class:`BigramPooling`): with the
        cosine, table retrieval on the demo corpus rose from mAP@10 0.86 to 0.89 (benchmarks/results/tables.json),
        while the faithfulness measure fell from 0.68 to 0.65 (README). False gives the paper's plain sums.

    Returns
    -------
    SimilarityModel
        ``preprocess`` accepts colour or grey scans of any size.
    """
    component_height, trained_shifts, digest = DEFAULT_COMPONENT_HEIGHT, DEFAULT_SHIFTS, None
    detector = digit_detector(width)
    if pretrained:
        state, checkpoint = load_detector_weights(weights)
        gated = bool(checkpoint.get("gated", False))
        bias = any(k.endswith("bias") and ".gate." not in k for k in state)  # the gate's biases carry no relevance
        detector = digit_detector(int(checkpoint.get("width", width)), bias, int(checkpoint.get("context", 0)), gated)
        detector.load_state_dict(state)
        component_height = float(checkpoint.get("component_height", component_height))
        trained_shifts = tuple(checkpoint.get("shifts", trained_shifts))
        digest = checkpoint["digest"]
    pooling = BigramPooling(shifts or trained_shifts, unigrams, aligned, root)
    gate = [DetectionThreshold(threshold)] if threshold != 0 else []  # the constructor rejects < 0
    layers = nn.Sequential(*detector, *gate, pooling)
    for p in layers.parameters():
        p.requires_grad_(False)

    def preprocess(image):
        return normalise_page(image, component_height)[0]

    dims = (200 if aligned else 100) + (10 if unigrams else 0)
    key = f"bigram-{'trained' if pretrained else 'random'}-{dims}{'-cos' if normalize else ''}"
    key += (f"-t{threshold:g}" if gate else "") + ("-sqrt" if root else "")
    model = SimilarityModel(layers, None, preprocess, None, zb_index=None, key=key, normalize=normalize)
    model.default_gamma = dict.fromkeys(parametric_indices(model), gamma)  # every conv, the gated maps' too
    model.component_height = component_height
    model.fingerprint = key if digest is None else f"{key}:{digest}"  # which weights: see corpus_index.model_stamp
    return model


@torch.no_grad()
def detect_digits(model, image, threshold=0.4):
    """Digits found by the bigram network's detector: local maxima over all maps a_j above ``threshold``.

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
    # a peak is the strongest of all ten maps in its 3x3 neighbourhood: one digit per place, since a '3' also
    # stirs the '8' map a little (digits advance 2-3 map pixels, so neighbours are never suppressed)
    strongest = torch.nn.functional.max_pool2d(maps.amax(dim=1, keepdim=True), 3, 1, 1)
    peaks = (maps == strongest) & (maps > threshold)
    found = []
    for digit, y, x in peaks[0].nonzero().tolist():
        cx = (x + 0.5) * MAP_STRIDE / sx
        cy = (y + 0.5) * MAP_STRIDE / sy
        found.append((digit, cx, cy, float(maps[0, digit, y, x])))
    return found
