"""Write the README's table of headline results from ``benchmarks/results/``.

The numbers live in the benchmarks' result files; the README shows a table generated from them, between the
markers ``<!-- results:start -->`` and ``<!-- results:end -->``, so that a number is written in one place only.
``python scripts/results_table.py`` rewrites the table; ``--check`` exits 1 when the README's table is out of date
(the test suite runs the check).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
RESULTS = TOP / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SCALE_START, SCALE_END = "<!-- scale:start -->", "<!-- scale:end -->"


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _tables_rows() -> list[tuple[str, str, str]]:
    tables = _json("tables.json")
    command = tables.get("command", "python -m benchmarks.bench_tables")
    detection = tables["detection_held_out_typeface"]
    retrieval = tables["table_retrieval"]
    faith = tables["faithfulness"]
    per_corpus = tables.get("bigram_per_corpus", {})
    rows = [
        ("digit detection, held-out typeface (Cardo): F1 (precision / recall)",
         f"{detection['f1']:.3f} ({detection['precision']:.3f} / {detection['recall']:.3f})", command),
        ("table retrieval, bigram network: mAP@10 / precision@1 (demo corpus, seed 0)",
         f"{retrieval['bigram']['map@10']:.3f} / {retrieval['bigram']['precision@1']:.3f}", command),
    ]
    if "mean_map@10" in per_corpus:
        seeds = ", ".join(sorted(per_corpus.get("seeds", {})))
        rows.append((f"table retrieval, mean over demo corpora (seeds {seeds}): mAP@10",
                     f"{per_corpus['mean_map@10']:.3f}", command))
    rows += [
        ("table retrieval, untrained VGG-16 layer 17: mAP@10",
         f"{retrieval['vgg16-L17-random']['map@10']:.3f}", command),
        ("explanation faithfulness (relevance linking the same digit): bigram plain / aligned / untrained VGG",
         f"{faith['bigram-plain-routing']['mean_share']:.2f} / {faith['bigram-aligned']['mean_share']:.2f} / "
         f"{faith['vgg16-L17-random-256px']['mean_share']:.3f}", command),
    ]
    return rows


def _cost_rows() -> list[tuple[str, str, str]]:
    cost = _json("bigram_cost.json")
    plain = [p["factors_seconds"] for p in cost["pages"] if p["model"].startswith("plain")]
    aligned = [p["factors_seconds"] for p in cost["pages"] if p["model"].startswith("aligned")]
    sizes = sorted({tuple(p["input"]) for p in cost["pages"]})
    size_text = ", ".join(f"{w}×{h}" for w, h in sizes)
    speed = _json("speed.json")
    layers = {layer["layer"]: layer for layer in speed["layers"]}
    rows = [(f"bigram factors per table page ({size_text} px), dense method: plain / aligned routing",
             f"{min(plain):.1f}–{max(plain):.1f} s / {min(aligned):.1f}–{max(aligned):.1f} s",
             cost.get("command", "python -m benchmarks.bench_bigram_cost"))]
    windowed = _json("windowed.json")
    full = max(windowed["runs"], key=lambda run: run["digits"])
    width, height = windowed["page"]["input"]
    rows.append((f"bigram factors of a {width}×{height} table page ({full['digits']} digits): windowed / dense",
                 f"{full['windowed_seconds']:.2f} s / {full['dense_seconds']:.1f} s ({full['speed_up']:.0f}×, "
                 f"max rel. difference {full['max_rel_diff']:.0e})", windowed["command"]))
    size = _json("factor_size.json")
    stored = "; ".join(f"{page['model'].split('-')[0]} {page['kind']} {page['stored_mb']:.3g} MB "
                       f"(dense {page['dense_mb']:.3g})" for page in size["pages"])
    rows.append((f"cached factors per demo page, pool {size['pool']}: stored (dense)", stored, size["command"]))
    rows += [(f"VGG-16 layer {n} factors of one 128-px image (h = 100), dense; speed-up over a loop",
              f"{layers[n]['factors_s']:.2f} s; {layers[n]['speedup_vs_loop']:.1f}×",
              speed.get("command", "python benchmarks/bench_speed.py"))
             for n in sorted(layers) if n != 17]  # layer 17: the coloured row below, dense timed in the same run
    colored = _json("colored.json")
    vgg = next(entry for entry in colored["models"] if entry["key"] == "vgg16-L17-h100-seed0")
    rows.append(("VGG-16 layer 17 factors of one 128-px image (h = 100): coloured / dense, same run",
                 f"{vgg['colored_seconds']:.2f} s / {vgg['dense_seconds']:.2f} s ({vgg['speedup']:.1f}×, max rel. "
                 f"difference {vgg['max_relative_difference']:.0e})", colored["command"]))
    return rows


def _toy_row() -> tuple[str, str, str]:
    with open(RESULTS / "toy_acs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    bilrp = max((r for r in rows if r["method"] == "BiLRP"), key=lambda r: float(r["acs"]))
    others = {r["method"]: float(r["acs"]) for r in rows if r["method"] != "BiLRP"}
    text = (f"BiLRP (γ = {float(bilrp['gamma']):g}) {float(bilrp['acs']):.3f}; "
            + "; ".join(f"{name} {value:.3f}" for name, value in others.items()))
    return ("toy benchmark of the paper's Sec. 4: cosine to the true matches", text,
            "python -m benchmarks.bench_toy")


def _index_and_app_rows() -> list[tuple[str, str, str]]:
    index = _json("index.json")
    flat = index["faiss"]
    largest = max(flat, key=int)
    explain = index["explain"]
    app = _json("app.json")
    first = _json("first_start.json")
    index_command = index.get("command", "python benchmarks/bench_index.py")
    return [
        (f"exact FAISS search among {int(largest):,} vectors (h = 100), median per query",
         f"{flat[largest]['flat']['query_ms_median']:.1f} ms", index_command),
        ("one pair from cached factors (VGG-16 layer 17)", f"{explain['cached_ms_per_pair_median']:.2f} ms",
         index_command),
        ("explorer in Chromium (targets 1 / 1 / 5 / 10 / 2 s): neighbours after a click / demo table pair "
         "(precomputed) / real-size table pair, uncached / VGG pair, uncached / neighbours → explain (prefetch)",
         f"{app['neighbours_after_click']['median_s']:.2f} s / {app['cached_explanation']['median_s']:.2f} s / "
         f"{app['uncached_real_size_table_pair_s']:.1f} s / {app['uncached_explanation_s']:.1f} s / "
         f"{app['click_through_with_prefetch']['median_s']:.2f} s",
         app.get("command", "python benchmarks/bench_app.py")),
        ("explorer's first start: 24 demo books, two models, table factors precomputed (target 10 min)",
         f"{first['wall_clock_s'] / 60:.1f} min", "python -m corpus_index --root ROOT demo"),
    ]


def table() -> str:
    """The Markdown table of headline results, from the result files."""
    rows = _tables_rows() + _cost_rows() + [_toy_row()] + _index_and_app_rows()
    lines = ["| measure | result | command |", "|---|---|---|"]
    lines += [f"| {measure} | {value} | `{command}` |" for measure, value, command in rows]
    return "\n".join(lines)


def scale_table() -> str:
    """The Markdown table of the scale estimates (``scale.json``): hours and disk to precompute factors."""
    scale = _json("scale.json")
    names = {"bigram_table": "bigram, every page a real-size table (upper bound)",
             "bigram_mixed": f"bigram, {scale['per_page']['bigram_mixed']['table_share']:.0%} tables, the rest "
                             "pages with few digits",
             "vgg16": "VGG-16 layer 17 (default key)"}
    def duration(hours: float) -> str:
        return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h" if hours < 10 else f"{hours:,.0f} h"

    machines = list(dict.fromkeys(row["machine"] for row in scale["estimates"]))
    cells: dict[tuple, dict] = {}
    for row in scale["estimates"]:
        cells.setdefault((row["pages_of"], row["pages"]), {"disk": row})[row["machine"]] = row
    lines = ["| factors of | pages | " + " | ".join(machines) + " | disk (dense float32) |",
             "|---|---|" + "---|" * len(machines) + "---|"]
    for (pages_of, pages), by_machine in cells.items():
        times = [f"{duration(by_machine[m]['hours_ideal'])}" + (
            "" if by_machine[m]["hours_conservative"] == by_machine[m]["hours_ideal"]
            else f" – {duration(by_machine[m]['hours_conservative'])}") for m in machines]
        disk = by_machine["disk"]
        lines.append(f"| {names.get(pages_of, pages_of)} | {pages:,} | " + " | ".join(times)
                     + f" | {disk['disk_gb']:.3g} GB ({disk['disk_gb_dense']:.3g} GB) |")
    lines.append(f"\nTimes: linear in cores and nodes – half a worker per added worker. Assumptions in "
                 f"`benchmarks/results/scale.json`, from `{scale['command']}`.")
    return "\n".join(lines)


def _replace_between(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def render(readme: str) -> str:
    """``readme`` with the text between the markers replaced by the current table.

    The scale section (:func:`scale_table`) is filled in too where the README has its markers
    ``<!-- scale:start -->`` and ``<!-- scale:end -->``.
    """
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {START} and {END}")
    readme = _replace_between(readme, START, END, table())
    if SCALE_START in readme and SCALE_END in readme:
        readme = _replace_between(readme, SCALE_START, SCALE_END, scale_table())
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's table is out of date")
    parser.add_argument("--scale", action="store_true", help="print the scale section (from scale.json) and exit")
    args = parser.parse_args(argv)
    if args.scale:
        print(scale_table())
        return 0
    path = TOP / "README.md"
    current = path.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("README.md's results table is out of date: run python scripts/results_table.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
