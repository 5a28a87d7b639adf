"""Cached reads of the corpus for the pages (``st.cache_data``); every computation is done by corpus_index.

Keys carry the root and the corpus ``data_version`` (see :mod:`explorer.resources`), so cached tables never
outlive an ingest or a build. Explanations are keyed by model, pair, γ and patch size: their factors are cached
on disk by the Corpus, the pair matrix is one matrix product.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from corpus_index.build import POOLS, default_pool  # noqa: F401 - the pages read both from here
from corpus_index.filters import BROWSE_FILTERS, YEAR_FILTERS
from corpus_index.progress import Progress
from explorer import links
from explorer.choices import encode_gamma, parse_gamma
from explorer.resources import corpus

FILTER_NAMES = (*BROWSE_FILTERS, *YEAR_FILTERS, "text")  # the filters the explorer offers (corpus_index.filters)


def clean_filters(filters: dict) -> dict:
    """Only the filters that are set (an empty choice of several values is "any", not "none")."""
    return {k: v for k, v in filters.items()
            if k in FILTER_NAMES and not (isinstance(v, tuple | list) and not v) and v not in (None, "", "any")}


def forget_metadata() -> None:
    """Drop the cached tables that show item metadata, after an edit or an update from a CSV: the data version
    (:func:`explorer.resources.data_version`) counts items and indexes, which a metadata edit does not change."""
    for cached in (items, filter_values, feature_map, search, search_image):
        cached.clear()


def no_such_item(value) -> Exception:
    """The corpus' "no item with id …" error for an id that can name no item (negative, too large, not a number):
    such ids from links or widgets get the same message as a whole number the corpus does not hold."""
    from corpus_index.corpus import ItemNotFoundError

    return ItemNotFoundError(f"no item with id {value} in the corpus at {corpus().root}")


def item(value) -> dict:
    """One item's metadata for an id typed or linked by the user; raises ItemNotFoundError for any id that names
    no item (before SQLite sees it: a 23-digit id would overflow its integers)."""
    number = links.item_id(value)
    if number is None:
        raise no_such_item(value)
    return corpus().item(number)


@st.cache_data(show_spinner=False, max_entries=32)
def items(root: str, version: tuple, filters: tuple = ()) -> pd.DataFrame:
    """Items matching the filters (a tuple of (name, value) pairs)."""
    return corpus().items(**dict(filters))


@st.cache_data(show_spinner=False, max_entries=8)
def filter_values(root: str, version: tuple) -> dict:
    """The values each filter can take: kinds, books, places, printers, and the year range."""
    frame = corpus().items()
    values = {name: sorted(str(v) for v in frame[name].dropna().unique()) for name in BROWSE_FILTERS}
    years = frame["year"].dropna()
    values["years"] = (int(years.min()), int(years.max())) if len(years) else None
    values["books"] = corpus().store.books()
    return values


@st.cache_data(show_spinner=False, max_entries=1024)
def thumbnail(root: str, item_id: int) -> bytes:
    """The thumbnail of an item as JPEG bytes (sent as they are: no re-encoding on every run)."""
    return jpeg_bytes(corpus().thumbnail(int(item_id)))


@st.cache_data(show_spinner=False, max_entries=64)
def preview(root: str, item_id: int, size: int = 520) -> bytes:
    """An item's image scaled to ``size`` px on its longest side, as JPEG bytes."""
    picture = corpus().image(int(item_id))
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    return jpeg_bytes(picture)


@st.cache_data(show_spinner=False, max_entries=256)
def related_text(root: str, version: tuple, model_key: str, item_id: int, kind: str | None) -> str:
    """The query's best same-book and same-group pairs in words (:func:`corpus_index.score_context.related_text`),
    kept per data version: it reads the features of the query's book and group."""
    from corpus_index import score_context

    return score_context.related_text(corpus(), model_key, int(item_id), kind)


@st.cache_data(show_spinner=False, max_entries=32)
def image(root: str, item_id: int) -> Image.Image:
    """The full image of an item."""
    return corpus().image(int(item_id))


