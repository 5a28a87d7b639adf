"""Cached BiLRP factors: each image's pooled relevance factors R(x) (h x H/p x W/p), computed once.

BiLRP(x, x') = sum_m R_m(x) (x) R_m(x'), and R(x) does not depend on the other image. So the factors of every
image are cached per (item, model key, gamma schedule, pool) in
``ROOT/factors/<model_key>/<gamma-hash>-p<pool>/<item_id>.npy`` (float32, written atomically), and explaining a
query against k neighbours costs k + 1 factor computations once, then one matrix product per pair.

The gamma hash is taken over the *resolved* schedule ({layer index: gamma} after applying the model's defaults),
as canonical JSON, so ``gamma=None`` and the explicit default schedule share one cache entry. Each folder holds
a ``spec.json`` saying which schedule and pool it is for.

Each file is a plain ``.npy`` array followed by a trailer line ``#corpus-index content:<tag>`` naming the
content tag of the item it was computed from (:func:`corpus_index.integrity.content_tag`; numpy ignores bytes
after the array). :meth:`FactorCache.get` serves a file only if its tag is the item's current one, otherwise
it computes the factors again (an item id reused after a lost database, a scan replaced in place, a file copied
over another's, a file from before trailers). A file shorter than its header promises raises
:class:`~corpus_index.integrity.DamagedFileError`; a build moves such files, and stale ones, to ``ROOT/replaced/``
(:meth:`FactorCache.repair`).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from corpus_index.atomic import atomic_write
from corpus_index.integrity import READ_ERRORS, DamagedFileError, set_aside_file
from corpus_index.progress import Progress

_TRAILER = b"#corpus-index content:"
_FILE_NAME = re.compile(r"^(\d+)(?:-t(\d+))?\.npy$")


def resolve_schedule(model: torch.nn.Module, gamma) -> dict:
    """The full gamma schedule for ``model`` as a JSON-ready dict (layer index as string -> float)."""
    import bilrp_core

    if isinstance(gamma, bool) or not (gamma is None or isinstance(gamma, numbers.Real | dict)):
        raise TypeError(f"gamma must be None, a number or a dict {{layer index: gamma}}, not {gamma!r}")
    inner = getattr(model, "model", None)  # RotationMax explains its wrapped model
    target = model if hasattr(model, "layers") or inner is None else inner
    schedule = bilrp_core.resolve_gamma(target, gamma)
    return {str(int(index)): float(value) for index, value in sorted(schedule.items())}


def gamma_hash(schedule: dict) -> str:
    """A short, stable hash of a resolved schedule (canonical JSON: sorted keys, no spaces)."""
    canonical = json.dumps(schedule, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def pool_tag(pool) -> str:
    """``8`` -> ``"p8"``, ``(8, 4)`` -> ``"p8x4"``."""
    if isinstance(pool, numbers.Integral):
        if pool < 1:
            raise ValueError(f"pool must be at least 1, got {pool}")
        return f"p{int(pool)}"
    ph, pw = (int(v) for v in pool)
    if ph < 1 or pw < 1:
        raise ValueError(f"pool must be at least 1, got {pool}")
    return f"p{ph}" if ph == pw else f"p{ph}x{pw}"


def model_input_image(model, x: torch.Tensor, original: Image.Image | None = None) -> Image.Image:
    """The image the model saw, as PIL at the model's input size, for drawing explanations on.

    In order: the model's own ``input_image(x)`` if it has one; the ``original`` scan resized to the input's
    size (right for models whose preprocessing rescales the whole page, like VGG-16 and the bigram network, and
    keeps the scan's colours rather than e.g. the bigram network's inverted ink); the input mapped back through
    the model's z^B input bounds (the values pixel 0 and 1 map to); else the tensor stretched to [0, 1].
    """
    for candidate in (model, getattr(model, "model", None)):
        if candidate is not None and callable(getattr(candidate, "input_image", None)):
            return candidate.input_image(x)
    height, width = x.shape[-2:]
    if original is not None:
        return original.convert("RGB").resize((int(width), int(height)), resample=Image.Resampling.BICUBIC)
    x = x.detach().float().cpu()[0]
    source = model if hasattr(model, "input_low") else getattr(model, "model", model)
    if hasattr(source, "input_low"):
        low, high = (t.detach().float().cpu().reshape(-1, 1, 1) for t in source.input_bounds)
        scaled = (x - low) / (high - low)
    else:
        scaled = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    pixels = (scaled.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        return Image.fromarray(pixels[:, :, 0], mode="L")
    return Image.fromarray(pixels[:, :, :3], mode="RGB")


@dataclass
class Explanation:
    """A BiLRP explanation of one pair, ready to draw.

    Attributes
    ----------
    pair : ndarray (H1/p, W1/p, H2/p, W2/p) float32
        Relevance of every pair of pool x pool patches; its sum is the explained similarity.
    score : float
        y = <phi(x), phi(x')>, the similarity the index shows.
    total : float
        ``pair.sum()``; equals ``score`` up to rounding for bias-free ReLU models (Proposition 1).
    image1, image2 : PIL.Image
        The two images as the model saw them (model input size), for drawing.
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
    """

    pair: np.ndarray
    score: float
    total: float
    image1: Image.Image
    image2: Image.Image
    model_key: str
    gamma: dict
    pool: int | tuple
    ids: tuple = (None, None)
    cached: tuple = field(default=(False, False))
    transforms: tuple | None = None

    def table(self, n: int = 20, sign: str = "both", original_sizes=None):
        """The ``n`` strongest patch pairs with pixel boxes (:func:`bilrp_core.render.top_pairs`)."""
        from bilrp_core.render import top_pairs

        sizes = (self.image1.size, self.image2.size)
        return top_pairs(self.pair, pool=self.pool, n=n, sign=sign, input_sizes=sizes, original_sizes=original_sizes)

    def draw(self, top: int = 30, sign: str = "both", **options) -> Image.Image:
        """Both images side by side with curves between the strongest pairs (:func:`bilrp_core.render.draw_pair`)."""
        from bilrp_core.render import draw_pair

        return draw_pair(self.image1, self.image2, self.pair, top=top, sign=sign, **options)


@dataclass
class FactorReport:
    """What a factor precomputation did: computed, already cached, skipped (id, reason)."""

    computed: int = 0
    cached: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


class FactorCache:
    """Per-item BiLRP factors on disk under ``ROOT/factors``.

    Parameters
    ----------
    root : path-like
        Corpus root.
    """

    def __init__(self, root: str | Path):
        self.corpus_root = Path(root)
        self.root = Path(root) / "factors"

    def folder(self, model_key: str, schedule: dict, pool) -> Path:
        """The folder of one (model key, schedule, pool); writes its ``spec.json`` on first use."""
        folder = self.root / model_key / f"{gamma_hash(schedule)}-{pool_tag(pool)}"
        spec = folder / "spec.json"
        if not spec.exists():
            text = json.dumps({"model_key": model_key, "gamma": schedule, "pool": pool}, indent=1)
            atomic_write(spec, lambda tmp: Path(tmp).write_text(text))
        return folder

    def path(self, model_key: str, schedule: dict, pool, item_id: int, transform: int | None = None) -> Path:
        """Where the factors of ``item_id`` live (``<id>.npy``; ``<id>-t<transform>.npy`` for rotation-max)."""
        name = f"{int(item_id)}.npy" if transform is None else f"{int(item_id)}-t{int(transform)}.npy"
        return self.folder(model_key, schedule, pool) / name

    def read(self, path: Path, model_key: str, data: bool = True) -> tuple[np.ndarray | None, str | None]:
        """(factors or None when ``data`` is False, content tag or None) of one file; damage -> DamagedFileError."""
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(handle)
                start = handle.tell()
                end = start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                handle.seek(0, 2)
                if handle.tell() < end:
                    raise ValueError(f"{handle.tell()} bytes, the array needs {end}")
                handle.seek(end)
                rest = handle.read(4096)
                array = None
                if data:
                    handle.seek(start)
                    array = np.fromfile(handle, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)))
                    array = array.reshape(shape, order="F" if fortran else "C")
        except FileNotFoundError:
            raise
        except READ_ERRORS as error:
            raise DamagedFileError(path, self.corpus_root, model_key, f"{type(error).__name__}: {error}") from None
        tag = None
        if rest.startswith(_TRAILER) and rest.endswith(b"\n"):
            tag = rest[len(_TRAILER):-1].decode("utf-8", "replace")
        return array, tag

    def load(self, model_key: str, schedule: dict, pool, item_id: int, transform: int | None = None,
             tag: str | None = None) -> np.ndarray | None:
        """Cached factors, or None when never computed or (given ``tag``) computed from other content.

        Raises
        ------
        DamagedFileError
            If the file is truncated or not an array (a build repairs it).
        """
        try:
            array, stored = self.read(self.path(model_key, schedule, pool, item_id, transform), model_key)
        except FileNotFoundError:
            return None
        if tag is not None and stored != tag:
            return None
        return array

    def save(self, model_key: str, schedule: dict, pool, item_id: int, factors,
             transform: int | None = None, tag: str = "") -> Path:
        """Store factors (h, H/p, W/p) as float32 with the item's content tag, atomically."""
        array = factors.detach().cpu().numpy() if isinstance(factors, torch.Tensor) else np.asarray(factors)
        array = np.ascontiguousarray(array, dtype=np.float32)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
                handle.write(_TRAILER + str(tag).encode("utf-8") + b"\n")

        return atomic_write(self.path(model_key, schedule, pool, item_id, transform), write)

    def is_current(self, model_key: str, schedule: dict, pool, item_id: int, transform: int | None,
                   tag: str | None) -> bool:
        """Whether a readable file with this content tag is cached (damaged files count as missing)."""
        try:
            return self.read(self.path(model_key, schedule, pool, item_id, transform), model_key, False)[1] == tag
        except (FileNotFoundError, DamagedFileError):
            return False

    def repair(self, model_key: str, tags: dict[int, str]) -> list[Path]:
        """Move damaged files, and files not tagged with their item's current content, to ``ROOT/replaced/``.

        ``tags`` maps every item id to its content tag; files of items no longer in the corpus are left alone.
        Only headers and trailers are read. Returns the new paths of the moved files.
        """
        moved = []
        for path in sorted((self.root / model_key).glob("*/*.npy")):
            match = _FILE_NAME.match(path.name)
            if match is None or int(match[1]) not in tags:
                continue
            try:
                stale = self.read(path, model_key, data=False)[1] != tags[int(match[1])]
            except FileNotFoundError:
                continue
            except DamagedFileError:
                stale = True
            if stale:
                moved.append(set_aside_file(self.corpus_root, model_key, path))
        return moved

    def get(self, model, model_key: str, item_id: int, image: Callable[[], Image.Image], gamma=None, pool=8,
            transform: int | None = None, tag: str | None = None) -> tuple[np.ndarray, bool]:
        """Factors of one item, computed (and cached) on first use.

        Parameters
        ----------
        model : SimilarityModel or RotationMax
            The model ``model_key`` names.
        model_key : str
        item_id : int
        image : callable
            Returns the item's PIL image (only called on a cache miss).
        gamma : None, float or dict
        pool : int or (int, int)
        transform : int, optional
            Rotation-max models: which flip/rotation (factors mapped back to the original orientation);
            default 0 (the identity).
        tag : str, optional
            The item's current content tag: a cached file with another tag is computed again (and replaced).

        Returns
        -------
        factors : ndarray (h, H/p, W/p) float32
        cached : bool
            Whether they came from the cache.
        """
        transform = _check_transform(model, transform)
        schedule = resolve_schedule(model, gamma)
        factors = self.load(model_key, schedule, pool, item_id, transform, tag)
        if factors is not None:
            return factors, True
        factors = compute_factors(model, image(), schedule, pool, transform)
        self.save(model_key, schedule, pool, item_id, factors, transform, tag or "")
        return factors, False

    def precompute(self, model, model_key: str, rows: Sequence[tuple[int, str, str | None]],
                   load_image: Callable[[str, str | None], Image.Image], gamma=None, pool=8,
                   progress: Progress | None = None, tags: dict[int, str] | None = None) -> FactorReport:
        """Compute and cache the factors of every item in ``rows`` that has none yet (in-process).

        Rotation-max models get all 8 transforms per item. An interruption keeps every finished item, so a rerun
        continues where it stopped. ``tags`` (item id -> content tag) makes files of other content count as
        missing.
        """
        tags = tags or {}
        schedule = resolve_schedule(model, gamma)
        transforms = model_transforms(model)
        report = FactorReport()
        todo = []
        for item_id, path, region in rows:
            if all(self.is_current(model_key, schedule, pool, item_id, t, tags.get(int(item_id), ""))
                   for t in transforms):
                report.cached += 1
            else:
                todo.append((item_id, path, region))
        for number, (item_id, path, region) in enumerate(todo, start=1):
            try:
                image = load_image(path, region)
            except Exception as error:  # one unreadable scan must not stop the corpus
                report.skipped.append((int(item_id), f"{path}: {error}"))
            else:
                for transform in transforms:
                    factors = compute_factors(model, image, schedule, pool, transform)
                    self.save(model_key, schedule, pool, item_id, factors, transform, tags.get(int(item_id), ""))
                report.computed += 1
            if progress is not None:
                progress(report.cached + number, len(rows), f"BiLRP factors {model_key}: {item_id}")
        return report


def model_transforms(model) -> list[int | None]:
    """The transforms whose factors an item has: ``[None]``, or ``[0, ..., 7]`` for rotation-max models."""
    from corpus_index.models import transform_count

    count = transform_count(model)
    return [None] if count == 1 else list(range(count))


def _check_transform(model, transform: int | None) -> int | None:
    transforms = model_transforms(model)
    if transforms == [None]:
        if transform not in (None, 0):
            raise ValueError(f"transform={transform}: this model has no flips/rotations")
        return None
    transform = 0 if transform is None else int(transform)
    if transform not in transforms:
        raise ValueError(f"transform must be one of {transforms}, got {transform}")
    return transform


def compute_factors(model, image: Image.Image, schedule: dict, pool, transform: int | None = None) -> np.ndarray:
    """R(x) of one image (``bilrp_core.relevance_factors`` on the preprocessed image) as float32 numpy.

    For rotation-max models, the factors of tau_transform(x) mapped back to the orientation of x.
    """
    import bilrp_core

    gamma = {int(index): value for index, value in schedule.items()}
    x = model.preprocess(image)
    if transform is None:
        factors = bilrp_core.relevance_factors(model, x, gamma=gamma, pool=pool)
    else:
        factors = model.relevance_factors(x, transform, gamma=gamma, pool=pool)
    return factors.detach().cpu().numpy().astype(np.float32)


def pair_from_factors(factors1: np.ndarray, factors2: np.ndarray) -> np.ndarray:
    """The pair matrix sum_m R_m(x) (x) R_m(x') from cached factors: one matrix product."""
    import bilrp_core

    return bilrp_core.pair_matrix(torch.from_numpy(factors1), torch.from_numpy(factors2)).numpy()
