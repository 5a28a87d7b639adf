"""Ray Data engine: feature extraction and factor precomputation spread over a Ray cluster.

``ray.data.from_items`` of (id, path) rows -> ``map_batches`` with a callable class that loads the model once per
worker (``concurrency`` workers, ``batch_size`` items per call) -> the driver iterates the results and writes them
into the same batch files / factor cache as the in-process engine. So resumability is identical: each result
batch is on disk (and marked in the Store) as soon as it reaches the driver; a rerun skips it.

Running on a cluster
--------------------
1. Put the corpus root on a file system every node mounts at the same path (NFS, CephFS, a cloud bucket mount):
   workers open the images by their absolute paths; the driver alone writes results.
2. On the head node: ``ray start --head``; on every other node: ``ray start --address HEAD_IP:6379``. Each node
   needs the same Python environment (``pip install -r requirements.txt``); the ``corpus_index`` and
   ``bilrp_core`` sources are shipped to the workers by this module (``runtime_env py_modules``).
3. Build: ``python -m corpus_index --root /shared/corpus build --model vgg16-L17-h100-seed0 --engine ray
   --address auto`` on a cluster node, or ``--address ray://HEAD_IP:10001`` from outside it (Ray Client).
   Without ``--address`` a local Ray is started on this machine for the run and shut down afterwards.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from corpus_index.storage.npy_files import read_array

PACKAGE_DIRS = [Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "bilrp_core"]


class _RaySession:
    """Connect to (or start) Ray for one run; shut down only what this run started."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address = address
        self.num_cpus = num_cpus
        self.started = False

    def __enter__(self):
        import ray

        if not ray.is_initialized():
            runtime_env = {"py_modules": [str(p) for p in PACKAGE_DIRS if p.is_dir()]}
            if self.address:
                ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False,
                         logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, runtime_env=runtime_env,
                         log_to_driver=False, logging_level=logging.WARNING)
            self.started = True
        ray.data.DataContext.get_current().enable_progress_bars = False
        return self

    def __exit__(self, *exc):
        import ray

        if self.started:
            ray.shutdown()


def _worker_model(model_key: str, threads: int):
    """A Ray worker's model, loaded once, with its torch threads and glibc's memory reuse (corpus_index.malloc)."""
    import torch

    from corpus_index.malloc import keep_freed_memory
    from corpus_index.models import load_model

    keep_freed_memory()
    torch.set_num_threads(max(1, threads))
    return load_model(model_key)


class FeatureWorker:
    """Ray Data callable: loads the model once per worker, then phi for each batch of (id, path) rows."""

    def __init__(self, model_key: str, threads: int = 1):
        self.model = _worker_model(model_key, threads)

    def __call__(self, batch: dict) -> dict:
        from corpus_index.local_engine import compute_batch

        rows = _batch_rows(batch)
        ids, vectors, skipped = compute_batch(self.model, rows)
        return _rows_result(rows, ids, vectors, skipped)


class FactorWorker:
    """Ray Data callable: BiLRP factors R(x) for each item, with the model loaded once per worker."""

    def __init__(self, model_key: str, schedule: dict, pool, threads: int = 1):
        self.model = _worker_model(model_key, threads)
        self.schedule = schedule
        self.pool = pool

    def __call__(self, batch: dict) -> dict:
        from corpus_index.explanation import factors_of_input, input_size, model_transforms
        from corpus_index.local_engine import open_image

        rows = _batch_rows(batch)
        transforms = model_transforms(self.model)
        ok, reasons, values, inputs = [], [], [], []
        for _, path, region in rows:
            try:
                x = self.model.preprocess(open_image(path, region))
                # (h, H/p, W/p), or (8, h, H/p, W/p) for rotation-max models.
                parts = [factors_of_input(self.model, x, self.schedule, self.pool, t) for t in transforms]
                values.append(_npy_bytes(parts[0] if transforms == [None] else np.stack(parts)))
                inputs.append(input_size(x))
                ok.append(True)
                reasons.append("")
            except Exception as error:  # reported per item; the rest of the batch goes on
                values.append(b"")
                inputs.append((0, 0))
                ok.append(False)
                reasons.append(f"{path}: {error}")
        # Pages of different sizes have factors of different shapes: each item's travel as .npy bytes.
        return {"id": np.asarray([row[0] for row in rows], dtype=np.int64), "ok": np.asarray(ok, dtype=bool),
                "reason": np.asarray(reasons, dtype=object), "value": np.asarray(values, dtype=object),
                "input": np.asarray(inputs, dtype=np.int64).reshape(len(rows), 2)}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _batch_rows(batch: dict) -> list[tuple[int, str, str | None]]:
    regions = [str(r) or None for r in batch["region"]]
    return [(int(i), str(p), r) for i, p, r in zip(batch["id"], batch["path"], regions, strict=True)]


