"""The ``editions`` command: matching items, groups and the network of editions of a model, as files.

``python -m corpus_index --root R editions --model KEY [--kind table] [--k 20] [--threshold T] --csv EDGES.csv
[--graphml FILE] [--gexf FILE] [--groups GROUPS.csv] [--matrix MATRIX.csv]``

Registered in :mod:`corpus_index.cli` through :func:`add_parsers` and :data:`COMMANDS`. Every output file is
checked before the kNN graph is searched; tables go through :mod:`corpus_index.csv_export`.
"""

from __future__ import annotations

import argparse
import math
import sys

from corpus_index.cli_args import check_destination, count_arg

HELP_MODELS = "model key (see 'python -m corpus_index build --help')"


def threshold_arg(text: str) -> float:
    """``--threshold``: a finite number (a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_parsers(sub) -> None:
    """Add the ``editions`` command to the sub-parsers of ``python -m corpus_index``."""
    editions = sub.add_parser(
        "editions", help="matching items, their groups and the network of editions (CSV, GraphML, GEXF)",
        description="Search the k nearest neighbours of every item, keep the pairs at or above the match "
                    "threshold (default: from verdicts, else the top 0.5%% of all pairs of the kind), group them "
                    "and count shared items between editions.")
    editions.add_argument("--model", required=True, metavar="KEY", help=HELP_MODELS)
    editions.add_argument("--kind", help="only items of this kind, e.g. table or illustration (default: all)")
    editions.add_argument("--k", type=count_arg(1000), default=20, help="neighbours searched per item (default 20)")
    editions.add_argument("--threshold", type=threshold_arg,
                          help="match threshold on <phi(x), phi(x')> (default: from verdicts or the distribution)")
    editions.add_argument("--groups-method", choices=["components", "communities"], default="components",
                          help="groups as connected components (default) or Louvain communities")
    editions.add_argument("--csv", required=True, help="CSV file of the matching item pairs ('-' for stdout)")
    editions.add_argument("--groups", help="CSV file of the groups of matching items, members by year")
    editions.add_argument("--matrix", help="CSV file of the edition x edition matrix of shared items")
    editions.add_argument("--graphml", help="GraphML file of the network of editions")
    editions.add_argument("--gexf", help="GEXF file of the network of editions (Gephi)")


def cmd_editions(args) -> int:
    """Run ``editions``: write the requested files and print a summary (on stderr when the CSV goes to stdout)."""
    from corpus_index.corpus import Corpus
    from corpus_index.csv_export import write_csv
    from corpus_index.editions import analyse
    from corpus_index.editions.exports import edition_network, matrix_table, write_network
    from corpus_index.progress import ProgressPrinter

    outputs = {"--csv": (args.csv, "edges.csv"), "--groups": (args.groups, "groups.csv"),
               "--matrix": (args.matrix, "matrix.csv"), "--graphml": (args.graphml, "editions.graphml"),
               "--gexf": (args.gexf, "editions.gexf")}
    for option, (path, example) in outputs.items():
        check_destination(path, option, example)
    for option in ("--groups", "--matrix", "--graphml", "--gexf"):
        if outputs[option][0] == "-":
            raise ValueError(f"{option} cannot be '-': only --csv can go to standard output")
    corpus = Corpus.open(args.root)
    if args.kind is not None and not corpus.count(kind=args.kind):
        kinds = ", ".join(str(k) for k in corpus.store.distinct("kind") if k) or "none"
        raise ValueError(f"--kind {args.kind}: no item of this kind in the corpus (kinds: {kinds})")
    result = analyse(corpus, args.model, kind=args.kind, k=args.k, threshold=args.threshold,
                     method=args.groups_method, progress=ProgressPrinter())
    report = sys.stderr if args.csv == "-" else sys.stdout
    print(f"threshold: {result.threshold.meaning}", file=report)
    write_csv(result.edges, args.csv)
    written = [f"{len(result.edges)} matching item pairs to {args.csv}"]
    if args.groups:
        write_csv(result.groups, args.groups)
        written.append(f"{result.groups['match_group'].nunique()} groups to {args.groups}")
    if args.matrix:
        write_csv(matrix_table(result.matrix), args.matrix)
        written.append(f"a {len(result.matrix)} x {len(result.matrix)} edition matrix to {args.matrix}")
    network = edition_network(result.book_edges, result.books)
    for option, format in (("graphml", "graphml"), ("gexf", "gexf")):
        path = getattr(args, option)
        if path:
            write_network(network, path, format)
            written.append(f"a network of {network.number_of_nodes()} editions and {network.number_of_edges()} "
                           f"links to {path}")
    for line in written:
        print(f"wrote {line}", file=report)
    return 0


COMMANDS = {"editions": cmd_editions}
