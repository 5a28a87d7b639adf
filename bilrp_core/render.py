"""Pictures and tables of BiLRP explanations: curves between matched patches, heatmaps, top pairs.

A pair matrix R (H1, W1, H2, W2) gives the relevance of every pair of patches of two images (its sum is the
explained similarity). Following the paper's figures (Sec. 5.1), :func:`draw_pair` shows the two images side by
side and joins the centres of the strongest patch pairs with curves, red for positive and blue for negative
relevance, opacity growing with |R| / max |R|. :func:`heatmap` draws one image's marginal; :func:`top_pairs`
lists the strongest pairs with pixel boxes (:mod:`bilrp_core.annotation` turns them into W3C Web Annotations).

Drawing uses PIL only (no pyplot state), so it is safe from several threads at once (e.g. Streamlit sessions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .sparse_pair import SparsePair

__all__ = ["BLUE", "RED", "PairStyle", "draw_pair", "heatmap", "marginal", "select_pairs", "top_pairs"]

RED = (220, 20, 20)
BLUE = (20, 70, 230)
SIGNS = ("both", "positive", "negative")
SUPERSAMPLE = 2  # curves are drawn at twice the size and scaled down: cheap anti-aliasing with PIL


def _as_numpy(array) -> np.ndarray:
    """numpy view of a numpy array or a torch tensor (without importing torch)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _check_pair_matrix(pair_matrix):
    """A pair as drawn and tabulated: a :class:`SparsePair` as it is (never densified), else a 4-d numpy array."""
    if isinstance(pair_matrix, SparsePair):
        return pair_matrix  # checked for NaN when it was built
    pair = _as_numpy(pair_matrix)
    if pair.ndim != 4:
        raise ValueError(f"pair_matrix must have 4 dimensions (H1, W1, H2, W2); got shape {pair.shape}")
    if not np.all(np.isfinite(pair)):
        raise ValueError("pair_matrix contains NaN or infinite values")
    return pair


def select_pairs(pair_matrix, top=None, threshold=None, sign="both"):
    """The strongest patch pairs of a pair matrix, strongest first.

    Parameters
    ----------
    pair_matrix : array (H1, W1, H2, W2) or SparsePair
        BiLRP relevance of every patch pair (numpy array, torch tensor, or a
        :class:`~bilrp_core.sparse_pair.SparsePair`, ranked over its stored entries only).
    top : int, optional
        Keep at most this many pairs.
    threshold : float, optional
        Keep pairs with |R| ≥ threshold · max |R| (a fraction in [0, 1]).
    sign : {"both", "positive", "negative"}
        Rank by |R| over all pairs, or keep only positive / only negative pairs.

    Returns
    -------
    indices : ndarray (n, 4) int
        (row1, col1, row2, col2) of each kept pair.
    values : ndarray (n,)
        Their relevance.
    scale : float
        The largest |R| among pairs of the chosen sign(s) (the opacity scale); 0 if there is none.
    """
    pair = _check_pair_matrix(pair_matrix)
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {SIGNS}, got {sign!r}")
    if top is not None and (int(top) != top or top < 0):
        raise ValueError(f"top must be a whole number ≥ 0, got {top!r}")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a fraction in [0, 1], got {threshold!r}")
    # Zero pairs are never kept, so a sparse pair's stored entries (in ascending flat order, as the dense
    # array's) rank exactly as the whole dense matrix would, ties included.
    if isinstance(pair, SparsePair):
        places, flat = pair.entries()
        flat = flat.astype(np.float64)
    else:
        places, flat = None, pair.reshape(-1)
    if sign == "both":
        strength = np.abs(flat)
    else:
        strength = np.where(flat > 0, flat, 0.0) if sign == "positive" else np.where(flat < 0, -flat, 0.0)
    scale = float(strength.max(initial=0.0))
    candidates = np.flatnonzero(strength > 0)
    if threshold is not None:
        candidates = candidates[strength[candidates] >= threshold * scale]
    if top is not None and 0 < int(top) < len(candidates):
        # Only pairs at least as strong as the top-th can be kept (ties included, so the stable sort below still
        # decides between equals as a sort of all candidates would): a partition, not a sort of every pair.
        values = strength[candidates]
        kth = np.partition(values, len(values) - int(top))[len(values) - int(top)]
        candidates = candidates[values >= kth]
    order = candidates[np.argsort(-strength[candidates], kind="stable")]
    if top is not None:
        order = order[: int(top)]
    cells = order if places is None else places[order]
    indices = np.stack(np.unravel_index(cells, pair.shape), axis=1) if len(order) else np.zeros((0, 4), int)
    return indices.astype(int), flat[order], scale


