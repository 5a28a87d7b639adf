"""The :class:`Corpus` facade: one object for a corpus root (store, features, indexes, factor cache).

Everything the app and the CLI do goes through it (docs/design.md). The paths under the root are named in
:mod:`corpus_index.storage.layout`; builds are :mod:`corpus_index.build`'s, explanations
:mod:`corpus_index.explanation`'s.

Stored features, index rows and factors are used for an item only if they carry its current content tag
(:mod:`corpus_index.storage.integrity`): otherwise a query or explanation raises :class:`StaleContentError` (features,
index) or computes the factors again, and a damaged file raises
:class:`~corpus_index.storage.integrity.DamagedFileError`; ``build`` repairs both.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from corpus_index import explanation as ex
from corpus_index.build import BuildReport, build_model, model_dim, precompute_factors
from corpus_index.errors import CorpusNotFoundError, ItemNotFoundError, StaleModelDataError
from corpus_index.filters import check_filters
from corpus_index.local_engine import compute_batch
from corpus_index.models import canonical_key, key_transform_count, load_model
from corpus_index.progress import Progress
from corpus_index.storage.factor_cache import FactorCache, FactorReport
from corpus_index.storage.faiss_index import INDEX_KINDS, IndexMissingError, VectorIndex
from corpus_index.storage.features import FeatureStore
from corpus_index.storage.integrity import StaleContentError, check_index
from corpus_index.storage.layout import Layout
from corpus_index.storage.model_stamp import is_stale
from corpus_index.storage.store import Store, parse_region

# Errors a caller of the facade catches, importable from here.
__all__ = ["Corpus", "CorpusNotFoundError", "ItemNotFoundError", "StaleContentError", "StaleModelDataError"]


#: φ of items without stored features kept from their factors' forward pass (a few pages' worth of explanations).
PHIS_KEPT = 256
#: Preprocessed scans kept from :meth:`Corpus.input_shape` for the factors computed next (an uncached pair).
INPUTS_KEPT = 4


def _keep(kept: OrderedDict, key: tuple, value, limit: int) -> None:
    """Keep ``value`` under ``key``, letting go of the oldest entries beyond ``limit``."""
    kept[key] = value
    while len(kept) > limit:
        kept.popitem(last=False)


class Corpus:
    """A corpus root folder.

    Parameters
    ----------
    root : path-like
        The root folder.
    store : Store
        Its metadata store.
    """

    def __init__(self, root: str | Path, store: Store):
        self.root = Path(root).expanduser().resolve()
        self.layout = Layout(self.root)
        self.store = store
        self.factor_cache = FactorCache(self.root)
        self._feature_stores: dict[str, FeatureStore] = {}
        self._current: set[str] = set()  # model keys whose stored data was checked against the current model
        self._verified: dict[str, tuple] = {}  # index file -> signature of the files last found to match the store
        # φ of items without stored features, from the forward pass that computed their factors: (key, id, tag) -> φ
        self._phis_computed: OrderedDict[tuple, np.ndarray] = OrderedDict()
        # model inputs preprocessed for their shape, until their factors are computed: (key, id, tag) -> tensor
        self._inputs: OrderedDict[tuple, object] = OrderedDict()

    @classmethod
    def open(cls, root: str | Path, create: bool = False) -> Corpus:
        """Open the corpus at ``root``; with ``create=True`` make it if missing.

        Raises
        ------
        CorpusNotFoundError
            If there is no corpus at ``root`` and ``create`` is False.
        """
        root = Path(root).expanduser()
        if not create and not Layout(root).db.is_file():
            raise CorpusNotFoundError(f"no corpus at {root} (missing {Layout(root).db}); create one with "
                                      "'python -m corpus_index --root ROOT ingest ...' or 'demo'")
        return cls(root, Store(root, create=create))

    def __deepcopy__(self, memo) -> Corpus:
        """The corpus itself: a handle on one folder and its database, shared, never duplicated (Streamlit copies
        the arguments of a fragment, e.g. the Neighbours page's readiness captions, on every call)."""
        return self

    def close(self) -> None:
        """Close the store's database connections."""
        self.store.close()

    # -- ingest and metadata ------------------------------------------------------------------------------------
    def ingest_folder(self, folder, metadata_csv=None, progress: Progress | None = None):
        """Ingest a folder of scans (see :func:`corpus_index.ingest.folder.ingest_folder`); returns an IngestReport."""
        from corpus_index.ingest.folder import ingest_folder

        return ingest_folder(self.store, folder, metadata_csv=metadata_csv, progress=progress)

    def ingest_iiif(self, manifest, max_size: int = 1600, progress: Progress | None = None, **options):
        """Ingest a IIIF manifest (path or URL; see :func:`corpus_index.ingest.iiif.ingest_iiif`; images go to ROOT)."""
        from corpus_index.ingest.iiif import ingest_iiif

        return ingest_iiif(self.store, manifest, max_size=max_size, progress=progress, **options)

    def count(self, **filters) -> int:
        """Number of items matching the filters."""
        return self.store.count_items(**filters)

    def items(self, limit: int | None = None, offset: int = 0, **filters) -> pd.DataFrame:
        """Items matching the filters as a DataFrame (id, path, kind, book, title, ..., year, ...)."""
        return self.store.query_items(limit=limit, offset=offset, **filters)

    def item(self, item_id: int) -> dict[str, Any]:
        """One item's metadata; raises :class:`ItemNotFoundError` for an unknown id."""
        try:
            return self.store.get_item(int(item_id))
        except KeyError:
            raise ItemNotFoundError(f"no item with id {item_id} in the corpus at {self.root}") from None

    def image(self, item_id: int) -> Image.Image:
        """The item's image (RGB, cropped to its region)."""
        from corpus_index.ingest.images import load_item_image

        item = self.item(item_id)
        return load_item_image(self.store.resolve_path(item["path"]), item.get("region"))

    def thumbnail(self, item_id: int) -> Image.Image:
        """The item's thumbnail (made from the image when the file is missing)."""
        from corpus_index.ingest.images import make_thumbnail

        item = self.item(item_id)
        if item.get("thumb"):
            path = self.store.resolve_path(item["thumb"])
            if path.is_file():
                with Image.open(path) as thumb:
                    return thumb.convert("RGB")
        return make_thumbnail(self.image(item_id))

    # -- features and indexes -----------------------------------------------------------------------------------
    def features(self, model_key: str) -> FeatureStore:
        """The feature batches of a model key."""
        key = canonical_key(model_key)
        if key not in self._feature_stores:
            self._feature_stores[key] = FeatureStore(self.root, key)
        return self._feature_stores[key]

    def stored_vectors(self, model_key: str, item_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stored φ ``(ids, vectors)`` of these items (default: all) that were computed from their current content.

        Items whose stored features came from other content (a replaced scan, a reused id) are left out, like
        items without features: a caller computes them or asks for a build, never uses them.
        """
        features = self.features(model_key)
        return features.load(features.current_ids(self.store.content_tags(item_ids)))

    def index(self, model_key: str, kind: str | None = None) -> VectorIndex:
        """The index of a model key: ``kind``, or the exact one if built, else an approximate one."""
        key = canonical_key(model_key)
        if kind is not None:
            return self._checked(VectorIndex(self.root, key, kind))
        for candidate in INDEX_KINDS:
            index = VectorIndex(self.root, key, candidate)
            if index.exists():
                return self._checked(index)
        raise IndexMissingError(f"no index for model {key} in {self.root}; run "
                                f"'python -m corpus_index --root {self.root} build --model {key}'")

    def _checked(self, index: VectorIndex) -> VectorIndex:
        """``index`` after :func:`~corpus_index.storage.integrity.check_index` (once per version of its files)."""
        return check_index(index, self.store, self._verified)

    def _tag(self, item_id: int) -> str:
        """The content tag of one item (its stored data must carry it)."""
        return self.store.content_tags([int(item_id)])[int(item_id)]

    def indexed_count(self, model_key: str, kind: str | None = None) -> int:
        """Number of items in the index of a model key (0 when there is none); reads, but does not verify, it."""
        key = canonical_key(model_key)
        group = key_transform_count(key)
        kinds = [kind] if kind is not None else INDEX_KINDS
        for candidate in kinds:
            index = VectorIndex(self.root, key, candidate)
            if index.exists():
                return len(index) // group
        return 0

    def models(self) -> list[str]:
        """Model keys that have an index in this corpus."""
        return self.layout.indexed_keys()

    def stale_models(self) -> list[str]:
        """Indexed model keys whose stored data came from another version of the model (rebuild them).

        Loads each indexed model once to learn its current version (see :mod:`corpus_index.storage.model_stamp`).
        """
        return [key for key in self.models() if self._stale(key)]

    def _stale(self, key: str) -> bool:
        """Checked once per key and process (loads the model); data found current stays current until rebuilt."""
        if key in self._current:
            return False
        model = load_model(key)
        stored = self.features(key).dim()
        stale = is_stale(self.root, key, model, stored, lambda: model_dim(model))
        if not stale:
            self._current.add(key)
        return stale

    def _check_current(self, key: str) -> None:
        """Refuse to mix cached factors of an old model version with the current model's."""
        if self._stale(key):
            raise StaleModelDataError(
                f"the stored features, index and factors of model {key} in {self.root} come from another version "
                f"of the model; rebuild them with 'python -m corpus_index --root {self.root} build --model {key}'")

    def build(self, model_key: str, batch_size: int = 16, progress: Progress | None = None, engine: str = "local",
              address: str | None = None, index: str = "flat", factors: bool = False, gamma=None, pool=8,
              concurrency: int = 2) -> BuildReport:
        """Compute missing features, update the index, optionally cache BiLRP factors.

        See :func:`corpus_index.build.build_model` for the parameters.
        """
        key = canonical_key(model_key)
        report = build_model(self.store, key, self.features(key), self.factor_cache, batch_size=batch_size,
                             progress=progress, engine=engine, address=address, index=index, factors=factors,
                             gamma=gamma, pool=pool, concurrency=concurrency)
        self._current.add(key)  # its stored data now comes from the current model
        return report

    def precompute_factors(self, model_key: str, item_ids: Sequence[int] | None = None, gamma=None, pool=8,
                           progress: Progress | None = None, engine: str = "local", address: str | None = None,
                           concurrency: int = 2) -> FactorReport:
        """Cache the BiLRP factors of these items (default: all) for ``gamma`` and ``pool``."""
        return precompute_factors(self.store, self.factor_cache, model_key, item_ids, gamma=gamma, pool=pool,
                                  progress=progress, engine=engine, address=address, concurrency=concurrency)

    # -- search -------------------------------------------------------------------------------------------------
    def query_vector(self, model_key: str, item_id: int | None = None, image=None) -> np.ndarray:
        """phi of a corpus item (from its stored features) or of an image (PIL image or path).

        Rotation-max models give the 8 vectors phi(tau x) concatenated (8 h,).
        """
        key = canonical_key(model_key)
        if (item_id is None) == (image is None):
            raise ValueError("give exactly one of item_id or image")
        if item_id is not None:
            self.item(item_id)  # unknown id -> ItemNotFoundError
            try:
                return self.features(key).vector(int(item_id), tag=self._tag(item_id))
            except KeyError as error:
                raise ItemNotFoundError(str(error.args[0])) from None
        upload = [_as_image(image)]
        ids, vectors, skipped = compute_batch(load_model(key), [(-1, "uploaded image", None)], images=upload)
        if skipped:
            raise ValueError(f"cannot compute features of the image: {skipped[0][1]}")
        return vectors[0]

    def search(self, model_key: str, item_id: int | None = None, image=None, k: int = 10,
               exclude_same_book: bool = False, index: str | None = None, **filters) -> pd.DataFrame:
        """The k nearest items by <phi(x), phi(x')>, with metadata filters.

        Parameters
        ----------
        model_key : str
        item_id : int, optional
            Query by a corpus item (excluded from its own results).
        image : PIL.Image or path, optional
            Query by an uploaded image.
        k : int
        exclude_same_book : bool
            Leave out the query item's book.
        index : {"flat", "hnsw", "ivfpq"}, optional
            Which index (default: the exact one if built).
        **filters
            ``kind``, ``book``, ``year_min``, ``year_max``, ``place``, ``printer``, ``group``.

        Returns
        -------
        pandas.DataFrame
            ``rank, id, score`` then the item metadata; ``attrs["exact"]`` says whether the index is exact.
        """
        check_filters(filters)
        vector_index = self.index(model_key, index)
        query = self.query_vector(model_key, item_id=item_id, image=image)
        excluded = []
        if item_id is not None:
            excluded.append(int(item_id))
            book = self.item(item_id).get("book")
            if exclude_same_book and book:
                excluded.extend(int(i) for i in self.store.query_items(book=book)["id"])
        group = key_transform_count(model_key)
        items, scores = vector_index.search_items(query, k, allowed=self.store.filtered_ids(**filters),
                                                  excluded=np.asarray(excluded, dtype=np.int64), group=group)[0]
        return self._result_frame(items, scores, vector_index.exact)

    def _result_frame(self, labels: np.ndarray, scores: np.ndarray, exact: bool) -> pd.DataFrame:
        keep = labels >= 0
        hits = pd.DataFrame({"rank": np.arange(1, int(keep.sum()) + 1), "id": labels[keep].astype(np.int64),
                             "score": scores[keep].astype(np.float64)})
        meta = self.store.query_items(ids=hits["id"].tolist()).drop(columns=["hash"], errors="ignore")
        frame = hits.merge(meta, on="id", how="left")
        frame.attrs["exact"] = exact
        return frame

    def export(self, model_key: str, item_ids: Sequence[int] | None = None, k: int = 10,
               exclude_same_book: bool = False, index: str | None = None, progress: Progress | None = None,
               **filters) -> pd.DataFrame:
        """Neighbours of many items (default: every item with features) as one long table.

        Columns: ``query_id, query_book, rank, id, score`` and the neighbour's metadata. Queries go to faiss in
        chunks; each over-fetches to drop the query itself (and its book when asked).
        """
        from corpus_index.export import export_neighbours

        return export_neighbours(self, model_key, item_ids, k, exclude_same_book, index, progress, **filters)

    # -- explanations -------------------------------------------------------------------------------------------
    def factors(self, model_key: str, item_id: int | None = None, image=None, gamma=None, pool=8,
                transform: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """BiLRP factors R(x) (h, H/p, W/p) of an item (cached) or of an image (computed, not cached).

        ``transform`` picks a flip/rotation of rotation-max models (default: the identity); ``progress`` hears of
        the backward's batches while the factors are computed.
        """
        key = canonical_key(model_key)
        model = load_model(key)
        if (item_id is None) == (image is None):
            raise ValueError("give exactly one of item_id or image")
        if item_id is not None:
            self.item(item_id)
            self._check_current(key)
            tag = self._tag(item_id)
            kept = self._inputs.pop((key, int(item_id), tag), None)  # preprocessed by input_shape just before
            found = ex.cached_factors(self.factor_cache, model, key, int(item_id), lambda: self.image(item_id),
                                      gamma, pool, transform, tag=tag, progress=progress,
                                      model_input=None if kept is None else lambda: kept)
            if found.phi is not None:  # an explanation of the item then needs no second forward pass for φ
                _keep(self._phis_computed, (key, int(item_id), tag), found.phi, PHIS_KEPT)
            return found.factors
        transform = ex.check_transform(model, transform)
        return ex.compute_factors(model, _as_image(image), ex.resolve_schedule(model, gamma), pool, transform,
                                  progress)

    def input_shape(self, model_key: str, item_id: int) -> tuple[int, int]:
        """(H, W) of an item as the model's input: kept with its cached factors, else from preprocessing its scan
        (the bigram network keeps a page's size, scaled to its print)."""
        key, tag = canonical_key(model_key), self._tag(item_id)
        shape = self.factor_cache.input_shape(key, int(item_id), tag)
        if shape is None:  # no factors yet: they are usually computed next, from this same input
            x = load_model(key).preprocess(self.image(int(item_id)))
            _keep(self._inputs, (key, int(item_id), tag), x, INPUTS_KEPT)
            shape = ex.input_size(x)
        return shape

    def explain(self, model_key: str, id1: int, id2: int, gamma=None, pool=8, images: bool = True) -> ex.Explanation:
        """BiLRP explanation of the similarity of two items, from cached factors (computed on first use).

        For rotation-max models, the pair of flips/rotations with the highest similarity is explained, on the
        images in their original orientation. Its table of patch pairs gives boxes on the items' image files
        (a region item's on its page). ``images=False`` leaves out the model input images (only
        :meth:`~corpus_index.explanation.Explanation.draw` needs them): with cached factors no scan is read.
        """
        key = canonical_key(model_key)
        model = load_model(key)
        self._check_current(key)
        schedule = ex.resolve_schedule(model, gamma)  # a bad γ is refused before any image is read
        sides = [self._pair_side(key, int(id1)), self._pair_side(key, int(id2))]
        return ex.explain_pair(self.factor_cache, model, key, sides, schedule, pool, images)

    def explain_image(self, model_key: str, image, item_id: int, gamma=None, pool=8,
                      images: bool = True) -> ex.Explanation:
        """BiLRP explanation of (an uploaded image, a corpus item): the upload's factors are computed (not
        cached), the item's come from the cache. ``image`` is a PIL image or a path."""
        image = _as_image(image)
        key = canonical_key(model_key)
        model = load_model(key)
        self._check_current(key)
        schedule = ex.resolve_schedule(model, gamma)
        sides = [ex.PairSide(image=image), self._pair_side(key, int(item_id))]
        return ex.explain_pair(self.factor_cache, model, key, sides, schedule, pool, images)

    def _pair_side(self, key: str, item_id: int) -> ex.PairSide:
        """An item as one side of a pair: its image (read when needed), stored φ (if current), content tag, place on
        its file and size."""
        item = self.item(item_id)
        region = parse_region(item.get("region"))
        tag = self._tag(item_id)
        try:
            phi = self.features(key).vector(item_id, tag=tag)
        except KeyError:  # not built for this item: φ of its factors' pass, else the explanation computes it
            phi = self._phis_computed.get((key, int(item_id), tag))
        size = (item["width"], item["height"]) if item.get("width") and item.get("height") else None
        return ex.PairSide(image=lambda: self.image(item_id), item_id=item_id, phi=phi, tag=tag,
                           offset=(0, 0) if region is None else (int(region[0]), int(region[1])), size=size)

    # -- metadata after ingest ----------------------------------------------------------------------------------
    def ingest_uploads(self, folder, metadata_csv=None, progress: Progress | None = None):
        """Ingest scans uploaded in the explorer: as :meth:`ingest_folder`, but files without a CSV row get no
        made-up book or page (their upload folder is no book; see ``derive_metadata`` of
        :func:`corpus_index.ingest.folder.ingest_folder`)."""
        from corpus_index.ingest.folder import ingest_folder

        return ingest_folder(self.store, folder, metadata_csv=metadata_csv, progress=progress, derive_metadata=False)

    def edit_item(self, item_id: int, changes: dict[str, Any], editor: str):
        """Correct an item's metadata, logging each changed field (:func:`corpus_index.metadata_edit.edit_item`)."""
        from corpus_index.metadata_edit import edit_item

        self.item(item_id)  # unknown id -> ItemNotFoundError
        return edit_item(self.store, int(item_id), changes, editor)

    def edit_log(self, item_id: int | None = None) -> pd.DataFrame:
        """The logged metadata edits of an item (default: all), oldest first."""
        from corpus_index.metadata_edit import edit_log

        return edit_log(self.store, item_id)

    def update_metadata(self, csv_path, editor: str | None = None):
        """Update items already in the corpus from a metadata CSV (:func:`corpus_index.ingest.update.update_from_csv`);
        returns its UpdateReport."""
        from corpus_index.ingest.update import update_from_csv

        return update_from_csv(self.store, csv_path, editor)


def _as_image(image) -> Image.Image:
    """A PIL image as given, or a file or bytes opened and validated like an ingest."""
    if isinstance(image, Image.Image):
        return image
    from corpus_index.ingest.images import open_validated

    return open_validated(image)
