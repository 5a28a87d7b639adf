"""Windowed against dense BiLRP factors of the bigram network on a demo table page rendered at real-scan size.

Usage: .venv/bin/python -m benchmarks.bench_windowed [--group 7] [--dense-fractions 1.0 0.25]
       (writes benchmarks/results/windowed.json and prints it)

The page is a demo table (``corpus_index.synthetic``) normalised as at inference (about 1400 px tall). For the
full page and for the same page with its lower part blanked (fewer digits, same size), it records the seconds of
windowed factors split into the one forward pass, planning the windows and the windowed backward, the end-to-end
seconds of both methods, and how far the windowed factors are from the dense ones.
"""

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bilrp_core import bigram_network, relevance_factors
from bilrp_core.attribution import _active_dims, _forward_and_prepare, output_dim
from bilrp_core.composite import rules_for
from bilrp_core.windowed import plan_windows, run_windows
from corpus_index.synthetic import table_groups, table_page
from corpus_index.synthetic.pages import sample_house_style

RESULTS = Path(__file__).resolve().parent / "results" / "windowed.json"
POOL = 8


def render_page(model, group, seed=0):
    """The normalised page (1, 1, H, W) and the centres' rows of its digits in normalised pixels."""
    rng = np.random.default_rng([seed, group])
    scan, boxes, _ = table_page(table_groups()[group], sample_house_style(rng, "EB Garamond"), 10, rng)
    x = model.preprocess(scan)
    sy = x.shape[-2] / scan.height
    return x, [0.5 * (y0 + y1) * sy for _, _, y0, _, y1 in boxes]


def split_seconds(model, x):
    """Seconds of the forward pass, the window plan and the windowed backward, and the plan's size."""
    start = time.perf_counter()
    rules, shapes = rules_for(model), []
    contexts, a_top = _forward_and_prepare(model, x, rules, shapes)
    dims = list(range(output_dim(model, a_top)))
    active = _active_dims(model, a_top, dims)
    forward = time.perf_counter()
    with torch.no_grad():
        plan = plan_windows(model, rules, contexts, shapes, a_top, [dims[i] for i in active])
    planned = time.perf_counter()
    out = torch.zeros(len(dims), -(-x.shape[-2] // POOL), -(-x.shape[-1] // POOL))
    with torch.no_grad():
        run_windows(plan, out, active, (POOL, POOL))
    done = time.perf_counter()
    return {"forward_seconds": forward - start, "windows_seconds": planned - forward,
            "backward_seconds": done - planned, "active_dims": len(active), "pairs": len(plan.pairs),
            "tile": plan.tile, "support": plan.support}


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=7, help="demo table group (7: 30 rows, 1400 px tall)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25],
                        help="shares of the page's height left printed (the rest blanked)")
    parser.add_argument("--dense-fractions", type=float, nargs="+", default=[1.0, 0.25],
                        help="the fractions whose dense factors are computed too (each takes long)")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join([".venv/bin/python -m benchmarks.bench_windowed", *given])
    model = bigram_network()
    page, rows = render_page(model, args.group)
    results = {"command": command, "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "threads": torch.get_num_threads(), "load_before": os.getloadavg(), "model": model.key,
               "page": {"group": table_groups()[args.group].group, "input": list(page.shape[-2:])}, "pool": POOL,
               "runs": []}
    relevance_factors(model, page[..., :256, :256], pool=POOL, method="windowed")  # warm-up
    relevance_factors(model, page[..., :256, :256], pool=POOL, method="dense")
    for fraction in args.fractions:
        cut = int(round(page.shape[-2] * fraction))
        x = page.clone()
        x[..., cut:, :] = 0  # fewer digits, same page size
        run = {"printed_fraction": fraction, "digits": sum(r < cut for r in rows), **split_seconds(model, x)}
        windowed, run["windowed_seconds"] = timed(lambda x=x: relevance_factors(model, x, pool=POOL,
                                                                                method="windowed"))
        _, run["auto_seconds"] = timed(lambda x=x: relevance_factors(model, x, pool=POOL))
        if fraction in args.dense_fractions:
            dense, run["dense_seconds"] = timed(lambda x=x: relevance_factors(model, x, pool=POOL, method="dense"))
            run["speed_up"] = run["dense_seconds"] / run["windowed_seconds"]
            run["max_rel_diff"] = float((windowed - dense).abs().max() / dense.abs().max())
            run["norm_rel_diff"] = float((windowed - dense).norm() / dense.norm())
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
    results["load_after"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
