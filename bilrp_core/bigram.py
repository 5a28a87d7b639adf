"""The "bigram network" of Sec. 6.2.1: a similarity model for numeric tables that compares them digit by digit.

φ(x) = Σ_p max_τ min(a_j(x)_p, a_k(x)_{p+τ})  for every bigram jk ∈ 00–99 (and optionally the 10 unigram sums
Σ_p a_j(x)_p, 110 dimensions as in the authors' later work), with a_0..a_9 the maps of a small conv/ReLU digit
detector (:mod:`bilrp_core.detector`) trained to put Gaussian blobs on digit centres. min is a continuous AND,
max over horizontal shifts τ a continuous OR, the sum a global translation invariance: all positively
homogeneous, so BiLRP explains it. Scans come at any resolution: :mod:`bilrp_core.page_ink` brings their print to
the size the detector learnt. The reasoning and measurements behind each option: ``docs/bigram-network.md``.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .composite import parametric_indices
from .detector import MAP_STRIDE, digit_detector
from .errors import WeightsUnavailableError
from .layers import shift2d
from .model import SimilarityModel
from .numerics import safe_divide
from .page_ink import DEFAULT_COMPONENT_HEIGHT, normalise_page
from .rules import GateRule

#: Horizontal shifts τ (in map pixels) between the two digits of a bigram at the normalised print size.
DEFAULT_SHIFTS = (2, 3)
#: Detector responses at or below this are not digits (see :class:`DetectionThreshold`); the maps peak near 1.
DEFAULT_THRESHOLD = 0.3
WEIGHTS_FILE = Path(__file__).with_name("weights") / "bigram_detector.pt"


class DetectionThreshold(nn.Module):
    """Digit maps a -> a where a > threshold, else 0: only confident detections enter the bigram sums.

    Without it every weak response of the detector to a letter, a rule or a stain adds to the sums; over a page
    of headings and labels these add up to a noise floor that hides the few numbers in which near-identical
    tables differ. Elementwise the gate is the identity or zero, so LRP passes relevance through it unchanged
    (:class:`~bilrp_core.rules.GateRule`) and BiLRP stays conservative. It is not positively homogeneous in the
    strict sense, which is why pages are normalised first: :func:`~bilrp_core.page_ink.to_ink` fixes the
    darkest ink at 1.
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

    Positively homogeneous (of degree ½ with ``sqrt``); explained by :class:`BigramPoolingRule`, so that all
    dimensions cost one pass over the maps.

    ``sqrt`` takes the square root of every sum (power normalisation, as for bags of visual words: Perronnin et
    al., ECCV 2010; with the cosine it is the Hellinger kernel). A table's bigram counts are dominated by the few
    bigrams every table of a kind shares (the degree columns 0–29, say); the root lets the rarer bigrams in which
    near-identical tables differ weigh in. A monotone elementwise map, so LRP passes relevance through it
    unchanged (as through a ReLU) and the pooling rule below splits it as before.

    ``aligned`` writes each bigram sum twice, scaled by 1/√2, so that y = <φ, φ'> and the cosine are unchanged.
    The first copy's relevance goes to the bigram's first digit, the second copy's to its second digit: BiLRP then
    links the '2' of a '23' in one page to the '2' of a '23' in the other, and the '3' to the '3'. Without it, the
    gradient rule through the min sends a bigram's relevance to whichever digit is detected more weakly, which can
    be the '2' in one page and the '3' in the other, a link between different digits.
    """

    def __init__(self, shifts=DEFAULT_SHIFTS, unigrams=True, aligned=False, sqrt=False):
        super().__init__()
        self.shifts = tuple(int(s) for s in shifts)
        self.unigrams = unigrams
        self.aligned = aligned
        self.sqrt = sqrt
        first, second = _pairs(unigrams)
        self.register_buffer("first", first, persistent=False)
        self.register_buffer("second", second, persistent=False)

    @property
    def positively_homogeneous(self):  # in the strict sense (degree 1); √ of the sums has degree ½
        return not self.sqrt

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
        return self.finish(self.pair_maps(a).amax(dim=1).sum(dim=(-2, -1)))

    def finish(self, pairs):
        """φ from the bigram (and unigram) sums (B, P): their roots with ``sqrt``, written twice when ``aligned``."""
        if self.sqrt:
            pairs = pairs.sqrt()
        if not self.aligned:
            return pairs
        half = pairs[:, :100] * 0.5 ** 0.5
        return torch.cat([half, half, pairs[:, 100:]], dim=1)

    def lrp_rule(self):
        return BigramPoolingRule()

    def extra_repr(self):
        return f"shifts={self.shifts}, unigrams={self.unigrams}, aligned={self.aligned}, sqrt={self.sqrt}"


class BigramPoolingRule:
    """Relevance of bigram sums to the digit maps, through sum -> max over τ -> min.

    With relevance R_m on output m = (j, k), location p receives R_m · v_jk(p) / Σ_p v_jk(p) (sum pooling), where
    v_jk(p) = max_τ min(a_j(p), a_k(p + τ)); all of it goes to the best shift τ*. Plain pooling: then to a_j(p) or
    a_k(p + τ*), whichever is smaller: the gradient rule (Eq. 6; ties between positive values have measure zero,
    zero values carry no relevance). Aligned pooling: the first copy sends it to a_j(p), the second to
    a_k(p + τ*); unigram sums have one map and send it there. With ``sqrt`` the relevance of √sum passes the
    root unchanged, so the same shares of the (unrooted) sums split it.
    """

    def prepare(self, layer, a):
        return self.prepare_forward(layer, a)[0]

    def prepare_forward(self, layer, a):
        """The shares of every output on the maps, and the layer's output, from the places where there is ink.

        v_jk(p) > 0 needs a_j(p) > 0, so v is computed only at the N places where some map is positive (after the
        detection threshold, a few per cent of a page) and the shares are scattered into dense (O, H, W) maps.
        The output is :meth:`BigramPooling.finish` of Σ_p v_jk(p), as in ``forward``.
        """
        maps = a[0].reshape(a.shape[1], -1)  # (C, H·W)
        width, size = a.shape[-1], maps.shape[1]
        places = (maps > 0).any(dim=0).nonzero().squeeze(1)  # (N,) flat positions with ink
        first, second = layer.first, layer.second
        a_first = maps[:, places][first]  # (P, N)
        cols = places % width
        value = tau_best = None
        for tau in layer.shifts:  # max over τ, the first τ on ties (as torch.max)
            there = torch.where(cols + tau < width, maps[:, (places + tau).clamp(max=size - 1)], 0.0)[second]
            if layer.unigrams:  # unigram pairs (j, j) read their own map at shift 0
                there[100:] = a_first[100:]
            v = torch.minimum(a_first, there)
            if value is None:
                value, tau_best = v, torch.full_like(v, tau, dtype=torch.long)
            else:
                better = v > value
                value, tau_best = torch.where(better, v, value), torch.where(better, tau, tau_best)
        if layer.unigrams:
            tau_best[100:] = 0
        phi = value.sum(dim=1)
        target = (places + tau_best).clamp(max=size - 1)  # where a_k was read (zero shares where clamped)

        def dense(shares, where):  # (O, N) shares at flat positions -> (O, H, W)
            out = torch.zeros(shares.shape[0], size, dtype=shares.dtype, device=shares.device)
            return out.scatter_add_(1, where.expand_as(shares), shares).view(-1, *a.shape[-2:])

        on_place = places.expand_as(value)
        if layer.aligned:
            none = torch.zeros_like(value[:100])
            on_first = dense(torch.cat([value[:100], none, value[100:]]), torch.cat([on_place[:100], on_place]))
            on_second = dense(torch.cat([none, value[:100], torch.zeros_like(value[100:])]),
                              torch.cat([on_place[:100], target]))
            first, second = torch.cat([first[:100], first]), torch.cat([second[:100], second])
            ctx_phi = torch.cat([phi[:100], phi])
        else:
            share = torch.where(a_first <= value, value, 0.0)  # the first map attains the min
            on_first, on_second, ctx_phi = dense(share, on_place), dense(value - share, target), phi
        ctx = {"a": a, "phi": ctx_phi, "on_first": on_first, "on_second": on_second, "first": first,
               "second": second}
        return ctx, layer.finish(phi[None])

    def backward(self, ctx, relevance):
        s = safe_divide(relevance, ctx["phi"])  # (m, O)
        m, (_, channels, height, width) = s.shape[0], ctx["a"].shape
        out = torch.zeros(m, channels, height * width, dtype=s.dtype, device=s.device)
        for maps, index in ((ctx["on_first"], ctx["first"]), (ctx["on_second"], ctx["second"])):
            flat = maps.reshape(maps.shape[0], -1)
            for c in range(channels):
                rows = (index == c).nonzero().squeeze(1)
                if len(rows):
                    out[:, c] += s[:, rows] @ flat[rows]
        return out.view(m, channels, height, width)

    def window_support(self, ctx, outputs):
        """(n, H, W) bool: where the relevance of each of the n ``outputs`` lands on the digit maps.

        That is where its bigram fires; :mod:`bilrp_core.windowed` runs the layers below only around these places.
        """
        return (ctx["on_first"][outputs] != 0) | (ctx["on_second"][outputs] != 0)

    def window_backward(self, ctx, relevance, outputs, window):
        """:meth:`backward` for n (output, window) pairs: output ``outputs[i]`` carries ``relevance[i]`` only.

        Returns (n, channels, *window.size): the digit-map relevance of that output inside window i, the same
        numbers as the dense backward there (one non-zero term of its sum).
        """
        s = safe_divide(relevance, ctx["phi"][outputs])[:, None, None]
        n, channels = len(outputs), ctx["a"].shape[1]
        out = torch.zeros(n, channels, *window.size, dtype=s.dtype, device=s.device)
        pairs = torch.arange(n, device=s.device)
        for maps, index in ((ctx["on_first"], ctx["first"]), (ctx["on_second"], ctx["second"])):
            out[pairs, index[outputs]] += s * window.take(maps, 0.0, channel=outputs)
        return out


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


@dataclass(frozen=True)
class BigramOptions:
    """What φ of the bigram network holds. Each option changes the model key (stored data depends on it).

    Attributes
    ----------
    sqrt : bool
        φ holds the square roots of the bigram sums (power normalisation, see :class:`BigramPooling`): the rarer
        bigrams in which near-identical tables differ weigh in, which helps retrieval and costs a little of the
        explanation's faithfulness. False gives the paper's plain sums.
    aligned : bool
        Write each bigram twice (scaled by 1/√2, same similarity) so that BiLRP links the first digits of a
        bigram's two occurrences and the second digits, never a '2' to a '3' (see :class:`BigramPooling`).
        φ then has 200 dimensions (210 with unigrams). More faithful explanations, but each costs twice as much
        and φ is no longer the paper's 100 bigram sums; hence off by default.
    unigrams : bool
        Append the 10 unigram sums (as in the authors' later work). Off by default: in the cosine they outweigh
        the bigrams while saying less about which table a page is.
    threshold : float
        Detector responses at or below it count zero (:class:`DetectionThreshold`); 0 keeps every response.
    normalize : bool
        Compare unit-length φ (cosine similarity). Raw bigram counts grow with the amount of print on a page, so
        the plain dot product ranks the fullest tables first whatever they contain; the explanation is exact
        either way.
    """

    sqrt: bool = True
    aligned: bool = False
    unigrams: bool = False
    threshold: float = DEFAULT_THRESHOLD
    normalize: bool = True

    @property
    def dims(self):
        """h, the number of dimensions of φ."""
        return (200 if self.aligned else 100) + (10 if self.unigrams else 0)

    def key(self, pretrained):
        """The model key, e.g. ``bigram-trained-100-cos-t0.3-sqrt``."""
        key = f"bigram-{'trained' if pretrained else 'random'}-{self.dims}{'-cos' if self.normalize else ''}"
        return key + (f"-t{self.threshold:g}" if self.threshold != 0 else "") + ("-sqrt" if self.sqrt else "")


def _detector(pretrained, weights, width):
    """The digit detector, the print size and shifts it was trained with, and its weights' digest (or None)."""
    if not pretrained:
        return digit_detector(width), DEFAULT_COMPONENT_HEIGHT, DEFAULT_SHIFTS, None
    state, checkpoint = load_detector_weights(weights)
    gated = bool(checkpoint.get("gated", False))
    bias = any(k.endswith("bias") and ".gate." not in k for k in state)  # the gate's biases carry no relevance
    detector = digit_detector(int(checkpoint.get("width", width)), bias, int(checkpoint.get("context", 0)), gated)
    detector.load_state_dict(state)
    component_height = float(checkpoint.get("component_height", DEFAULT_COMPONENT_HEIGHT))
    return detector, component_height, tuple(checkpoint.get("shifts", DEFAULT_SHIFTS)), checkpoint["digest"]


def bigram_network(options=None, *, pretrained=True, weights=None, shifts=None, gamma=0.5, width=16):
    """The bigram similarity model for tables (Fig. 11B).

    Parameters
    ----------
    options : BigramOptions, optional
        What φ holds (default: ``BigramOptions()``, the square roots of the 100 bigram sums, thresholded
        detections, cosine similarity).
    pretrained : bool
        Load the detector weights shipped in ``bilrp_core/weights/`` (or ``weights``); False: random weights.
    weights : path, optional
        Another detector weights file written by ``python -m corpus_index.train_bigram``.
    shifts : sequence of int, optional
        Horizontal shifts τ in map pixels (default: those the weights were trained with).
    gamma : float
        LRP-γ of every conv layer (0.5 in the paper).
    width : int
        Channels of a random detector (a trained one brings its own).

    Returns
    -------
    SimilarityModel
        ``preprocess`` accepts colour or grey scans of any size; ``options`` and ``component_height`` (the
        print size pages are normalised to) are kept on the model.
    """
    options = options or BigramOptions()
    detector, component_height, trained_shifts, digest = _detector(pretrained, weights, width)
    pooling = BigramPooling(shifts or trained_shifts, options.unigrams, options.aligned, options.sqrt)
    gate = [DetectionThreshold(options.threshold)] if options.threshold != 0 else []  # rejects < 0
    layers = nn.Sequential(*detector, *gate, pooling)
    for p in layers.parameters():
        p.requires_grad_(False)

    def preprocess(image):
        return normalise_page(image, component_height)[0]

    key = options.key(pretrained)
    model = SimilarityModel(layers, None, preprocess, None, zb_index=None, key=key, normalize=options.normalize)
    model.default_gamma = dict.fromkeys(parametric_indices(model), gamma)  # every conv, the gated maps' too
    model.options = options
    model.component_height = component_height
    # Which weights made the stored data of a corpus: see corpus_index.storage.model_stamp.
    model.fingerprint = key if digest is None else f"{key}:{digest}"
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
    ink, (sx, sy) = normalise_page(image, model.component_height)
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
