"""Scale on paper: time and disk to precompute BiLRP factors of 10,000 and 100,000 pages, from measured per-page costs.

Reads the per-page numbers other benchmarks measured — ``windowed.json`` (bigram factors of a real-size table page,
windowed, with all its digits and with a few), ``factor_size.json`` (stored MB per page by model and kind),
``colored.json`` (VGG-16 layer-17 coloured factors of a 128-px image: the default key's whole input),
``index.json`` (the same build in-process and on Ray, on this machine) — and measures what they lack: the stored
size of the real-size table page's bigram factors (and, with ``--repeats``, VGG-16 factors timed here as a
cross-check). Then extrapolates to a
2-core machine like this one, a 16-core machine and a Ray cluster of ``--nodes`` 16-core machines; every assumption
is written into the result as a sentence.

Usage: .venv/bin/python -m benchmarks.bench_scale [--nodes 8] [--table-share 0.15] [--repeats 0]
       (writes benchmarks/results/scale.json and prints it)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from benchmarks import write_results

RESULTS = Path(__file__).resolve().parent / "results"
POOL = 8
MB = 1e6
CORPUS_SIZES = (10_000, 100_000)
THIS_MACHINE_CORES = 2
LARGE_MACHINE_CORES = 16
#: Share of the ideal (linear) speed-up the conservative estimates assume: the backward passes are memory-bandwidth
#: bound on a CPU (benchmarks/bench_speed.py), so 8 processes on 16 cores need not run 8 times as fast as one.
CONSERVATIVE_EFFICIENCY = 0.5


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def measure_real_table_mb() -> dict:
    """Stored MB (the factor cache's file) of the bigram factors of the real-size table page of bench_windowed."""
    from benchmarks.bench_windowed import render_page
    from bilrp_core import bigram_network, relevance_factors
    from corpus_index.explanation import resolve_schedule
    from corpus_index.storage.factor_cache import FactorCache

    model = bigram_network()
    x, _ = render_page(model, 7)
    start = time.perf_counter()
    factors = relevance_factors(model, x, pool=POOL).numpy()
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = FactorCache(tmp).save("bigram", resolve_schedule(model, None), POOL, 1, factors, tag="bench")
        stored = path.stat().st_size
    return {"input": list(x.shape[-2:]), "factor_shape": list(factors.shape), "stored_mb": stored / MB,
            "dense_mb": (factors.nbytes + 128) / MB, "seconds_this_run": seconds}


def vgg_per_page(repeats: int) -> dict:
    """VGG-16 (default key) factors per page: colored.json's layer-17 image (coloured factors, what ``method="auto"``
    computes for it) is the key's whole input (checked here).

    With ``repeats``, also timed here on a demo table page (each run), a cross-check only: on a machine
    shared with other work the time says more about the load than about the page.
    """
    from corpus_index.explanation import compute_factors, resolve_schedule
    from corpus_index.models import DEFAULT_MODEL_KEY, load_model
    from corpus_index.synthetic import generate_corpus

    colored = next(entry for entry in _json("colored.json")["models"] if entry["key"] == DEFAULT_MODEL_KEY)
    model = load_model(DEFAULT_MODEL_KEY)
    with tempfile.TemporaryDirectory() as tmp:
        generate_corpus(Path(tmp), books=1, seed=0)
        meta = pd.read_csv(Path(tmp) / "metadata.csv")
        image = Image.open(Path(tmp) / meta[meta.kind == "table"].path.iloc[0]).convert("RGB")
        side = list(model.preprocess(image).shape[-2:])
        if side != colored["input"][-2:]:
            raise SystemExit(f"{DEFAULT_MODEL_KEY} takes {side} px, colored.json measured {colored['input'][-2:]} px")
        seconds = []
        schedule = resolve_schedule(model, None)
        for _ in range(repeats + 1 if repeats else 0):  # the first run warms up
            start = time.perf_counter()
            compute_factors(model, image, schedule, POOL)
            seconds.append(time.perf_counter() - start)
    size = {page["kind"]: page for page in _json("factor_size.json")["pages"] if page["model"] == DEFAULT_MODEL_KEY}
    return {"seconds": colored["colored_seconds"], "stored_mb": size["table"]["stored_mb"],
            "dense_mb": size["table"]["dense_mb"], "input": side,
            "source": "colored.json (layer 17, h = 100, 128 px: the key's input; coloured factors), "
                      "factor_size.json (MB)",
            "timed_here_s": seconds[1:], "timed_here_load": os.getloadavg()[0]}


def per_page_costs(repeats: int, table_share: float) -> dict:
    """Seconds and stored MB per page for the bigram network (tables, few-digit pages, the mix) and VGG-16.

    Bigram seconds come from bench_windowed's real-size page: printed whole (a table) and with only its top quarter
    printed (a few digits on a page of the same size: what woodcut and text pages cost, the forward pass mostly).
    """
    windowed = _json("windowed.json")
    table_run = max(windowed["runs"], key=lambda run: run["digits"])
    sparse_run = min(windowed["runs"], key=lambda run: run["digits"])
    woodcut = next(page for page in _json("factor_size.json")["pages"]
                   if page["model"] == "bigram" and page["kind"] == "woodcut")
    table = measure_real_table_mb()
    few = {"seconds": sparse_run["windowed_seconds"], "stored_mb": woodcut["stored_mb"],
           "dense_mb": woodcut["dense_mb"], "digits": sparse_run["digits"],
           "source": "windowed.json (seconds: the page with the fewest digits), factor_size.json (MB: woodcut)"}
    mixed = {key: table_share * (table_run["windowed_seconds"] if key == "seconds" else table[key])
             + (1 - table_share) * few[key] for key in ("seconds", "stored_mb", "dense_mb")}
    return {
        "bigram_table": {"seconds": table_run["windowed_seconds"], "stored_mb": table["stored_mb"],
                         "dense_mb": table["dense_mb"], "input": windowed["page"]["input"],
                         "digits": table_run["digits"], "source": "windowed.json (seconds), measured here (MB)",
                         "measured_here": table},
        "bigram_few_digits": few,
        "bigram_mixed": {**mixed, "table_share": table_share},
        "vgg16": vgg_per_page(repeats),
    }


def ray_overhead() -> dict:
    """Ray's fixed start-up cost, from the bigram build of the same corpus in-process and on Ray (index.json)."""
    build = _json("index.json")["build"]
    local, ray = build["bigram/local"], build["bigram/ray"]
    return {"startup_seconds": max(0.0, ray["seconds"] - local["seconds"]), "items": ray["items"],
            "local_seconds": local["seconds"], "ray_seconds": ray["seconds"]}


def extrapolate(costs: dict, nodes: int, startup: float) -> dict:
    """Hours and GB per (per-page cost, corpus size, machine): ideal (linear) and conservative speed-ups."""
    workers = LARGE_MACHINE_CORES // THIS_MACHINE_CORES  # workers of 2 threads on a large machine
    machines = {  # (nodes, workers per node, fixed seconds)
        f"{THIS_MACHINE_CORES}-core machine (measured)": (1, 1, 0.0),
        f"{LARGE_MACHINE_CORES}-core machine": (1, workers, 0.0),
        f"Ray cluster of {nodes} {LARGE_MACHINE_CORES}-core nodes": (nodes, workers, startup),
    }
    table = []
    for name, cost in costs.items():
        for pages in CORPUS_SIZES:
            for machine, (count, per_node, fixed) in machines.items():
                serial = pages * cost["seconds"]
                ideal = fixed + serial / (count * per_node)
                conservative = fixed + serial / (count * (1 + (per_node - 1) * CONSERVATIVE_EFFICIENCY))
                table.append({"pages_of": name, "pages": pages, "machine": machine, "workers": count * per_node,
                              "hours_ideal": ideal / 3600, "hours_conservative": conservative / 3600,
                              "disk_gb": pages * cost["stored_mb"] / 1e3,
                              "disk_gb_dense": pages * cost["dense_mb"] / 1e3})
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=0,
                        help="also time VGG-16 factors here this many times (a cross-check; 0: not)")
    parser.add_argument("--nodes", type=int, default=8, help="nodes of the Ray cluster")
    parser.add_argument("--table-share", type=float, default=0.15,
                        help="share of table pages in the mixed corpus (the rest costed as woodcut pages)")
    args = parser.parse_args(argv)
    if args.repeats < 0 or args.nodes < 1 or not 0 <= args.table_share <= 1:
        parser.error("--repeats must be ≥ 0, --nodes ≥ 1 and --table-share in [0, 1]")
    given = [f"--repeats {args.repeats}", f"--nodes {args.nodes}", f"--table-share {args.table_share:g}"]
    results = {"command": " ".join(["python -m benchmarks.bench_scale", *given]), "threads": torch.get_num_threads(),
               "load_before": os.getloadavg()[0], "pool": POOL, "gb": "1e9 bytes"}
    costs = per_page_costs(args.repeats, args.table_share)
    overhead = ray_overhead()
    results["per_page"] = costs
    results["ray_overhead"] = overhead
    results["estimates"] = extrapolate({name: costs[name] for name in ("bigram_table", "bigram_mixed", "vgg16")},
                                       args.nodes, overhead["startup_seconds"])
    results["assumptions"] = [
        "Per-page seconds measured on this 2-core CPU with 2 threads are one 2-core machine's throughput: "
        f"bigram pages from windowed.json (load average {_json('windowed.json')['load_before'][0]:.1f}), "
        "VGG-16 from colored.json (coloured factors). Bigram factors are windowed (method='auto'), pool 8, "
        "default γ; VGG-16 is the default key at its 128-px input.",
        "bigram_table costs every page as a real-size table page (≈1400×1008 after normalisation, hundreds of "
        "digits): an upper bound. bigram_mixed assumes the stated share of tables and costs the other pages as the "
        "same page with only a few digits printed (woodcut and text pages have few numerals); their disk as the "
        "measured woodcut page's.",
        f"A {LARGE_MACHINE_CORES}-core machine runs {LARGE_MACHINE_CORES // THIS_MACHINE_CORES} workers of 2 threads: "
        "ideal = linear in cores. The backward passes are memory-bandwidth bound, so linear holds only up to the "
        f"machine's memory bandwidth; 'conservative' assumes each added worker on a machine brings "
        f"{CONSERVATIVE_EFFICIENCY:.0%} of one.",
        f"The Ray cluster is {args.nodes} such nodes: ideal = linear in nodes, plus Ray's fixed start-up measured "
        "on this machine (the bigram build of the same corpus on Ray minus in-process, index.json); the corpus "
        "root is on a file system every node mounts, and writing the small factor files is not the bottleneck.",
        "Disk is the factor cache's files (sparse CSR where smaller, dense float32 otherwise) for one (model, γ, "
        "pool); disk_gb_dense is what dense float32 files would take. Rotation-max models store 8 transforms "
        "per page: 8× time and disk.",
        "Features and indexes (build without --factors) are not included; they cost one forward pass per page.",
    ]
    write_results(RESULTS / "scale.json", results)


if __name__ == "__main__":
    main()
