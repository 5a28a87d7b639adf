"""How big one page's cached BiLRP factors (pool 8) are: dense float32 vs as the factor cache stores them.

A demo table page and a woodcut (illustration) page through the bigram network, and the table page through VGG-16
(default model key). Each file is written by :class:`corpus_index.storage.factor_cache.FactorCache` (sparse when
smaller) and read back; the round trip must give the dense array bit for bit.

Usage: .venv/bin/python -m benchmarks.bench_factor_size
       (writes benchmarks/results/factor_size.json and prints it)
"""

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from benchmarks import write_results
from corpus_index.explanation import compute_factors, resolve_schedule
from corpus_index.models import DEFAULT_MODEL_KEY, load_model
from corpus_index.storage.factor_cache import FactorCache
from corpus_index.synthetic import generate_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "factor_size.json"
POOL = 8
MB = 1e6


def main():
    results = {"command": "python -m benchmarks.bench_factor_size", "pool": POOL, "mb": "1e6 bytes",
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
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
