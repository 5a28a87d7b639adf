"""How big one page's cached BiLRP factors (pool 8) are, and what explaining a pair of them costs, dense vs sparse.

``pages``: a demo table page and a woodcut (illustration) page through the bigram network, and the table page
through VGG-16 (default model key). Each file is written by :class:`corpus_index.storage.factor_cache.FactorCache`
(sparse when smaller) and read back; the round trip must give the dense array bit for bit.

``pairs``: two demo table pages (demo size) and two editions of a demo table rendered at real-scan size (as
``benchmarks.bench_windowed`` renders them, ≈1400 px tall after normalisation), their bigram factors cached, then
explained as the explorer does — the pair, the top-20 table, the picture of the 30 strongest pairs, both heatmaps —
once from dense factors through the dense pair matrix and once from the cache's CSR form through the sparse pair.
Each runs in a fresh process; ``peak_mb_added`` is its peak resident memory during the explanation (VmHWM, reset
just before) less its resident memory before. The real-size dense explanation stops after the pair matrix by
default (its drawing went past 15 GB).

Usage: .venv/bin/python -m benchmarks.bench_factor_size [--dense-whole-real]
       (writes benchmarks/results/factor_size.json and prints it)
"""

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

import bilrp_core
from benchmarks import write_results
from corpus_index.explanation import compute_factors, resolve_schedule
from corpus_index.models import DEFAULT_MODEL_KEY, load_model
from corpus_index.storage.factor_cache import FactorCache
from corpus_index.synthetic import generate_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "factor_size.json"
POOL = 8
MB = 1e6


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MB
    raise KeyError(field)


