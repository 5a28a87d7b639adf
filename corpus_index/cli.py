"""Command line: ``python -m corpus_index [--root ROOT] {demo,ingest,build,query,explain,export,info} ...``.

Every command takes ``--help``. Errors a user can fix (unknown model key, missing root, unknown item id, bad
file) print one line ``error: ...`` on stderr and exit with status 1 (2 for bad usage); an interrupted build
(Ctrl-C) keeps its finished batches and exits with 130. Set ``CORPUS_INDEX_DEBUG=1`` to see tracebacks instead.

Whatever can be checked before work starts is checked first (:mod:`corpus_index.cli_args`): gamma, item ids,
years and counts when the arguments are parsed, output files (``--out``, ``--csv``) and the metadata CSV of an
ingest before anything is computed or created. Every CSV written goes through :mod:`corpus_index.csv_export`, so
it is safe to open in a spreadsheet.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from corpus_index import cli_editions, cli_verdicts
from corpus_index.cli_args import check_destination, count_arg, gamma_arg, item_id_arg, pool_arg, year_arg
from corpus_index.errors import user_errors
from corpus_index.filters import FILTER_HELP, FILTERS, YEAR_FILTERS
from corpus_index.malloc import keep_freed_memory
from corpus_index.models import DEFAULT_MODEL_KEY, DEMO_MODEL_KEYS, KEY_LIMITS, canonical_key
from corpus_index.progress import ProgressPrinter
from corpus_index.storage.layout import INDEX_SUFFIXES, Layout

EPILOG = ("model keys: vgg16-L{5,10,17,24,31}-h{H}-seed{S}[-px{SIZE}][-rot] (random weights), "
          f"vgg16in-... (ImageNet weights, if on disk), bigram[-rot]; {KEY_LIMITS}")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters")
    for name in FILTERS:  # --kind, --book, --year-min, ... (corpus_index.filters)
        group.add_argument(f"--{name.replace('_', '-')}", type=year_arg if name in YEAR_FILTERS else None,
                           help=FILTER_HELP[name])
    group.add_argument("--exclude-same-book", action="store_true", help="leave out the query item's own book")
    group.add_argument("--index", choices=list(INDEX_SUFFIXES), help="which index (default: exact if built)")


def _filters(args) -> dict:
    return {name: getattr(args, name) for name in FILTERS}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m corpus_index``."""
    parser = argparse.ArgumentParser(
        prog="python -m corpus_index", epilog=EPILOG,
        description="Build and search a corpus of page scans: ingest, features, FAISS indexes, BiLRP explanations.")
    parser.add_argument("--root", default="./data", help="corpus root folder (default: ./data)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_ingest(sub)
    _add_build(sub)
    _add_query(sub)
    _add_explain(sub)
    _add_export(sub)
    cli_editions.add_parsers(sub)
    cli_verdicts.add_parsers(sub)
    sub.add_parser("info", help="items, books and built models of the corpus")
    return parser


def _add_demo(sub) -> None:
    """``demo``: generating the demo corpus."""
    demo = sub.add_parser("demo", help="generate the demo corpus, ingest it and build the default models",
                          epilog=EPILOG)
    demo.add_argument("--books", type=int, default=24, help="number of demo books (default 24)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the demo corpus")
    demo.add_argument("--model", action="append", dest="models", metavar="KEY",
                      help=f"model key to build (repeatable; default: {', '.join(DEMO_MODEL_KEYS)})")
    demo.add_argument("--batch-size", type=int, default=16)


def _add_ingest(sub) -> None:
    """``ingest``: adding scans."""
    ingest = sub.add_parser("ingest", help="add scans from a folder (with metadata CSV) or a IIIF manifest")
    ingest.add_argument("folder", nargs="?", help="folder of scans (jpg, png, tif; recursive)")
    ingest.add_argument("--csv", help="metadata CSV (default: FOLDER/metadata.csv if present)")
    ingest.add_argument("--iiif", help="IIIF manifest: a file or an http(s) URL")
    ingest.add_argument("--max-size", type=int, default=1600, help="longest side of fetched IIIF images")
    ingest.add_argument("--allow-private", action="store_true",
                        help="let IIIF fetches reach local/private addresses (a local image server)")
    ingest.add_argument("--fetch-timeout", type=float, default=30.0, help="seconds per IIIF fetch (default 30)")
    ingest.add_argument("--max-image-mb", type=float, default=50.0, help="largest IIIF image response in MB")
    ingest.add_argument("--update", action="store_true",
                        help="also update the metadata of items already in the corpus from --csv (matched by hash, "
                             "path or file name; every change is logged); without FOLDER only update")
    ingest.add_argument("--editor", help="name stored with the changes of --update (default: csv:<file name>)")


def _add_build(sub) -> None:
    """``build``: computing a model's features and index."""
    build = sub.add_parser("build", help="compute features and the FAISS index of a model", epilog=EPILOG)
    build.add_argument("--model", action="append", dest="models", required=True, metavar="KEY",
                       help="model key (repeatable), e.g. " + DEFAULT_MODEL_KEY)
    build.add_argument("--factors", action="store_true", help="also cache every item's BiLRP factors")
    build.add_argument("--gamma", type=gamma_arg, help="gamma for --factors: a number or JSON {layer: gamma}")
    build.add_argument("--pool", type=pool_arg, default="auto",
                       help="patch size of cached factors, or 'auto' (default): the model's default patch size "
                            "(the explorer's) and the coarser ones it falls back to")
    build.add_argument("--engine", choices=["local", "ray"], default="local", help="in-process or Ray Data")
    build.add_argument("--address", help="Ray address: auto, ray://HOST:10001 or HOST:6379 (default: local Ray)")
    build.add_argument("--concurrency", type=int, default=2, help="Ray workers (default 2)")
    build.add_argument("--batch-size", type=count_arg(4096), default=16, help="images per forward pass (default 16)")
    build.add_argument("--index-kind", choices=list(INDEX_SUFFIXES), default="flat",
                       help="exact inner product (flat, default) or approximate (hnsw, ivfpq)")


def _add_query(sub) -> None:
    """``query``: nearest neighbours."""
    query = sub.add_parser("query", help="nearest neighbours of an item or an image", epilog=EPILOG)
    query.add_argument("--model", required=True, metavar="KEY", help="model key")
    target = query.add_mutually_exclusive_group(required=True)
    target.add_argument("--item", type=item_id_arg, help="query item id")
    target.add_argument("--image", help="query image file")
    query.add_argument("-k", type=count_arg(10_000), default=10, help="number of neighbours (default 10)")
    query.add_argument("--csv", help="also write the table to this CSV file")
    _add_filters(query)


def _add_explain(sub) -> None:
    """``explain``: a pair's explanation."""
    explain = sub.add_parser("explain", help="BiLRP explanation of a pair as PNG (and top patch pairs as CSV)",
                             epilog=EPILOG)
    explain.add_argument("--model", required=True, metavar="KEY", help="model key")
    explain.add_argument("id1", type=item_id_arg)
    explain.add_argument("id2", type=item_id_arg)
    explain.add_argument("--out", required=True, help="PNG file to write")
    explain.add_argument("--csv", help="CSV file of the strongest patch pairs")
    explain.add_argument("--pairs", type=count_arg(10_000), default=30,
                         help="number of patch pairs drawn/listed (default 30)")
    explain.add_argument("--gamma", type=gamma_arg, help="a number or JSON {layer: gamma} (default: model's)")
    explain.add_argument("--pool", type=pool_arg, default="auto",
                         help="patch size in model-input pixels (default 'auto': the model's, as in the explorer)")


def _add_export(sub) -> None:
    """``export``: neighbours of many items as CSV."""
    export = sub.add_parser("export", help="neighbours of every item (or some) with scores and metadata as CSV",
                            epilog=EPILOG)
    export.add_argument("--model", required=True, metavar="KEY", help="model key")
    export.add_argument("--items", type=item_id_arg, nargs="+", help="query item ids (default: every item)")
    export.add_argument("-k", type=count_arg(10_000), default=10, help="neighbours per item (default 10)")
    export.add_argument("--csv", required=True, help="CSV file to write ('-' for stdout)")
    _add_filters(export)


def _open(args, create: bool = False):
    from corpus_index.corpus import Corpus

    return Corpus.open(args.root, create=create)


def _print_frame(frame, columns) -> None:
    shown = [c for c in columns if c in frame.columns]
    print(frame[shown].to_string(index=False) if len(frame) else "(no results)")


def cmd_demo(args) -> int:
    from corpus_index.demo import build_demo

    def show(key, outcome) -> None:
        if isinstance(outcome, BaseException):  # e.g. missing bigram weights: the other models are built
            print(f"error: {key}: {outcome}".splitlines()[0], file=sys.stderr)
        else:
            print(outcome.summary())

    result = build_demo(args.root, books=args.books, seed=args.seed, models=args.models or DEMO_MODEL_KEYS,
                        progress=ProgressPrinter(), batch_size=args.batch_size, tolerate=user_errors(),
                        on_ingest=lambda report: print(report.summary()), on_build=show)
    return 1 if result.failed else 0


def cmd_ingest(args) -> int:
    if args.update and (not args.csv or args.iiif):
        raise UsageError("--update needs --csv FILE (the metadata to apply) and works with scans, not --iiif")
    if args.update and not args.folder:  # only update: the corpus must exist, nothing is added
        print(_open(args).update_metadata(args.csv, args.editor).summary())
        return 0
    if bool(args.folder) == bool(args.iiif):
        raise UsageError("ingest needs a FOLDER or --iiif MANIFEST (not both)")
    if args.folder:  # a bad folder or metadata CSV is refused before a store is created for it
        from corpus_index.ingest.folder import check_folder_source

        check_folder_source(args.folder, args.csv)
    created = not Layout(Path(args.root).expanduser()).db.exists()
    corpus = _open(args, create=True)
    try:
        report = _ingest(corpus, args)
    except BaseException:
        if created:
            _discard_new_store(corpus)
        raise
    print(report.summary())
    if args.update:  # after the ingest: its new items got the CSV's metadata already, the others get it now
        print(corpus.update_metadata(args.csv, args.editor).summary())
    if created and not report.added:  # e.g. a manifest that could not be read: no empty corpus is left behind
        _discard_new_store(corpus)
        reason = report.skipped[0][1] if report.skipped else "no scans found"
        print(f"error: nothing was ingested, so no corpus was created at {corpus.root}: {reason}".splitlines()[0],
              file=sys.stderr)
        return 1
    return 0


def _discard_new_store(corpus) -> None:
    """Remove the store this command created for an ingest that failed, if it is still empty (never a store
    that existed before the command)."""
    try:
        if corpus.count():
            return
    except Exception:  # noqa: BLE001 - the ingest's own error is the one to report
        return
    corpus.close()
    for path in corpus.layout.db_files():
        path.unlink(missing_ok=True)


def _ingest(corpus, args):
    progress = ProgressPrinter()
    if args.iiif:
        report = corpus.ingest_iiif(args.iiif, max_size=args.max_size, progress=progress,
                                    allow_private=args.allow_private, fetch_timeout=args.fetch_timeout,
                                    max_image_bytes=int(args.max_image_mb * 1024 * 1024))
    else:
        report = corpus.ingest_folder(args.folder, args.csv, progress=progress)
    return report


def cmd_build(args) -> int:
    corpus = _open(args)
    if args.factors and args.gamma is not None:  # a gamma the model cannot take fails now, not after the features
        from corpus_index.explanation import resolve_schedule
        from corpus_index.models import load_model

        for key in args.models:
            resolve_schedule(load_model(key), args.gamma)
    for key in args.models:
        report = corpus.build(key, batch_size=args.batch_size, progress=ProgressPrinter(), engine=args.engine,
                              address=args.address, index=args.index_kind, factors=args.factors,
                              gamma=args.gamma, pool=args.pool, concurrency=args.concurrency)
        print(report.summary())
    return 0


def cmd_query(args) -> int:
    from corpus_index.filters import split_values
    from corpus_index.score_context import untrained_note, with_untrained_mark

    check_destination(args.csv, "--csv", "neighbours.csv")
    corpus = _open(args)
    if args.image and not Path(args.image).is_file():
        raise FileNotFoundError(f"query image {args.image} not found")
    frame = corpus.search(args.model, item_id=args.item, image=args.image, k=args.k,
                          exclude_same_book=args.exclude_same_book, index=args.index, **split_values(_filters(args)))
    _print_frame(frame, ["rank", "id", "score", "kind", "book", "year", "place", "printer", "page", "title"])
    if untrained_note(args.model):  # on stderr like the note below (stdout stays the table); the CSV carries it too
        print(f"warning: {untrained_note(args.model)}", file=sys.stderr)
    frame = with_untrained_mark(frame, args.model)
    if not frame.attrs.get("exact", True):
        print("note: approximate index; neighbours may be missed", file=sys.stderr)
    if args.csv:
        _write_csv(frame, args.csv)
    return 0


def cmd_explain(args) -> int:
    check_destination(args.out, "--out", "pair.png")
    check_destination(args.csv, "--csv", "pairs.csv")
    corpus = _open(args)
    from corpus_index.build import default_pool

    pool = default_pool(args.model) if args.pool == "auto" else args.pool
    explanation = corpus.explain(args.model, args.id1, args.id2, gamma=args.gamma, pool=pool)
    title = (f"{explanation.model_key}: items {args.id1} and {args.id2}, y = {explanation.score:.4g}, "
             f"sum of explanation = {explanation.total:.4g}")
    from bilrp_core.render import PairStyle
    from corpus_index.figure import mark_table, stamp_untrained
    from corpus_index.models import UNTRAINED_MARK, is_untrained

    untrained = is_untrained(explanation.model_key)  # random weights: every output says so
    picture = explanation.draw(top=args.pairs, style=PairStyle(height=max(256, explanation.image1.height)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    (stamp_untrained(picture) if untrained else picture).save(args.out, format="PNG")
    print(title + (f" [{UNTRAINED_MARK}]" if untrained else ""))
    print(f"wrote {args.out}")
    if args.csv:  # boxes on the model input and on the scans (a region item's on its page), as the explorer's
        from corpus_index.export import explanation_evidence

        table = explanation_evidence(corpus.store, explanation.table(n=args.pairs), args.id1, args.id2,
                                     explanation.model_key, explanation.gamma, pool, explanation.score)
        _write_csv(mark_table(table, untrained), args.csv)
    return 0


def cmd_export(args) -> int:
    from corpus_index.filters import split_values
    from corpus_index.score_context import untrained_note, with_untrained_mark

    check_destination(args.csv, "--csv", "neighbours.csv")
    corpus = _open(args)
    table = corpus.export(args.model, item_ids=args.items, k=args.k, exclude_same_book=args.exclude_same_book,
                          index=args.index, progress=ProgressPrinter(), **split_values(_filters(args)))
    if untrained_note(args.model):  # on stderr: with --csv - the CSV is the whole of stdout
        print(f"warning: {untrained_note(args.model)}", file=sys.stderr)
    _write_csv(with_untrained_mark(table, args.model), args.csv)
    return 0


def _write_csv(table, destination) -> None:
    """Write a table as spreadsheet-safe CSV (:mod:`corpus_index.csv_export`) to a file or to stdout for "-"."""
    from corpus_index.csv_export import write_csv

    write_csv(table, destination)
    if destination != "-":  # on stdout the CSV is the whole output
        print(f"wrote {len(table)} rows to {destination}")


def cmd_info(args) -> int:
    corpus = _open(args)
    print(f"root: {corpus.root}")
    print(f"items: {corpus.count()}  books: {len(corpus.store.books())}")
    for key in corpus.models():
        # Reading the feature batches too: a damaged one is reported here, not at the next query.
        print(f"model {key}: {corpus.indexed_count(key)} items indexed, {len(corpus.features(key).ids())} with "
              "features")
    return 0


class UsageError(Exception):
    """Bad combination of arguments (exit status 2)."""


COMMANDS = {"demo": cmd_demo, "ingest": cmd_ingest, "build": cmd_build, "query": cmd_query,
            "explain": cmd_explain, "export": cmd_export, "info": cmd_info, **cli_editions.COMMANDS,
            **cli_verdicts.COMMANDS}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # before torch starts its threads (corpus_index/malloc.py)
    try:
        for key in getattr(args, "models", None) or []:
            canonical_key(key)  # every key checked before the first long build starts
        if getattr(args, "model", None):
            canonical_key(args.model)
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. `export --csv - | head`: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished batches are kept, rerun the command to continue", file=sys.stderr)
        return 130
    except user_errors() as error:
        if os.environ.get("CORPUS_INDEX_DEBUG"):
            raise
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"error: {message}".splitlines()[0], file=sys.stderr)
        return 1
    except Exception as error:  # a bug or an unforeseen failure: still one line, the traceback on request
        if os.environ.get("CORPUS_INDEX_DEBUG"):
            raise
        print(f"error: unexpected {type(error).__name__}: {error}".splitlines()[0]
              + " (set CORPUS_INDEX_DEBUG=1 to see where)", file=sys.stderr)
        return 1