@st.cache_data(show_spinner=False, max_entries=8)
def feature_map(root: str, version: tuple, model_key: str) -> pd.DataFrame:
    """2-D PCA of the model's features (numpy SVD) joined with item metadata; empty if not built."""
    ids, vectors = corpus().stored_vectors(model_key)
    if len(ids) < 2:
        return pd.DataFrame(columns=["id", "pc1", "pc2"])
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = u[:, :2] * s[:2]
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(ids), 1))])
    share = (s[:2] ** 2).sum() / max((s**2).sum(), 1e-12)
    frame = pd.DataFrame({"id": ids.astype(np.int64), "pc1": coords[:, 0], "pc2": coords[:, 1]})
    frame = frame.merge(corpus().items().drop(columns=["hash"], errors="ignore"), on="id", how="left")
    frame.attrs["explained"] = float(share)
    return frame


@st.cache_data(show_spinner=False, max_entries=64)
def search(root: str, version: tuple, model_key: str, item_id: int, k: int, exclude_same_book: bool,
           filters: tuple = ()) -> pd.DataFrame:
    """Neighbours of a corpus item."""
    return corpus().search(model_key, item_id=int(item_id), k=int(k), exclude_same_book=exclude_same_book,
                           **dict(filters))


@st.cache_data(show_spinner=False, max_entries=16)
def search_image(root: str, version: tuple, model_key: str, image_bytes: bytes, k: int,
                 filters: tuple = ()) -> pd.DataFrame:
    """Neighbours of an uploaded scan (validated by corpus_index)."""
    from corpus_index.ingest.images import open_validated

    return corpus().search(model_key, image=open_validated(image_bytes), k=int(k), **dict(filters))


def schedule(model_key: str, gamma) -> dict:
    """The resolved γ schedule {layer index: γ} of a model for a γ choice."""
    from corpus_index.explanation import resolve_schedule
    from corpus_index.models import load_model

    return resolve_schedule(load_model(model_key), gamma)


def missing_factors(model_key: str, item_ids, gamma, pool) -> list[int]:
    """Items whose BiLRP factors are not cached yet for this model, γ and patch size."""
    sched = schedule(model_key, gamma)
    cache = corpus().factor_cache
    return [int(i) for i in item_ids if not cache.path(model_key, sched, pool, int(i)).exists()]


def compute_factors(model_key: str, item_ids, gamma, pool, progress: Progress | None = None) -> None:
    """Compute (and cache) the factors of items that have none yet, reporting progress item by item and, on a
    progress bar, within each item as the batches of its backward pass finish."""
    from explorer import prefetch

    # The background worker may be computing one of them right now: wait for it rather than compute it twice.
    prefetch.take_over(corpus(), model_key, item_ids, gamma, pool, timeout=120)
    todo = missing_factors(model_key, item_ids, gamma, pool)
    for number, item_id in enumerate(todo):
        message, within = f"BiLRP factors of item {item_id} ({model_key})", None
        if progress is not None:
            progress(number, len(todo), message)
            if hasattr(progress, "part"):  # a ProgressBar: this item is one of len(todo) equal parts of the bar
                part = progress.part(number, len(todo))

                def within(done, total, _message, part=part, message=message):
                    part(done, total, message)
        corpus().factors(model_key, item_id=item_id, gamma=gamma, pool=pool, progress=within)
    if progress is not None and todo:
        progress(len(todo), len(todo), "factors ready")


@st.cache_data(show_spinner=False, max_entries=16)  # pair matrices can be tens of MB for large inputs
def explanation(root: str, model_key: str, id1: int, id2: int, gamma_text: str, pool: int, images: bool = False):
    """The Corpus' Explanation of a pair (factors from the disk cache, computed on first use); ``images``: with
    the model input images (for ``Explanation.draw``) — without them a cached pair reads no scan."""
    return corpus().explain(model_key, int(id1), int(id2), gamma=parse_gamma(gamma_text), pool=int(pool),
                            images=images)


def explain(model_key: str, id1: int, id2: int, gamma, pool: int, progress: Progress | None = None,
            images: bool = False):
    """An explanation, computing missing factors first so their progress can be shown; ``images`` for pages
    that draw it with ``Explanation.draw`` (the Explain page draws on the scans themselves)."""
    compute_factors(model_key, (id1, id2), gamma, pool, progress)
    return explanation(str(corpus().root), model_key, int(id1), int(id2), encode_gamma(gamma), int(pool), images)


@st.cache_data(show_spinner=False, max_entries=4096)
def _computed_vector(root: str, model_key: str, item_id: int) -> np.ndarray:
    return corpus().query_vector(model_key, image=corpus().image(int(item_id)))


