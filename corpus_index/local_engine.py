"""The in-process engine of a feature build: phi for batches of items, images decoded beside the model.

:func:`corpus_index.storage.features.build_features` takes an engine, a callable that turns the items still missing
into computed batches; this is the local one (:func:`iter_local_batches`), :mod:`corpus_index.ray_engine` the one
for corpora spread over many machines (whose workers call :func:`compute_batch` too). Either way the driver writes
the batch files, so resumability is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from corpus_index.models import embed
from corpus_index.storage.features import Batch, ItemRow

ImageLoader = Callable[[str, str | None], Image.Image]


def open_image(path: str | Path, region: str | None = None) -> Image.Image:
    """An item's image: validated, fully decoded RGB, cropped to its region (:func:`images.load_item_image`)."""
    from corpus_index.ingest.images import load_item_image

    return load_item_image(path, region)


def compute_batch(model: torch.nn.Module, rows: Sequence[ItemRow], load_image: ImageLoader = open_image,
                  images: Sequence[Image.Image | Exception] | None = None) -> Batch:
    """phi for one batch of items; unreadable items are skipped with their reason.

    Parameters
    ----------
    model : torch.nn.Module
        Similarity model with ``preprocess``.
    rows : sequence of (int, str, str or None)
        Item ids, image paths and regions.
    load_image : callable
        ``(path, region)`` -> PIL image (used when ``images`` is None).
    images : sequence, optional
        Already loaded images (or the exception loading raised), aligned with ``rows``.

    Returns
    -------
    ids : ndarray (n,) int64
    vectors : ndarray (n, h) float32
    skipped : list of (int, str)
    """
    if images is None:
        images = [_try_load(load_image, row) for row in rows]
    ids, tensors, skipped = [], [], []
    for (item_id, path, _), image in zip(rows, images, strict=True):
        if isinstance(image, Exception):
            skipped.append((int(item_id), f"{path}: {image}"))
            continue
        try:
            tensors.append(model.preprocess(image))
        except Exception as error:  # a broken image must not stop a corpus-wide build
            skipped.append((int(item_id), f"{path}: cannot preprocess ({error})"))
            continue
        ids.append(int(item_id))
    if not tensors:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), skipped
    # Models with a fixed input size (VGG-16) batch everything in one forward pass; models that keep the page's
    # own size (the bigram network) get one pass per distinct input shape.
    by_shape: dict[tuple, list[int]] = {}
    for position, tensor in enumerate(tensors):
        by_shape.setdefault(tuple(tensor.shape[1:]), []).append(position)
    rows_out: list[np.ndarray | None] = [None] * len(tensors)
    with torch.no_grad():
        for positions in by_shape.values():
            phi = embed(model, torch.cat([tensors[p] for p in positions])).detach().cpu().numpy()
            for position, vector in zip(positions, phi.reshape(len(positions), -1), strict=True):
                rows_out[position] = vector
    vectors = np.stack(rows_out).astype(np.float32, copy=False)
    return np.asarray(ids, dtype=np.int64), vectors, skipped


def _try_load(load_image: ImageLoader, row: ItemRow) -> Image.Image | Exception:
    try:
        return load_image(row[1], row[2])
    except Exception as error:  # reported per item by compute_batch
        return error


def iter_local_batches(model: torch.nn.Module, rows: Sequence[ItemRow], batch_size: int = 16,
                       load_image: ImageLoader = open_image) -> Iterator[Batch]:
    """In-process engine: yield computed batches, decoding the next batch's images while the model runs."""
    chunks = [rows[start:start + batch_size] for start in range(0, len(rows), batch_size)]
    if not chunks:
        return

    def load_chunk(chunk):
        return [_try_load(load_image, row) for row in chunk]

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load_chunk, chunks[0])
        for number, chunk in enumerate(chunks):
            images = pending.result()
            if number + 1 < len(chunks):
                pending = pool.submit(load_chunk, chunks[number + 1])
            yield compute_batch(model, chunk, images=images)