def _reset_peak() -> float:
    """Reset the process's peak resident memory (VmHWM) to its current one; returns the current MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def explain_cached_pair(root: str, key: str, sparse: bool, input_size: tuple[int, int], whole: bool) -> dict:
    """Explain cached items 1 and 2 as the explorer does; seconds per step and peak memory (run in a fresh process).

    ``whole`` False stops after the pair itself (and Σ): the dense path's drawing of a real-size pair needs more
    memory than a shared machine has.
    """
    from bilrp_core.render import PairStyle, draw_pair, heatmap, top_pairs
    from corpus_index.explanation import pair_from_factors

    torch.set_num_threads(1)
    schedule = resolve_schedule(load_model(key), None)
    cache = FactorCache(root)
    image = Image.new("RGB", input_size, "white")
    before = _reset_peak()
    steps, start = {}, time.perf_counter()
    factors = [cache.load(key, schedule, POOL, item, tag="bench", sparse=sparse) for item in (1, 2)]
    steps["load_s"] = time.perf_counter() - start
    if sparse:
        pair = pair_from_factors(*factors)
    else:  # the dense matrix, whatever the factors look like: the explanation before sparse pairs
        pair = bilrp_core.pair_matrix(*(torch.from_numpy(f) for f in factors)).numpy()
    total = float(pair.sum(dtype=np.float64))
    steps["pair_s"] = time.perf_counter() - start - sum(steps.values())
    run = {"pair_type": type(pair).__name__, "pair_shape": list(pair.shape), "pair_mb": pair.nbytes / MB,
           "stored_pairs": int(getattr(pair, "nnz", pair.size)), "total": total, "whole": whole}
    if whole:
        table = top_pairs(pair, pool=POOL, n=20)
        steps["table_s"] = time.perf_counter() - start - sum(steps.values())
        draw_pair(image, image, pair, top=30, style=PairStyle(height=520))
        steps["draw_s"] = time.perf_counter() - start - sum(steps.values())
        for axis in (0, 1):
            heatmap(pair, image, axis=axis, height=360)
        steps["heatmaps_s"] = time.perf_counter() - start - sum(steps.values())
        run["top"] = table[["relevance", "row1", "col1", "row2", "col2"]].head(3).to_dict("records")
    return {**run, **steps, "seconds": time.perf_counter() - start, "peak_mb_added": _status_mb("VmHWM") - before}


def pair_cases(tmp: Path, demo_tables: list[Image.Image], dense_whole_real: bool) -> dict:
    """A demo-size and a real-size bigram table pair explained from sparse and from dense factors.

    Each explanation runs in a fresh process. The real-size dense explanation stops after the pair matrix unless
    ``dense_whole_real`` (its drawing went past 15 GB of memory on this machine).
    """
    from benchmarks.bench_windowed import render_page

    key = "bigram"
    model = load_model(key)
    schedule = resolve_schedule(model, None)
    real = [render_page(model, 7, seed=seed)[0] for seed in (0, 1)]  # two editions of the same table
    demo = [model.preprocess(page) for page in demo_tables]
    cases = {}
    context = multiprocessing.get_context("spawn")  # a fresh process per case: its own peak memory
    for size, inputs in (("demo_size", demo), ("real_size", real)):
        root = tmp / f"pairs-{size}"
        pages = []
        for item, x in enumerate(inputs, start=1):
            factors = bilrp_core.relevance_factors(model, x, pool=POOL).numpy()
            FactorCache(root).save(key, schedule, POOL, item, factors, tag="bench")
            pages.append({"input": list(x.shape[-2:]), "factor_shape": list(factors.shape),
                          "nonzero_fraction": float(np.count_nonzero(factors) / factors.size)})
        shape = (pages[0]["input"][1], pages[0]["input"][0])
        runs = {}
        for name, whole in (("sparse", True), ("dense", size == "demo_size" or dense_whole_real)):
            with context.Pool(1) as pool:
                runs[name] = pool.apply(explain_cached_pair, (str(root), key, name == "sparse", shape, whole))
        case = {"pages": pages, "runs": runs,
                "total_rel_diff": abs(runs["sparse"]["total"] - runs["dense"]["total"]) / abs(runs["dense"]["total"]),
                "pair_memory_ratio": runs["dense"]["pair_mb"] / runs["sparse"]["pair_mb"]}
        if runs["dense"]["whole"]:
            case["speed_up"] = runs["dense"]["seconds"] / runs["sparse"]["seconds"]
            case["peak_memory_ratio"] = runs["dense"]["peak_mb_added"] / max(runs["sparse"]["peak_mb_added"], 1.0)
        else:
            case["dense_note"] = ("dense: the pair matrix and its sum only; drawing it (float64 copies for ranking "
                                  "and heatmaps) went past 15 GB of memory on this 24 GB machine shared with "
                                  "others and was stopped; --dense-whole-real runs it")
        cases[size] = case
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense-whole-real", action="store_true",
                        help="also draw the real-size pair from the dense matrix (needs more than 15 GB of memory)")
    args = parser.parse_args(argv)
    command = " ".join(["python -m benchmarks.bench_factor_size", *(["--dense-whole-real"] if args.dense_whole_real
                                                                    else [])])
    results = {"command": command, "pool": POOL, "mb": "1e6 bytes",
               "threads": torch.get_num_threads(), "load_before": os.getloadavg()[0], "pages": []}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        generate_corpus(source, books=2, seed=0)
        meta = pd.read_csv(source / "metadata.csv")
        table = meta[meta.kind == "table"].path.iloc[0]
        woodcut = meta[meta.kind == "illustration"].path.iloc[0]
        cache = FactorCache(Path(tmp) / "root")
        runs = [("bigram", "table", table), ("bigram", "woodcut", woodcut), (DEFAULT_MODEL_KEY, "table", table)]
        for number, (key, kind, path) in enumerate(runs, start=1):
            model = load_model(key)
            schedule = resolve_schedule(model, None)
            image = Image.open(source / path).convert("RGB")
            start = time.perf_counter()
            factors = compute_factors(model, image, schedule, POOL)
            seconds = time.perf_counter() - start
            file = cache.save(key, schedule, POOL, number, factors, tag="bench")
            loaded = cache.load(key, schedule, POOL, number, tag="bench")
            assert loaded is not None and np.array_equal(loaded, factors), "round trip is not exact"
            dense = factors.nbytes + 128  # .npy header
            stored = file.stat().st_size
            results["pages"].append({
                "model": key, "kind": kind, "page": path, "factor_shape": list(factors.shape),
                "nonzero_fraction": float(np.count_nonzero(factors) / factors.size),
                "dense_mb": dense / MB, "stored_mb": stored / MB, "ratio": dense / stored,
                "layout": "dense" if file.read_bytes()[:6] == b"\x93NUMPY" else "sparse",
                "round_trip_exact": True, "factors_seconds": seconds})
        tables = [Image.open(source / path).convert("RGB") for path in meta[meta.kind == "table"].path.iloc[:2]]
        results["pairs"] = pair_cases(Path(tmp), tables, args.dense_whole_real)
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