def _fit(image: Image.Image, height: int | None) -> Image.Image:
    image = image.convert("RGB")
    if height is None or image.height == height:
        return image
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, int(height)), Image.Resampling.BICUBIC)


def _washed_grey(image: Image.Image, lightness: float) -> Image.Image:
    """The image in grey, lightened towards white so red and blue curves stand out on it."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    grey = 255 - (255 - grey) * (1 - lightness)
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=2).round().astype(np.uint8))


def _bezier(start, control, end, steps: int) -> list[tuple[float, float]]:
    t = np.linspace(0.0, 1.0, steps)[:, None]
    points = (1 - t) ** 2 * np.asarray(start) + 2 * (1 - t) * t * np.asarray(control) + t**2 * np.asarray(end)
    return [tuple(p) for p in points]


@dataclass(frozen=True)
class PairStyle:
    """How :func:`draw_pair` draws: the layout of the two images and the look of the curves.

    Attributes
    ----------
    height : int, optional
        Height of each image in the picture (default: the first image's height).
    gap : int, optional
        Pixels between the two images (default: 6 % of the picture's width).
    bend : float
        Curvature: the control point rises ``bend`` × horizontal distance above the higher end.
    line_width : float
        Width in pixels of the strongest curve (weaker ones are thinner).
    grey : bool
        Show the images in grey, so the red and blue curves read clearly.
    lightness : float
        How much the grey images are lightened towards white (0 = as is).
    dots : bool
        Mark both ends of every curve.
    """

    height: int | None = None
    gap: int | None = None
    bend: float = 0.25
    line_width: float = 2.0
    grey: bool = True
    lightness: float = 0.35
    dots: bool = True


def draw_pair(image1, image2, pair_matrix, top=None, threshold=None, sign="both",
              style: PairStyle = PairStyle()) -> Image.Image:
    """The two images side by side with curves between their most relevant patch pairs.

    Which pairs are drawn is chosen by ``top``, ``threshold`` and ``sign`` (as in :func:`select_pairs`); how
    they are drawn by ``style``.

    Parameters
    ----------
    image1, image2 : PIL.Image
        The two images (e.g. as the model saw them); each patch grid is spread evenly over its image.
    pair_matrix : array (H1, W1, H2, W2) or SparsePair
        BiLRP pair explanation (numpy, torch, or sparse: only its stored entries are ranked).
    top : int, optional
        Draw at most this many pairs (default: 30 when no threshold is given).
    threshold : float, optional
        Draw only pairs with |R| ≥ threshold · max |R|.
    sign : {"both", "positive", "negative"}
        Which relevance to draw: positive (red: makes the images similar), negative (blue), or both.
    style : PairStyle
        Layout and look (image height, gap, curvature, line width, grey background, end dots).

    Returns
    -------
    PIL.Image
        RGB picture; the curves may arch into a margin above the images. ``picture.info["boxes"]`` holds the
        (x0, y0, x1, y1) of both images in the picture (e.g. to map a click back to a patch).
    """
    pair = _check_pair_matrix(pair_matrix)
    if top is None and threshold is None:
        top = 30
    indices, values, scale = select_pairs(pair, top, threshold, sign)
    left = _fit(image1, style.height or image1.height)
    right = _fit(image2, left.height)
    if style.grey:
        left, right = _washed_grey(left, style.lightness), _washed_grey(right, style.lightness)
    gap = round(0.06 * (left.width + right.width)) if style.gap is None else int(style.gap)
    width = left.width + gap + right.width
    (h1, w1), (h2, w2) = pair.shape[:2], pair.shape[2:]
    # Curve ends in image coordinates; a curve peaks (t = 1/2) bend/2 × its width above its higher end, so the
    # margin above the images is just what the drawn curves need.
    starts = np.stack([(indices[:, 1] + 0.5) / w1 * left.width, (indices[:, 0] + 0.5) / h1 * left.height], 1)
    ends = np.stack([left.width + gap + (indices[:, 3] + 0.5) / w2 * right.width,
                     (indices[:, 2] + 0.5) / h2 * right.height], 1)
    rise = style.bend / 2 * np.abs(ends[:, 0] - starts[:, 0]) - np.minimum(starts[:, 1], ends[:, 1])
    margin = math.ceil(max(0.0, float(rise.max(initial=0.0)))) + 4
    canvas = Image.new("RGB", (width, margin + left.height), "white")
    canvas.paste(left, (0, margin))
    canvas.paste(right, (left.width + gap, margin))
    picture = _draw_curves(canvas, starts, ends, values, scale, margin, style)
    picture.info["boxes"] = ((0, margin, left.width, margin + left.height),
                             (left.width + gap, margin, width, margin + right.height))
    return picture


def _draw_curves(canvas, starts, ends, values, scale, margin, style):
    """The curves on ``canvas`` (weakest first, so the strongest lie on top), anti-aliased by supersampling."""
    s = SUPERSAMPLE
    big = canvas.resize((canvas.width * s, canvas.height * s), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(big, "RGBA")  # RGBA drawing on an RGB image blends by alpha
    for start, end, value in zip(starts[::-1], ends[::-1], values[::-1], strict=True):
        weight = abs(value) / scale
        start, end = (start[0] * s, (start[1] + margin) * s), (end[0] * s, (end[1] + margin) * s)
        control = ((start[0] + end[0]) / 2, min(start[1], end[1]) - style.bend * abs(end[0] - start[0]))
        colour = (*(RED if value > 0 else BLUE), int(round(255 * max(weight, 0.04))))
        thickness = max(1, round(s * style.line_width * (0.35 + 0.65 * weight)))
        steps = max(8, int(abs(end[0] - start[0]) / (6 * s)))
        draw.line(_bezier(start, control, end, steps), fill=colour, width=thickness, joint="curve")
        if style.dots:
            radius = s * (1.0 + 1.5 * weight)
            for x, y in (start, end):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return big.resize(canvas.size, Image.Resampling.LANCZOS)


def marginal(factors_or_matrix, axis=0, weights=None) -> np.ndarray:
    """One image's relevance map (H, W) from a pair matrix, factors or a map.

    Parameters
    ----------
    factors_or_matrix : array or SparsePair
        (H1, W1, H2, W2) pair matrix (dense or :class:`~bilrp_core.sparse_pair.SparsePair`): the marginal of image
        ``axis`` (summed over the other image's patches);
        (h, H, W) factors R_m(x): Σ_m weights_m R_m(x) (default weights: Σ R_m(x), i.e. φ_m(x), which explains
        the self-similarity ‖φ(x)‖²; pass φ(x') to get the marginal of the pair (x, x')); (H, W): used as is.
    axis : {0, 1}
        Which image of a pair matrix.
    weights : array (h,), optional
        Per-dimension weights for factors.
    """
    if isinstance(factors_or_matrix, SparsePair):
        return factors_or_matrix.marginal(axis)
    array = _as_numpy(factors_or_matrix)
    if array.ndim == 4:
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (first image) or 1 (second image), got {axis!r}")
        return array.sum(axis=(2, 3)) if axis == 0 else array.sum(axis=(0, 1))
    if array.ndim == 3:
        w = array.sum(axis=(1, 2)) if weights is None else _as_numpy(weights).reshape(-1)
        if w.shape[0] != array.shape[0]:
            raise ValueError(f"weights have {w.shape[0]} entries but the factors have h = {array.shape[0]}")
        return np.tensordot(w, array, axes=1)
    if array.ndim == 2:
        return array
    raise ValueError(f"expected a pair matrix (4-D), factors (3-D) or a map (2-D); got shape {array.shape}")


def heatmap(factors_or_matrix, image, axis=0, weights=None, height=None, lightness=0.2, opacity=0.85,
            smooth=True) -> Image.Image:
    """A red/blue relevance heatmap over the grey image.

    Parameters
    ----------
    factors_or_matrix : array
        See :func:`marginal`.
    image : PIL.Image
        The image the relevance belongs to.
    axis : {0, 1}
        Which image of a pair matrix.
    weights : array (h,), optional
        See :func:`marginal`.
    height : int, optional
        Output height (default: the image's).
    lightness, opacity : float
        How much the grey image is lightened, and the opacity of the strongest relevance.
    smooth : bool
        Bilinear upsampling of the patch grid (False: crisp patch blocks).

    Returns
    -------
    PIL.Image
        RGB: red where relevance is positive, blue where negative, strength as colour opacity.
    """
    relevance = marginal(factors_or_matrix, axis, weights)
    base = _washed_grey(_fit(image, height or image.height), lightness)
    scale = float(np.abs(relevance).max(initial=0.0)) or 1.0
    grid = Image.fromarray((relevance / scale).astype(np.float32), mode="F")
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    values = np.asarray(grid.resize(base.size, resample), dtype=np.float32)
    alpha = (np.clip(np.abs(values), 0, 1) * opacity)[..., None]
    colour = np.where(values[..., None] >= 0, np.array(RED, np.float32), np.array(BLUE, np.float32))
    blended = np.asarray(base, dtype=np.float32) * (1 - alpha) + colour * alpha
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))


def _pool_hw(pool) -> tuple[int, int]:
    ph, pw = (pool, pool) if np.isscalar(pool) else pool
    if int(ph) < 1 or int(pw) < 1:
        raise ValueError(f"pool must be ≥ 1; got {pool!r}")
    return int(ph), int(pw)


def top_pairs(pair_matrix, pool=8, n=20, sign="both", threshold=None, input_sizes=None,
              original_sizes=None) -> pd.DataFrame:
    """The ``n`` strongest patch pairs with their boxes in pixels.

    Parameters
    ----------
    pair_matrix : array (H1, W1, H2, W2) or SparsePair
    pool : int or (int, int)
        Patch size in model-input pixels (the pooling BiLRP used).
    n : int
        Number of pairs.
    sign : {"both", "positive", "negative"}
        Rank by |R|, or keep only positive / negative pairs.
    threshold : float, optional
        Keep only pairs with |R| ≥ threshold · max |R|.
    input_sizes : ((w1, h1), (w2, h2)), optional
        Model input sizes, to clip boxes at the border (default: the patch grid times the pool).
    original_sizes : ((w1, h1), (w2, h2)), optional
        Sizes of the original scans: adds ``orig1_x0 …`` boxes scaled to them (preprocessing resizes pages).

    Returns
    -------
    pandas.DataFrame
        ``rank, relevance, share`` (of Σ R, the explained similarity), the patch grid cells
        ``row1, col1, row2, col2``, and ``img1_x0, img1_y0, img1_x1, img1_y1`` (end-exclusive) for both images.
    """
    pair = _check_pair_matrix(pair_matrix)
    ph, pw = _pool_hw(pool)
    indices, values, _ = select_pairs(pair, n, threshold, sign)
    grids = (pair.shape[:2], pair.shape[2:])
    sizes = input_sizes or tuple((g[1] * pw, g[0] * ph) for g in grids)
    total = float(pair.sum())
    columns = ["rank", "relevance", "share", "row1", "col1", "row2", "col2"]
    for side in (1, 2):
        columns += [f"img{side}_{c}" for c in ("x0", "y0", "x1", "y1")]
        if original_sizes is not None:
            columns += [f"orig{side}_{c}" for c in ("x0", "y0", "x1", "y1")]
    records = []
    for rank, ((r1, c1, r2, c2), value) in enumerate(zip(indices, values, strict=True), start=1):
        record = {"rank": rank, "relevance": float(value), "share": float(value) / total if total else math.nan,
                  "row1": int(r1), "col1": int(c1), "row2": int(r2), "col2": int(c2)}
        for side, (row, col) in ((1, (r1, c1)), (2, (r2, c2))):
            width, height = sizes[side - 1]
            box = (col * pw, row * ph, min((col + 1) * pw, width), min((row + 1) * ph, height))
            record.update(zip((f"img{side}_x0", f"img{side}_y0", f"img{side}_x1", f"img{side}_y1"), box,
                              strict=True))
            if original_sizes is not None:
                sx, sy = original_sizes[side - 1][0] / width, original_sizes[side - 1][1] / height
                scaled = (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy))
                record.update(zip((f"orig{side}_x0", f"orig{side}_y0", f"orig{side}_x1", f"orig{side}_y1"),
                                  scaled, strict=True))
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)
