"""BiLRP explanations of corpus items: the γ schedule, each image's factors (through the disk cache), the pair.

BiLRP(x, x') = Σ_m R_m(x) ⊗ R_m(x'), and the factors R(x) do not depend on the other image: each image's are
computed once (:func:`compute_factors`) and kept in the :class:`~corpus_index.storage.factor_cache.FactorCache`, and a
pair is one matrix product of two of them (:func:`pair_from_factors`): sparse (a
:class:`~bilrp_core.sparse_pair.SparsePair`) when the factors are, as the bigram network's are, dense otherwise.
:func:`explain_pair` puts a pair together as an :class:`Explanation`, which knows where its patches lie on the
scans — for an item that is a region of a page, on the page — so the command line's and the explorer's tables of
patch pairs are the same table.

The γ schedule has one form in memory, ``{layer index (int): γ (float)}`` (:func:`resolve_schedule`); it becomes
JSON (string keys) only where it is written or hashed (:mod:`corpus_index.storage.factor_cache`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from bilrp_core.sparse_pair import SparseFactors, SparsePair, sparse_pair_pays
from corpus_index.progress import Progress
from corpus_index.storage.factor_cache import FactorCache, FactorReport

Size = tuple[int, int]


def resolve_schedule(model, gamma) -> dict[int, float]:
    """The full γ schedule {layer index: γ} of ``model`` for a γ choice (None, a number or a dict).

    Validated by :func:`bilrp_core.resolve_gamma`: a bad γ or a layer the model lacks raises before any work.
    """
    import bilrp_core

    if isinstance(gamma, bool) or not (gamma is None or isinstance(gamma, numbers.Real | dict)):
        raise TypeError(f"gamma must be None, a number or a dict {{layer index: gamma}}, not {gamma!r}")
    schedule = bilrp_core.resolve_gamma(model, gamma)
    return {int(index): float(value) for index, value in sorted(schedule.items())}


def model_input_image(model, x: torch.Tensor, original: Image.Image | None = None) -> Image.Image:
    """The image the model saw, as PIL at the model's input size, for drawing explanations on.

    In order: the model's own ``input_image(x)`` if it has one; the ``original`` scan resized to the input's
    size (right for models whose preprocessing rescales the whole page, like VGG-16 and the bigram network, and
    keeps the scan's colours rather than e.g. the bigram network's inverted ink); the input mapped back through
    the model's z^B input bounds (the values pixel 0 and 1 map to); else the tensor stretched to [0, 1].
    """
    if callable(getattr(model, "input_image", None)):
        return model.input_image(x)
    height, width = x.shape[-2:]
    if original is not None:
        return original.convert("RGB").resize((int(width), int(height)), resample=Image.Resampling.BICUBIC)
    x = x.detach().float().cpu()[0]
    if hasattr(model, "input_low"):
        low, high = (t.detach().float().cpu().reshape(-1, 1, 1) for t in model.input_bounds)
        scaled = (x - low) / (high - low)
    else:
        scaled = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    pixels = (scaled.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        return Image.fromarray(pixels[:, :, 0], mode="L")
    return Image.fromarray(pixels[:, :, :3], mode="RGB")


@dataclass
class Explanation:
    """A BiLRP explanation of one pair, ready to draw and to tabulate.

    Attributes
    ----------
    pair : ndarray (H1/p, W1/p, H2/p, W2/p) float32, or SparsePair
        Relevance of every pair of pool x pool patches; its sum is the explained similarity. Sparse factors (the
        bigram network's) give a :class:`~bilrp_core.sparse_pair.SparsePair` of the same shape, which the
        drawing and table functions read without densifying (``numpy.asarray(pair)`` gives the dense array).
    score : float
        y = <phi(x), phi(x')>, the similarity the index shows.
    total : float
        ``pair.sum()``; equals ``score`` up to rounding for bias-free ReLU models (Proposition 1).
    image1, image2 : PIL.Image or None
        The two images as the model saw them (model input size), for :meth:`draw`; None when the explanation was
        made without them (``explain_pair(..., images=False)``: the explorer draws on the scans themselves).
    model_key : str
    gamma : dict
        The resolved schedule {layer index: gamma} used.
    pool : int or tuple
    ids : tuple
        The two item ids (None for an uploaded image).
    cached : (bool, bool)
        Whether each image's factors came from the cache.
    transforms : (str, str) or None
        Rotation-max models: the flips/rotations of the two images whose similarity is the max (the pair matrix
        is drawn on the images in their original orientation).
    original_sizes : ((w1, h1), (w2, h2)) or None
        Sizes of what the two items show (the scan, or the region of a page) before preprocessing.
    input_sizes : ((w1, h1), (w2, h2)) or None
        Sizes of the two model inputs (the patch grid's pixels); default the sizes of ``image1`` and ``image2``.
    offsets : ((x1, y1), (x2, y2))
        Where that lies on its image file: a region's top-left corner, (0, 0) for a whole scan or an upload.
    """

    pair: np.ndarray | SparsePair
    score: float
    total: float
    image1: Image.Image | None
    image2: Image.Image | None
    model_key: str
    gamma: dict
    pool: int | tuple
    ids: tuple = (None, None)
    cached: tuple = field(default=(False, False))
    transforms: tuple | None = None
    original_sizes: tuple[Size, Size] | None = None
    offsets: tuple[Size, Size] = ((0, 0), (0, 0))
    input_sizes: tuple[Size, Size] | None = None

    def __post_init__(self) -> None:
        if self.input_sizes is None:
            if self.image1 is None or self.image2 is None:
                raise ValueError("an Explanation needs its images or its input_sizes")
            self.input_sizes = (self.image1.size, self.image2.size)

    def table(self, n: int = 20, sign: str = "both", threshold: float | None = None, original_sizes=None,
              offsets=None):
        """The ``n`` strongest patch pairs with pixel boxes (:func:`bilrp_core.render.top_pairs`).

        ``img1_x0 …`` are boxes on the model input; ``orig1_x0 …`` the same boxes on the image files, scaled to
        ``original_sizes`` and moved by ``offsets`` (default: the explanation's own), so a region item's boxes
        are in the coordinates of its page.
        """
        from bilrp_core.render import top_pairs

        sizes = original_sizes if original_sizes is not None else self.original_sizes
        table = top_pairs(self.pair, pool=self.pool, n=n, sign=sign, threshold=threshold,
                          input_sizes=self.input_sizes, original_sizes=sizes)
        for side, (dx, dy) in enumerate(offsets if offsets is not None else self.offsets, start=1):
            for column, offset in (("x0", dx), ("x1", dx), ("y0", dy), ("y1", dy)):
                if offset and f"orig{side}_{column}" in table:
                    table[f"orig{side}_{column}"] += offset
        return table

    def draw(self, top: int = 30, sign: str = "both", **options) -> Image.Image:
        """Both images side by side with curves between the strongest pairs (:func:`bilrp_core.render.draw_pair`)."""
        from bilrp_core.render import draw_pair

        if self.image1 is None or self.image2 is None:
            raise ValueError("this explanation was made without the model's input images (images=False); "
                             "explain the pair again with images=True to draw it")
        return draw_pair(self.image1, self.image2, self.pair, top=top, sign=sign, **options)


def model_transforms(model) -> list[int | None]:
    """The transforms whose factors an item has: ``[None]``, or ``[0, ..., 7]`` for rotation-max models."""
    from corpus_index.models import transform_count

    count = transform_count(model)
    return [None] if count == 1 else list(range(count))


def check_transform(model, transform: int | None) -> int | None:
    """``transform`` as the cache names it: None for models without flips/rotations, else 0–7 (default 0)."""
    transforms = model_transforms(model)
    if transforms == [None]:
        if transform not in (None, 0):
            raise ValueError(f"transform={transform}: this model has no flips/rotations")
        return None
    transform = 0 if transform is None else int(transform)
    if transform not in transforms:
        raise ValueError(f"transform must be one of {transforms}, got {transform}")
    return transform


def compute_factors(model, image: Image.Image, schedule: dict[int, float], pool,
                    transform: int | None = None, progress: Progress | None = None) -> np.ndarray:
    """R(x) of one image (``bilrp_core.relevance_factors`` on the preprocessed image) as float32 numpy.

    For rotation-max models, the factors of tau_transform(x) mapped back to the orientation of x. ``progress``
    hears of the batches of the backward pass as they finish (dimensions, or windows; not for rotation-max models),
    so a bar moves within one page.
    """
    return factors_of_input(model, model.preprocess(image), schedule, pool, transform, progress)


def input_size(x: torch.Tensor) -> Size:
    """(H, W) of a preprocessed input: what a factor file keeps so that no scan is preprocessed again."""
    return int(x.shape[-2]), int(x.shape[-1])


def factors_of_input(model, x: torch.Tensor, schedule: dict[int, float], pool, transform: int | None = None,
                     progress: Progress | None = None, with_phi: bool = False):
    """:func:`compute_factors` of an input the model has already preprocessed (its size is ``x.shape[-2:]``).

    With ``with_phi``: ``(factors, φ)``, φ (h,) float32 from the same forward pass — None for a flip/rotation of a
    rotation-max model, whose φ is the max over all of them (:func:`corpus_index.models.embed`).
    """
    import bilrp_core

    phi = None
    if transform is None:
        batches = None if progress is None else (lambda done, total: progress(done, total, "BiLRP factors"))
        factors, phi = bilrp_core.relevance_factors(model, x, gamma=schedule, pool=pool, progress=batches,
                                                    return_phi=True)
        phi = phi.detach().cpu().numpy().astype(np.float32)
    else:
        factors = model.relevance_factors(x, transform, gamma=schedule, pool=pool)
    factors = factors.detach().cpu().numpy().astype(np.float32)
    return (factors, phi) if with_phi else factors


def pair_from_factors(factors1, factors2) -> np.ndarray | SparsePair:
    """The pair matrix sum_m R_m(x) (x) R_m(x') from two images' factors (dense arrays or SparseFactors).

    One matrix product: sparse (:class:`~bilrp_core.sparse_pair.SparsePair`, the whole (H1·W1)×(H2·W2) matrix is
    never formed) when the factors are sparse enough for that to be smaller (:func:`sparse_pair_pays`), as the
    bigram network's are; else the dense float32 array (VGG's factors have no zeros).
    """
    import bilrp_core

    if sparse_pair_pays(factors1, factors2):
        return SparsePair(factors1, factors2)
    dense = [f.toarray() if isinstance(f, SparseFactors) else f for f in (factors1, factors2)]
    return bilrp_core.pair_matrix(*(torch.from_numpy(np.ascontiguousarray(f)) for f in dense)).numpy()


def cached_factors(cache: FactorCache, model, model_key: str, item_id: int, image: Callable[[], Image.Image],
                   gamma=None, pool=8, transform: int | None = None, tag: str | None = None,
                   sparse: bool = False, progress: Progress | None = None,
                   model_input: Callable[[], torch.Tensor] | None = None) -> CachedFactors:
    """Factors of one item from ``cache``, computed (and cached) on first use.

    Parameters
    ----------
    cache : FactorCache
    model : SimilarityModel or RotationMax
        The model ``model_key`` names.
    model_key : str
    item_id : int
    image : callable
        Returns the item's PIL image (only called on a cache miss).
    gamma : None, float or dict
    pool : int or (int, int)
    transform : int, optional
        Rotation-max models: which flip/rotation (factors mapped back to the original orientation); default 0.
    tag : str, optional
        The item's current content tag: a cached file with another tag is computed again (and replaced).
    sparse : bool
        Hand out factors the cache stores sparse as :class:`~bilrp_core.sparse_pair.SparseFactors` (not densified);
        computed factors are dense arrays either way.
    progress : Progress, optional
        Hears of the backward's batches when the factors are computed (:func:`compute_factors`).
    model_input : callable, optional
        Returns the item's preprocessed input when the caller already has it (instead of preprocessing
        ``image()``; only called on a cache miss).

    Returns
    -------
    CachedFactors
        The factors, whether they came from the cache, the model input's (H, W) when known, and φ when they
        were computed here (not for flips/rotations of rotation-max models).
    """
    transform = check_transform(model, transform)
    schedule = resolve_schedule(model, gamma)
    entry = cache.load_entry(model_key, schedule, pool, item_id, transform, tag, sparse=sparse)
    if entry is not None:
        return CachedFactors(entry[0], True, entry[1])
    x = model_input() if model_input is not None else model.preprocess(image())
    factors, phi = factors_of_input(model, x, schedule, pool, transform, progress, with_phi=True)
    shape = input_size(x)
    cache.save(model_key, schedule, pool, item_id, factors, transform, tag or "", shape)
    return CachedFactors(factors, False, shape, phi)


class CachedFactors(NamedTuple):
    """What :func:`cached_factors` found or computed."""

    factors: np.ndarray | SparseFactors
    cached: bool
    input_shape: Size | None  # (H, W) of the model input; None for files from before it was kept
    phi: np.ndarray | None = None  # φ from the same forward pass, when the factors were computed just now


def cache_factors(cache: FactorCache, model, model_key: str, rows: Sequence[tuple[int, str, str | None]],
                  load_image: Callable[[str, str | None], Image.Image], gamma=None, pool=8,
                  progress: Progress | None = None, tags: dict[int, str] | None = None) -> FactorReport:
    """Compute and cache the factors of every item in ``rows`` (id, path, region) that has none yet, in-process.

    Rotation-max models get all 8 transforms per item. An interruption keeps every finished item, so a rerun
    continues where it stopped. ``tags`` (item id -> content tag) makes files of other content count as missing;
    an unreadable scan is reported in the result and the others go on. ``progress`` hears of each item done, and
    within an item of the backward's batches (the count of items stays, the message says how far the page is).
    """
    tags = tags or {}
    schedule = resolve_schedule(model, gamma)
    transforms = model_transforms(model)
    report = FactorReport()
    todo = [row for row in rows if not all(
        cache.is_current(model_key, schedule, pool, row[0], t, tags.get(int(row[0]), "")) for t in transforms)]
    report.cached = len(rows) - len(todo)
    for number, (item_id, path, region) in enumerate(todo, start=1):
        try:
            image = load_image(path, region)
        except Exception as error:  # one unreadable scan must not stop the corpus
            report.skipped.append((int(item_id), f"{path}: {error}"))
        else:
            done = report.cached + number - 1

            def batches(finished, total, _message, item_id=item_id, done=done):
                progress(done, len(rows), f"BiLRP factors {model_key}: {item_id} ({finished}/{total} batches)")

            x = model.preprocess(image)
            shape = input_size(x)
            for transform in transforms:
                factors = factors_of_input(model, x, schedule, pool, transform, None if progress is None else batches)
                cache.save(model_key, schedule, pool, item_id, factors, transform, tags.get(int(item_id), ""), shape)
            report.computed += 1
        if progress is not None:
            progress(report.cached + number, len(rows), f"BiLRP factors {model_key}: {item_id}")
    return report


@dataclass
class PairSide:
    """One image of a pair to explain: an uploaded image (``item_id`` None) or a corpus item.

    ``image`` is the PIL image, or a callable returning it (an item's scan is then only read when something needs
    its pixels: cached factors with their input size and a stored φ need none). ``phi`` is the item's stored φ
    when it has current features (else it is computed), ``tag`` its content tag (for the factor cache),
    ``offset`` where the item lies on its image file (a region's corner), ``size`` the (width, height) of what it
    shows when known without reading the scan.
    """

    image: Image.Image | Callable[[], Image.Image]
    item_id: int | None = None
    phi: np.ndarray | None = None
    tag: str | None = None
    offset: Size = (0, 0)
    size: Size | None = None

    def picture(self) -> Image.Image:
        """The image (read once, on first use)."""
        if callable(self.image):
            self.image = self.image()
        return self.image

    def original_size(self) -> Size:
        return self.size if self.size is not None else self.picture().size


def explain_pair(cache: FactorCache, model, model_key: str, sides: Sequence[PairSide], gamma=None,
                 pool=8, images: bool = True) -> Explanation:
    """BiLRP explanation of two images: items' factors through ``cache``, an upload's computed (not cached).

    For rotation-max models the pair of flips/rotations with the highest similarity is explained, on the images
    in their original orientation. With ``images=False`` the explanation carries no model input images (only
    their sizes): an item with a stored φ and cached factors that know their input size is then never read or
    preprocessed, which is what makes re-opening a cached pair fast.
    """
    from corpus_index.models import embed, transform_count

    schedule = resolve_schedule(model, gamma)
    inputs: dict[int, torch.Tensor] = {}

    def model_input(index: int) -> torch.Tensor:
        if index not in inputs:
            inputs[index] = model.preprocess(sides[index].picture())
        return inputs[index]

    group = transform_count(model)
    found: dict[int, CachedFactors] = {}

    def side_factors(index: int, transform: int | None) -> CachedFactors:
        side = sides[index]
        if side.item_id is None:
            x = model_input(index)
            factors, phi = factors_of_input(model, x, schedule, pool, transform, with_phi=True)
            return CachedFactors(factors, False, input_size(x), phi)
        return cached_factors(cache, model, model_key, side.item_id, side.picture, schedule, pool, transform,
                              tag=side.tag, sparse=True)

    if group == 1:  # no choice of flips: factors first, and a side without a stored φ takes it from their pass
        found = {index: side_factors(index, None) for index in range(len(sides))}
    phis = []
    for index, side in enumerate(sides):
        if side.phi is not None:
            phis.append(side.phi)
        elif index in found and found[index].phi is not None:
            phis.append(found[index].phi)
        else:  # an upload, or a model not built yet: one forward pass
            with torch.no_grad():
                phis.append(embed(model, model_input(index))[0].cpu().numpy())
    scores = phis[0].reshape(group, -1).astype(np.float64) @ phis[1].reshape(group, -1).astype(np.float64).T
    best = np.unravel_index(int(np.argmax(scores)), scores.shape)
    transforms = [None, None] if group == 1 else [int(t) for t in best]
    factors, cached, shapes = [], [], []
    for index, transform in enumerate(transforms):
        result = found[index] if index in found else side_factors(index, transform)
        factors.append(result.factors)
        cached.append(result.cached)
        shapes.append(result.input_shape or input_size(model_input(index)))
    pair = pair_from_factors(*factors)
    names = None
    if group > 1:
        from bilrp_core.rotation import TRANSFORMS

        names = tuple(TRANSFORMS[t][0] for t in transforms)
    pictures = [model_input_image(model, model_input(i), side.picture()) if images else None
                for i, side in enumerate(sides)]
    return Explanation(
        pair=pair, score=float(scores[best]), total=float(pair.sum(dtype=np.float64)),
        image1=pictures[0], image2=pictures[1], model_key=model_key, gamma=schedule, pool=pool,
        ids=tuple(side.item_id for side in sides), cached=tuple(cached), transforms=names,
        original_sizes=tuple(side.original_size() for side in sides), offsets=tuple(side.offset for side in sides),
        input_sizes=tuple((int(w), int(h)) for h, w in shapes))