def item_vectors(model_key: str, item_ids, progress: Progress | None = None) -> np.ndarray:
    """φ of items (n, h): stored features where built, else computed for just these items (with progress)."""
    item_ids = [int(i) for i in item_ids]
    ids, vectors = corpus().stored_vectors(model_key, item_ids)
    found = dict(zip(ids.tolist(), vectors, strict=True))
    missing = [i for i in item_ids if i not in found]
    for number, item_id in enumerate(missing):
        if progress is not None:
            progress(number, len(missing), f"features of item {item_id} ({model_key})")
        found[item_id] = _computed_vector(str(corpus().root), model_key, item_id)
    return np.stack([np.asarray(found[i], dtype=np.float32) for i in item_ids])


def png_bytes(picture: Image.Image) -> bytes:
    """A PIL image as PNG bytes (for downloads)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(picture: Image.Image, quality: int = 92) -> bytes:
    """A PIL image as JPEG bytes for display: encoding is ~50× faster than PNG and the page loads faster."""
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@st.cache_data(show_spinner=False, max_entries=8)
def explain_upload(root: str, model_key: str, image_bytes: bytes, item_id: int, gamma_text: str, pool: int):
    """Explanation of (uploaded scan, corpus item) through the facade (the item's factors come from the cache)."""
    from corpus_index.ingest.images import open_validated

    return corpus().explain_image(model_key, open_validated(image_bytes), int(item_id), gamma=parse_gamma(gamma_text),
                                  pool=pool)


@st.cache_data(show_spinner=False, max_entries=4)
def load_upload(image_bytes: bytes) -> Image.Image:
    """An uploaded scan, validated by corpus_index (format, size limit) and converted to RGB."""
    from corpus_index.ingest.images import open_validated

    return open_validated(image_bytes)


MAX_PAIR_CELLS = 8_000_000  # largest dense pair matrix (H1·W1·H2·W2 floats, 32 MB) the app computes
# The bigram network's pairs are sparse (a few patches per bigram, bilrp_core.sparse_pair); their bound is the
# worst case of a page full of digits, where the pair would be stored dense (256 MB).
MAX_SPARSE_PAIR_CELLS = 64_000_000


@st.cache_data(show_spinner=False, max_entries=256)
def input_shape(root: str, model_key: str, item_id: int) -> tuple[int, int]:
    """(H, W) of an item as the model's input (pages keep their size for the bigram network)."""
    return corpus().input_shape(model_key, int(item_id))


def grid(shape: tuple[int, int], pool: int) -> tuple[int, int]:
    """The patch grid of an input of ``shape`` at patch size ``pool``."""
    return -(-shape[0] // pool), -(-shape[1] // pool)


def _sparse_family(model_key: str | None) -> bool:
    """Whether the model is the bigram network: sparse factors and pairs, row-sized patches."""
    from corpus_index.models import parse_model_key

    try:
        return bool(model_key) and parse_model_key(model_key).family == "bigram"
    except ValueError:  # a custom or malformed key
        return False


def check_pair_size(shape1: tuple[int, int], shape2: tuple[int, int], pool: int, model_key: str | None = None) -> None:
    """Refuse patch sizes whose pair matrix would not fit in memory comfortably (ValueError with the fix); the
    bigram network's sparse pairs (``model_key``) may have more cells."""
    limit = MAX_SPARSE_PAIR_CELLS if _sparse_family(model_key) else MAX_PAIR_CELLS
    (r1, c1), (r2, c2) = grid(shape1, pool), grid(shape2, pool)
    if r1 * c1 * r2 * c2 > limit:
        smallest = next((p for p in POOLS if np.prod(grid(shape1, p)) * np.prod(grid(shape2, p)) <= limit),
                        POOLS[-1])
        raise ValueError(f"{pool}-px patches give a {r1}×{c1} by {r2}×{c2} pair matrix for these inputs "
                         f"({shape1[0]}×{shape1[1]} and {shape2[0]}×{shape2[1]} px): too large to show; choose "
                         f"a patch size of {smallest} px or more")


def fitting_pool(shapes, model_key: str, pool: int) -> int:
    """``pool``, or the next larger patch size whose pair matrix :func:`check_pair_size` accepts for these input
    shapes; raises check_pair_size's error when none does."""
    for size in (p for p in POOLS if p >= pool):
        try:
            check_pair_size(*shapes, size, model_key)
        except ValueError:
            continue
        return size
    check_pair_size(*shapes, pool, model_key)  # raises, naming the pair matrix that is too large
    return pool
