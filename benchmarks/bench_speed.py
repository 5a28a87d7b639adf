"""Speed of BiLRP factors for VGG-16 on this CPU (issue: bilrp_core foundation, "Speed").

For VGG-16 at layers 17 and 31, 128×128 inputs, h = 100, random weights:
- per-image factor time of the batched path, and its ratio to h × (one forward pass);
- a per-dimension loop that re-runs forward and backward for each output dimension (how per-dimension LRP code,
  e.g. the authors', works), its time and the relative error between the two;
- peak resident memory of the factor computation at L17 (measured in a fresh subprocess per setting).

Usage: .venv/bin/python benchmarks/bench_speed.py [--repeats 3] [--memory-only]   (writes benchmarks/results/speed.json)
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import command_line  # noqa: E402
from bilrp_core import relevance_factors, relevance_factors_loop, vgg16_similarity  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "speed.json"


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_layer(layer, repeats, h=100, size=128):
    model = vgg16_similarity(layer=layer, proj_dim=h, image_size=size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)
        forward = _median_time(lambda: model(x), max(5, repeats))
    relevance_factors(model, x)  # warm-up
    batched = _median_time(lambda: relevance_factors(model, x), repeats)
    chunks = {c: _median_time(lambda c=c: relevance_factors(model, x, chunk_size=c), 1) for c in (1, 4, 16, 100)}
    start = time.perf_counter()
    looped = relevance_factors_loop(model, x)
    loop_time = time.perf_counter() - start
    fast = relevance_factors(model, x)
    rel_err = ((fast - looped).norm() / looped.norm()).item()
    return {
        "layer": layer, "h": h, "image_size": size, "forward_s": forward, "factors_s": batched,
        "ratio_to_h_forwards": batched / (h * forward), "factors_s_by_chunk": chunks,
        "loop_s": loop_time, "speedup_vs_loop": loop_time / batched, "relative_error_vs_loop": rel_err,
    }


MEMORY_PROBE = """
import json, resource, sys, torch
sys.path.insert(0, {root!r})
from bilrp_core import relevance_factors, vgg16_similarity
model = vgg16_similarity(layer={layer}, proj_dim=100, image_size=128)
x = torch.randn(1, 3, 128, 128)
with torch.no_grad():
    model(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
relevance_factors(model, x, chunk_size={chunk})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"peak_rss_mb": after / 1024, "model_rss_mb": before / 1024}}))
"""


def peak_memory(layer, chunk):
    """Peak resident memory (MB) of a fresh process computing one image's factors, and before computing them."""
    code = MEMORY_PROBE.format(root=str(ROOT), layer=layer, chunk=chunk)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-only", action="store_true", help="re-measure only the peak memory")
    args = parser.parse_args()
    if args.memory_only:
        results = json.loads(RESULTS.read_text())
    else:
        results = {"torch_threads": torch.get_num_threads(),
                   "layers": [measure_layer(L, args.repeats) for L in (17, 31)]}
    results["memory_L17"] = {str(c): peak_memory(17, c) for c in (None, 100)}
    results["command"] = command_line()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    for r in results["layers"]:
        print(f"L{r['layer']}: forward {r['forward_s'] * 1e3:.1f} ms, factors {r['factors_s']:.2f} s "
              f"(ratio to h x forward {r['ratio_to_h_forwards']:.2f}), loop {r['loop_s']:.2f} s "
              f"(speed-up {r['speedup_vs_loop']:.1f}x, rel. error {r['relative_error_vs_loop']:.1e}), "
              f"by chunk {({k: round(v, 2) for k, v in r['factors_s_by_chunk'].items()})}")
    for chunk, m in results["memory_L17"].items():
        print(f"L17 peak RSS (chunk {chunk}): {m['peak_rss_mb']:.0f} MB "
              f"(model + input alone {m['model_rss_mb']:.0f} MB)")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
