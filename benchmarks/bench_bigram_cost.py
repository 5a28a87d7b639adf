"""What the bigram network costs per table page: φ (a forward pass) and BiLRP factors (h backward passes).

Usage: .venv/bin/python -m benchmarks.bench_bigram_cost [--pages 3]
       (writes benchmarks/results/bigram_cost.json and prints it)
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from benchmarks import write_results
from bilrp_core import BigramOptions, bigram_network, relevance_factors
from corpus_index.synthetic import generate_corpus

RESULTS = Path(__file__).resolve().parent / "results" / "bigram_cost.json"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3)
    args = parser.parse_args()
    results = {"command": f"python -m benchmarks.bench_bigram_cost --pages {args.pages}",
               "threads": torch.get_num_threads(), "load_before": os.getloadavg()[0], "pages": []}
    with tempfile.TemporaryDirectory() as tmp:
        generate_corpus(Path(tmp), books=2, seed=0)
        meta = pd.read_csv(Path(tmp) / "metadata.csv")
        paths = meta[meta.kind == "table"].path.tolist()[:args.pages]
        for variant, model in (("aligned (h=200)", bigram_network(BigramOptions(aligned=True))),
                               ("plain routing (default, h=100)", bigram_network())):
            for path in paths:
                x = model.preprocess(Image.open(Path(tmp) / path))
                start = time.perf_counter()
                with torch.no_grad():
                    model(x)
                forward = time.perf_counter() - start
                start = time.perf_counter()
                relevance_factors(model, x, pool=8)
                results["pages"].append({"model": variant, "page": path, "input": list(x.shape[-2:]),
                                         "phi_seconds": forward, "factors_seconds": time.perf_counter() - start})
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