def _rows_result(rows, ids, values, skipped) -> dict:
    """One output row per input row (Ray batches need equal-length columns): ok flag, reason, value."""
    by_id = {int(i): v for i, v in zip(ids, values, strict=True)}
    reasons = dict(skipped)
    template = values[0] if len(values) else np.zeros(1, np.float32)
    out_values = [by_id.get(row[0], np.zeros_like(template)) for row in rows]
    return {
        "id": np.asarray([row[0] for row in rows], dtype=np.int64),
        "ok": np.asarray([row[0] in by_id for row in rows]),
        "reason": np.asarray([reasons.get(row[0], "") for row in rows], dtype=object),
        "value": np.stack(out_values).astype(np.float32),
    }


def _run(worker, constructor_kwargs: dict, rows: Sequence[tuple[int, str, str | None]], batch_size: int,
         concurrency: int) -> Iterator[tuple[dict, list[tuple[int, str]]]]:
    """The workers' result columns, rows of the items done only, and the (id, reason) of the skipped ones."""
    import ray

    # Region as "" rather than None: Arrow wants one type per column.
    items = [{"id": int(i), "path": os.path.abspath(p), "region": r or ""} for i, p, r in rows]
    dataset = ray.data.from_items(items).map_batches(
        worker, fn_constructor_kwargs=constructor_kwargs, batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=1, batch_format="numpy",
    )
    for result in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        ok = np.asarray(result["ok"], dtype=bool)
        skipped = [(int(i), str(r)) for i, r in zip(result["id"][~ok], result["reason"][~ok], strict=True)]
        yield {name: np.asarray(values)[ok] for name, values in result.items()}, skipped


def iter_feature_batches(model_key: str, rows: Sequence[tuple[int, str, str | None]], batch_size: int = 16,
                         address: str | None = None, concurrency: int = 2,
                         num_cpus: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, list]]:
    """Ray engine for :func:`corpus_index.storage.features.build_features`: yields ``(ids, vectors, skipped)``.

    Parameters
    ----------
    model_key : str
        A key :func:`corpus_index.models.load_model` knows on the workers (built-in keys; not test-registered ones).
    rows : sequence of (int, str, str or None)
        Item ids, image paths (absolute, on a file system every worker sees) and regions.
    batch_size : int
        Items per ``map_batches`` call.
    address : str, optional
        ``"auto"``, ``"ray://host:10001"`` or ``"host:6379"``; None starts a local Ray for this run.
    concurrency : int
        Number of model-holding workers.
    num_cpus : int, optional
        CPUs of a locally started Ray (None: all).
    """
    if not rows:
        return
    with _RaySession(address, num_cpus):
        for result, skipped in _run(FeatureWorker, {"model_key": model_key}, rows, batch_size, concurrency):
            yield np.asarray(result["id"], np.int64), np.asarray(result["value"], np.float32), skipped


def iter_factor_results(model_key: str, rows: Sequence[tuple[int, str, str | None]], schedule: dict, pool,
                        batch_size: int = 4, address: str | None = None, concurrency: int = 2,
                        num_cpus: int | None = None) -> Iterator[tuple[np.ndarray, list, list, list]]:
    """Ray engine for factor precomputation: yields ``(ids, factors, input sizes, skipped)``, one array
    (h, H/p, W/p) — (8, h, H/p, W/p) for rotation-max models — and one model-input (H, W) per item."""
    if not rows:
        return
    kwargs = {"model_key": model_key, "schedule": schedule, "pool": pool}
    with _RaySession(address, num_cpus):
        for result, skipped in _run(FactorWorker, kwargs, rows, batch_size, concurrency):
            arrays = [read_array(io.BytesIO(bytes(value))) for value in result["value"]]
            inputs = [(int(h), int(w)) for h, w in np.asarray(result["input"]).reshape(-1, 2)]
            yield np.asarray(result["id"], np.int64), arrays, inputs, skipped
