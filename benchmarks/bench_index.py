"""Corpus engine speed: feature builds, FAISS search, and explaining a query against its neighbours.

Measures, on this machine:
- build throughput (items/s, model load excluded, Ray start-up included for Ray) of the bigram network and
  VGG-16-L17 (h = 100, 128 px, random weights), in-process and on a local Ray (2 workers);
- FAISS query latency (one query at a time, median) and index memory at 1e4, 1e5 and 1e6 random vectors
  (h = 100): exact ``IndexFlatIP`` and ``IndexHNSWFlat`` (M = 32, efSearch 64/128/256) with its recall@10
  against exact search;
- explaining a query against its 10 neighbours: with cached factors (ms per pair: load two factor files and one
  matrix product) and uncached (seconds for the 11 images' factors, and that time in forward passes).

Usage: ``.venv/bin/python benchmarks/bench_index.py [--quick] [--no-ray]`` (writes
``benchmarks/results/index.json``; ``--quick`` uses tiny sizes to check the script works, and writes
``index_quick.json`` instead so real numbers are never overwritten by a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import torch  # noqa: E402

from benchmarks import command_line  # noqa: E402
from corpus_index.corpus import Corpus  # noqa: E402
from corpus_index.models import load_model  # noqa: E402
from corpus_index.storage.faiss_index import make_index, search_params  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
VGG_KEY = "vgg16-L17-h100-seed0"


def make_source(folder: Path, books: int) -> Path:
    """The demo corpus if its generator is available, else noise pages (noted in the results)."""
    try:
        from corpus_index.synthetic import generate_corpus

        generate_corpus(folder, books=books, seed=0)
        return folder
    except ImportError:
        rng = np.random.default_rng(0)
        (folder / "images").mkdir(parents=True)
        lines = ["path,kind,group,book,title,author,printer,place,year,page"]
        for i in range(books * 10):
            from PIL import Image

            Image.fromarray((rng.random((300, 220, 3)) * 255).astype("uint8")).save(folder / "images" / f"{i}.png")
            lines.append(f"images/{i}.png,table,g,b{i // 10},T,A,P,Venice,1500,{i}")
        (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
        return folder


def bench_builds(workdir: Path, quick: bool, use_ray: bool) -> dict:
    source = make_source(workdir / "source", books=1 if quick else 6)
    results = {}
    engines = ["local"] + (["ray"] if use_ray else [])
    for key in (VGG_KEY, "bigram"):
        for engine in engines:
            root = workdir / f"root-{key}-{engine}"
            corpus = Corpus.open(root, create=True)
            corpus.ingest_folder(source, source / "metadata.csv")
            name = f"{key}/{engine}"
            try:
                load_model(key)  # model construction is not part of the throughput
            except Exception as error:  # e.g. bigram weights not trained yet
                results[name] = {"skipped": f"{type(error).__name__}: {error}"}
                print(f"build {name}: skipped ({error})")
                break
            start = time.perf_counter()
            report = corpus.build(key, batch_size=16, engine=engine, concurrency=2)
            seconds = time.perf_counter() - start
            n = report.features.computed
            results[name] = {"items": n, "seconds": round(seconds, 2), "items_per_s": round(n / seconds, 2),
                             "skipped": len(report.features.skipped)}
            print(f"build {name}: {n} items in {seconds:.1f} s = {n / seconds:.2f} items/s")
            corpus.close()
    return results


def bench_faiss(sizes: list[int], dim: int = 100, queries: int = 50) -> dict:
    rng = np.random.default_rng(0)
    results = {}
    for n in sizes:
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        vectors *= rng.uniform(0.5, 2.0, (n, 1)).astype(np.float32)  # unnormalised, as phi is
        probes = rng.standard_normal((queries, dim), dtype=np.float32)
        row = {}
        truth = None
        for kind, ef_search in (("flat", None), ("hnsw", 64), ("hnsw", 128), ("hnsw", 256)):
            name = kind if ef_search is None else f"hnsw_ef{ef_search}"
            if kind == "flat" or ef_search == 64:  # one HNSW graph, searched with several breadths
                index = make_index(dim, kind)
                start = time.perf_counter()
                index.add_with_ids(vectors, np.arange(n, dtype=np.int64))
                build = time.perf_counter() - start
                memory = faiss.serialize_index(index).nbytes
            params = search_params(index, None, 10, ef_search) if ef_search else None
            times, labels = [], []
            for q in probes:
                t0 = time.perf_counter()
                _, found = index.search(q[None], 10, params=params)
                times.append(time.perf_counter() - t0)
                labels.append(found[0])
            labels = np.array(labels)
            entry = {"build_s": round(build, 2), "query_ms_median": round(1e3 * statistics.median(times), 3),
                     "query_ms_p95": round(1e3 * float(np.percentile(times, 95)), 3),
                     "memory_mb": round(memory / 2**20, 1)}
            if kind == "flat":
                truth = labels
            else:
                entry["recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / 10
                                                             for a, b in zip(labels, truth, strict=True)])), 4)
            row[name] = entry
            print(f"faiss n={n:>8} {name:>11}: {entry}")
        results[str(n)] = row
    return results


def bench_explain(workdir: Path, quick: bool) -> dict:
    source = make_source(workdir / "explain-source", books=1 if quick else 2)
    corpus = Corpus.open(workdir / "explain-root", create=True)
    corpus.ingest_folder(source, source / "metadata.csv")
    corpus.build(VGG_KEY, batch_size=16)
    query = int(corpus.items()["id"].iloc[0])
    neighbours = corpus.search(VGG_KEY, item_id=query, k=2 if quick else 10)["id"].tolist()
    model = load_model(VGG_KEY)
    x = model.preprocess(corpus.image(query))
    with torch.no_grad():
        model(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(5):
            model(x)
        forward = (time.perf_counter() - t0) / 5
    start = time.perf_counter()
    for other in neighbours:
        corpus.factors(VGG_KEY, item_id=other)
    corpus.factors(VGG_KEY, item_id=query)
    uncached = time.perf_counter() - start
    from corpus_index import explanation as fc

    schedule = fc.resolve_schedule(model, None)
    times = []
    for other in neighbours:
        t0 = time.perf_counter()
        a = corpus.factor_cache.load(VGG_KEY, schedule, 8, query)
        b = corpus.factor_cache.load(VGG_KEY, schedule, 8, other)
        fc.pair_from_factors(a, b)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    explanation = corpus.explain(VGG_KEY, query, neighbours[0])
    full_explain = time.perf_counter() - t0
    result = {
        "neighbours": len(neighbours),
        "uncached_factor_computations": len(neighbours) + 1,
        "uncached_seconds": round(uncached, 2),
        "uncached_seconds_per_image": round(uncached / (len(neighbours) + 1), 3),
        "forward_pass_s": round(forward, 4),
        "uncached_cost_in_forward_passes": round(uncached / forward),
        "cached_ms_per_pair_median": round(1e3 * statistics.median(times), 3),
        "explain_call_with_cache_s": round(full_explain, 3),
        "pair_shape": list(explanation.pair.shape),
        "conservation_gap": abs(explanation.total - explanation.score) / max(abs(explanation.score), 1e-12),
    }
    print(f"explain: {result}")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray builds")
    args = parser.parse_args(argv)
    sizes = [10_000, 20_000] if args.quick else [10_000, 100_000, 1_000_000]
    results = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "faiss_threads": faiss.omp_get_max_threads(), "faiss": faiss.__version__},
        "quick": args.quick,
        "command": command_line(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results["faiss"] = bench_faiss(sizes, queries=20 if args.quick else 100)
        results["explain"] = bench_explain(workdir, args.quick)
        results["build"] = bench_builds(workdir, args.quick, use_ray=not args.no_ray)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("index_quick.json" if args.quick else "index.json")
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
