"""Building a model's features, index and factor cache from a corpus's :class:`~corpus_index.storage.store.Store`.

A build is also the repair command. Before computing anything it re-hashes the scans that changed since their
last check (:mod:`corpus_index.storage.rehash`), moves damaged and unverifiable feature batches, index files and
factor files to ``ROOT/replaced/`` (:mod:`corpus_index.storage.integrity`), and then computes every item whose
stored vector was not computed from its current content (hash and region). The index is synced with the current
vectors only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from corpus_index.explanation import cache_factors, model_transforms, resolve_schedule
from corpus_index.local_engine import iter_local_batches
from corpus_index.models import canonical_key, load_model, transform_count
from corpus_index.progress import Progress
from corpus_index.storage.factor_cache import FactorCache, FactorReport
from corpus_index.storage.faiss_index import VectorIndex, expand_rows
from corpus_index.storage.features import FeatureReport, FeatureStore, build_features
from corpus_index.storage.model_stamp import is_stale, set_aside, write_stamp
from corpus_index.storage.rehash import refresh_hashes
from corpus_index.storage.store import Store

#: Patch sizes (model-input pixels) explanations offer, smallest first; each divides the next.
POOLS = (4, 8, 16, 32, 64)


@dataclass
class BuildReport:
    """What :meth:`Corpus.build` did: the feature run, the index update and (optionally) the factor run."""

    model_key: str
    features: FeatureReport
    index_kind: str
    index_added: int
    index_size: int
    factors: FactorReport | None = None
    set_aside: list = field(default_factory=list)
    rehashed: list[int] = field(default_factory=list)

    def summary(self) -> str:
        """A short human-readable account (with the first skipped items and their reasons)."""
        f = self.features
        lines = [f"{self.model_key}: {f.computed} computed, {f.reused} already done, {len(f.skipped)} skipped "
                 f"in {f.seconds:.1f} s; {self.index_kind} index holds {self.index_size} items "
                 f"({self.index_added} added)"]
        if self.rehashed:
            lines.append(f"  {len(self.rehashed)} scans changed since ingest (items {self.rehashed[:10]}); "
                         "their data was computed again")
        if self.set_aside:
            lines.append(f"  {len(self.set_aside)} damaged or stale files moved to {self.set_aside[0].parent}")
        lines += [f"  skipped item {item_id}: {reason}" for item_id, reason in f.skipped[:10]]
        if self.factors is not None:
            lines.append(f"  BiLRP factors: {self.factors.computed} computed, {self.factors.cached} cached, "
                         f"{len(self.factors.skipped)} skipped")
        return "\n".join(lines)


def build_model(store: Store, model_key: str, features: FeatureStore | None = None,
                factor_cache: FactorCache | None = None, batch_size: int = 16, progress: Progress | None = None,
                engine: str = "local", address: str | None = None, index: str = "flat", factors: bool = False,
                gamma=None, pool=8, concurrency: int = 2) -> BuildReport:
    """Compute missing features, update the index, and optionally precompute BiLRP factors.

    Parameters
    ----------
    store : Store
        The corpus's store (its root holds the features, indexes and factors).
    model_key : str
        A key of :mod:`corpus_index.models`.
    features, factor_cache : FeatureStore, FactorCache, optional
        The caller's objects for this root and key (their in-memory caches stay in step); made here if omitted.
    batch_size : int
        Images per forward pass.
    progress : callable, optional
        ``progress(done, total, message)``; raising from it interrupts the build (finished batches stay).
    engine : {"local", "ray"}
        In-process, or Ray Data (:mod:`corpus_index.ray_engine`) at ``address``.
    index : {"flat", "hnsw", "ivfpq"}
        Which index to update (exact inner product by default).
    factors : bool
        Also cache every item's BiLRP factors for ``gamma`` and ``pool`` (``"auto"``: the model's
        :func:`default_pool`, what explanations use unless told otherwise).
    concurrency : int
        Ray workers.
    """
    key = canonical_key(model_key)
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model = load_model(key)  # also validates the key (and weights) before any work starts
    root = store.root
    features = features if features is not None else FeatureStore(root, key)
    factor_cache = factor_cache if factor_cache is not None else FactorCache(root)
    rehash = refresh_hashes(store)
    left_out = {item_id for item_id, _ in rehash.conflicts}
    rows = [row for row in store.item_rows() if row[0] not in left_out]
    tags = {i: t for i, t in store.content_tags().items() if i not in left_out}
    if is_stale(root, key, model, features.dim(), lambda: model_dim(model)):
        moved = set_aside(root, key)
        if progress is not None:
            progress(0, len(rows), f"{key}: stored data came from another version of the model; moved to {moved}")
    write_stamp(root, key, model)  # before the first batch: a crash mid-build leaves stamped data
    if engine == "ray":
        from corpus_index.ray_engine import iter_feature_batches

        def batches(missing):
            return iter_feature_batches(key, missing, batch_size, address=address, concurrency=concurrency)
    else:
        def batches(missing):
            return iter_local_batches(model, missing, batch_size)

    factor_files = factor_cache.repair(key, tags)
    feature_report = build_features(
        features, rows, batches, progress=progress,
        on_batch=lambda ids: store.mark_features(key, ids),
        on_start=lambda have: store.reconcile_features(key, have), expected=tags)
    feature_report.skipped.extend(rehash.conflicts)
    if progress is not None:
        progress(len(rows), len(rows), f"{key}: writing the {index} index")
    vector_index = VectorIndex(root, key, index)
    group = transform_count(model)  # rotation-max models: 8 index rows per item
    added = sync_index(vector_index, features, [row[0] for row in rows], tags, group)
    report = BuildReport(key, feature_report, index, added, len(vector_index) // group,
                         set_aside=feature_report.set_aside + factor_files, rehashed=rehash.changed)
    if factors:
        report.factors = precompute_factors(store, factor_cache, key, gamma=gamma, pool=pool, progress=progress,
                                            engine=engine, address=address, concurrency=concurrency)
    return report


def sync_index(vector_index: VectorIndex, features: FeatureStore, item_ids: Sequence[int], tags: dict[int, str],
               group: int) -> int:
    """Make the index hold exactly the stored vectors of these items' current content; returns items added.

    Vectors of deleted items, and the old vector of a scan replaced by an unreadable file, stay out. ``group``
    is the number of index rows per item (8 for rotation-max models).
    """
    ids, vectors = features.load()
    if not len(ids):
        return 0
    known = np.isin(ids, np.intersect1d(features.current_ids(tags), list(item_ids)))
    row_tags = np.repeat(np.asarray([tags[int(i)] for i in ids[known]], dtype=str), group)
    return vector_index.sync(*expand_rows(ids[known], vectors[known], group), tags=row_tags) // group


def model_dim(model) -> int:
    """Length of φ for one image (a blank page through the model's own preprocessing)."""
    import torch
    from PIL import Image

    from corpus_index.models import embed

    with torch.no_grad():
        return int(embed(model, model.preprocess(Image.new("L", (64, 64), 255))).shape[-1])


def default_pool(model_key: str) -> int:
    """The patch size a model's explanations use by default, the same for every pair of the model.

    The bigram network sees pages normalised to one print size, where a table row is about 20–30 px tall:
    16-px patches keep neighbouring rows apart. Other models (VGG-16's fixed-size input) use the paper's 8-px
    patches. The explorer's Explain page starts with it; ``pool="auto"`` precomputes it.
    """
    from corpus_index.models import parse_model_key

    try:
        family = parse_model_key(model_key).family
    except ValueError:  # a custom or malformed key: the paper's patches
        return 8
    return 16 if family == "bigram" else 8


def precompute_factors(store: Store, factor_cache: FactorCache, model_key: str,
                       item_ids: Sequence[int] | None = None, gamma=None, pool=8, progress: Progress | None = None,
                       engine: str = "local", address: str | None = None, concurrency: int = 2) -> FactorReport:
    """Cache the BiLRP factors of these items (default: all) for ``gamma`` and ``pool``.

    In-process (:func:`corpus_index.explanation.cache_factors`), or on Ray Data with ``engine="ray"``.
    ``pool="auto"`` caches what explanations use unless told otherwise: the model's :func:`default_pool`, and the
    coarser sizes of :data:`POOLS` an explanation falls back to when a pair of large pages would give too many
    patch pairs at the default (summed from the default's factors, :func:`add_coarser_pools`; no extra
    backward pass).
    """
    if pool == "auto":
        pool = default_pool(canonical_key(model_key))
        report = precompute_factors(store, factor_cache, model_key, item_ids, gamma, pool, progress, engine,
                                    address, concurrency)
        add_coarser_pools(store, factor_cache, model_key, item_ids, gamma, pool)
        return report
    key = canonical_key(model_key)
    model = load_model(key)
    rows = store.item_rows(item_ids)
    tags = store.content_tags(None if item_ids is None else [row[0] for row in rows])
    if engine != "ray":
        from corpus_index.local_engine import open_image

        return cache_factors(factor_cache, model, key, rows, open_image, gamma, pool, progress, tags)
    from corpus_index.ray_engine import iter_factor_results

    schedule = resolve_schedule(model, gamma)
    report = FactorReport()
    transforms = model_transforms(model)
    todo = [r for r in rows
            if not all(factor_cache.is_current(key, schedule, pool, r[0], t, tags.get(r[0], ""))
                       for t in transforms)]
    report.cached = len(rows) - len(todo)
    for ids, arrays, inputs, skipped in iter_factor_results(key, todo, schedule, pool, address=address,
                                                            concurrency=concurrency):
        for item_id, array, input_shape in zip(ids, arrays, inputs, strict=True):
            # One array per item: (h, H/p, W/p), or (8, h, H/p, W/p) for rotation-max models.
            parts = [array] if transforms == [None] else list(array)
            for transform, part in zip(transforms, parts, strict=True):
                factor_cache.save(key, schedule, pool, int(item_id), part, transform, tags[int(item_id)],
                                  input_shape)
        report.computed += len(ids)
        report.skipped.extend(skipped)
        if progress is not None:
            progress(report.cached + report.computed + len(report.skipped), len(rows), f"factors {key}")
    return report


def coarsen_factors(factors: np.ndarray, ratio: int) -> np.ndarray:
    """Factors (h, H/p, W/p) of patch size p turned into those of patch size ``ratio`` · p.

    Factors are sums of relevance over zero-padded patches (:func:`bilrp_core.attribution.sum_pool`), so summing
    ``ratio`` × ``ratio`` blocks of them gives the coarser factors exactly (up to float rounding).
    """
    import torch

    from bilrp_core.attribution import sum_pool

    return sum_pool(torch.from_numpy(np.ascontiguousarray(factors)), int(ratio)).numpy()


def add_coarser_pools(store: Store, factor_cache: FactorCache, model_key: str, item_ids: Sequence[int] | None,
                      gamma, pool: int) -> int:
    """Cache, for items whose factors at ``pool`` are cached, those of every coarser size of :data:`POOLS` that
    ``pool`` divides (:func:`coarsen_factors`); returns the files written.

    Not for rotation-max models: they pool in each turned image's orientation, which summing cannot reproduce.
    """
    key = canonical_key(model_key)
    model = load_model(key)
    if transform_count(model) > 1:
        return 0
    schedule = resolve_schedule(model, gamma)
    coarser = [p for p in POOLS if p > pool and p % pool == 0]
    written = 0
    for item_id, tag in store.content_tags(item_ids).items():
        todo = [p for p in coarser if not factor_cache.is_current(key, schedule, p, item_id, None, tag)]
        fine = factor_cache.load_entry(key, schedule, pool, item_id, None, tag) if todo else None
        for coarse in todo if fine is not None else []:
            factor_cache.save(key, schedule, coarse, item_id, coarsen_factors(fine[0], coarse // pool), None, tag,
                              fine[1])
            written += 1
    return written
