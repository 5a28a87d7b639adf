"""Coloured against dense BiLRP factors of the VGG-16 models at 128 px (issue 15: an uncached VGG pair ≤ 10 s).

Usage: .venv/bin/python -m benchmarks.bench_colored [--keys vgg16-L17-h100-seed0 ...] [--threads 2] [--repeats 1]
       (writes benchmarks/results/colored.json and prints it)

For each model key, one rendered demo page (``corpus_index.synthetic``, preprocessed as the app does): the seconds
of dense and of coloured factors (pool 8) in the same run, the speed-up, the split, colours and layers on crops
the plan chose with its estimated multiply-adds, the coloured time split into the adjoint (colour) passes and the
dimensions' part (backward above the split and the products at the split), the multiply-add rates of the two parts
(the ratio behind :data:`bilrp_core.colored.PRODUCT_WEIGHT` when the layers above the split are cheap, as at L17),
the same coloured factors without crops (every colour pass on whole maps, the plan's best split for that), the
largest difference relative to the largest dense factor, and the machine's load average before and after.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import command_line, write_results  # noqa: E402
from bilrp_core import colored, relevance_factors  # noqa: E402
from bilrp_core.attribution import _active_dims, _forward_and_prepare, factor_method, output_dim  # noqa: E402
from bilrp_core.composite import rules_for  # noqa: E402
from corpus_index.models import load_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "colored.json"
KEYS = ("vgg16-L17-h100-seed0", "vgg16-L10-h100-seed0", "vgg16-L24-h100-seed0")
POOL = 8


def demo_input(model, group=5, seed=0):
    """A rendered demo table page as the model's input (1, 3, 128, 128)."""
    from corpus_index.synthetic import table_groups, table_page
    from corpus_index.synthetic.pages import sample_house_style

    rng = np.random.default_rng([seed, group])
    scan, _, _ = table_page(table_groups()[group], sample_house_style(rng, "EB Garamond"), 10, rng)
    return model.preprocess(scan)


def the_plan(model, x):
    """The coloured plan :func:`bilrp_core.relevance_factors` makes for ``x`` (pool 8, every dimension)."""
    rules, shapes = rules_for(model), []
    with torch.no_grad():
        contexts, a_top = _forward_and_prepare(model, x, rules, shapes)
        dims = list(range(output_dim(model, a_top)))
        n_dims = len(_active_dims(model, a_top, dims))
        return colored.plan_colors(rules, contexts, shapes + [a_top.shape], (POOL, POOL), n_dims), shapes, n_dims


def timed_colored(model, x, colours, crops=True):
    """Seconds of coloured factors, and of their colour passes (up to the progress report of the last colour).

    ``crops=False``: every colour pass on whole maps (crops priced out of the plan, which may then split elsewhere).
    """
    marks, weight = {}, colored.CROP_WEIGHT
    colored.CROP_WEIGHT = weight if crops else 1e30
    try:
        colours = colours if crops else the_plan(model, x)[0].colors
        start = time.perf_counter()

        def progress(done, total):
            if done >= colours and "colours" not in marks:
                marks["colours"] = time.perf_counter() - start

        factors = relevance_factors(model, x, pool=POOL, method="colored", progress=progress)
    finally:
        colored.CROP_WEIGHT = weight
    return factors, time.perf_counter() - start, marks["colours"]


def measure(key, repeats):
    model = load_model(key)
    x = demo_input(model)
    plan, shapes, n_dims = the_plan(model, x)
    relevance_factors(model, x, pool=POOL, method="dense", dims=range(4))  # warm-up
    relevance_factors(model, x, pool=POOL, method="colored", dims=range(4))
    dense_times, colored_runs, uncropped_runs = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        dense = relevance_factors(model, x, pool=POOL, method="dense")
        dense_times.append(time.perf_counter() - start)
        coloured, seconds, colour_seconds = timed_colored(model, x, plan.colors)
        colored_runs.append((seconds, colour_seconds))
        uncropped, *timing = timed_colored(model, x, plan.colors, crops=False)
        uncropped_runs.append(tuple(timing))
    seconds, colour_seconds = min(colored_runs)
    dense_seconds = statistics.median(dense_times)
    product_macs = n_dims * plan.colors * int(torch.Size(plan.level_shape[1:]).numel())
    return {
        "key": key, "input": list(x.shape), "pool": POOL, "dims": n_dims,
        "dense_seconds": dense_seconds, "colored_seconds": seconds, "speedup": dense_seconds / seconds,
        "pair_seconds_colored": 2 * seconds, "pair_seconds_dense": 2 * dense_seconds,
        "colour_pass_seconds": colour_seconds, "dimension_part_seconds": seconds - colour_seconds,
        "uncropped_seconds": min(uncropped_runs)[0], "uncropped_colour_pass_seconds": min(uncropped_runs)[1],
        "split": plan.split, "below_split": f"layers 0-{plan.split - 1} (last: {model.layers[plan.split - 1]})",
        "crops": plan.crops, "on_crops": f"layers 0-{plan.crops - 1}" if plan.crops else "none",
        "level_shape": list(plan.level_shape), "spacing": list(plan.spacing),
        "colours": plan.colors, "estimated_macs_colored": plan.cost, "estimated_macs_dense": plan.dense_cost,
        "estimated_macs_colour_passes": plan.colour_cost,
        "colour_pass_gmacs_per_s": plan.colour_cost / colour_seconds / 1e9,
        "dimension_part_gmacs_per_s": product_macs / (seconds - colour_seconds) / 1e9,
        "auto_method": factor_method(model, x, pool=POOL),
        "max_relative_difference": float((coloured - dense).abs().max() / dense.abs().max()),
        "max_relative_difference_uncropped": float((uncropped - dense).abs().max() / dense.abs().max()),
        "dense_seconds_all": dense_times, "colored_seconds_all": [s for s, _ in colored_runs],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", nargs="+", default=list(KEYS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"command": command_line(), "torch_threads": torch.get_num_threads(), "load_before": os.getloadavg()[0]}
    results["models"] = [measure(key, args.repeats) for key in args.keys]
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
