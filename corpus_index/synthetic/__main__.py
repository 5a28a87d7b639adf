"""Command line: ``python -m corpus_index.synthetic --out DIR --books N --seed S``."""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corpus_index.synthetic",
                                     description="Write the early-modern demo corpus (tables and woodcuts).")
    parser.add_argument("--out", required=True, help="output folder (new, empty, or an earlier demo corpus)")
    parser.add_argument("--books", type=int, default=24, help="number of books, about ten pages each")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed writes identical files")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="allow a non-empty folder that is not an earlier demo corpus")
    args = parser.parse_args(argv)
    if args.books < 0:
        parser.error(f"--books must be >= 0, got {args.books}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")

    from .corpus import generate_corpus

    def progress(done, total, message):
        print(f"\r{message}", end="", file=sys.stderr, flush=True)

    start = time.perf_counter()
    try:
        meta = generate_corpus(args.out, books=args.books, seed=args.seed, progress=progress,
                               workers=args.workers, overwrite=args.overwrite)
    except (NotADirectoryError, FileExistsError, ValueError) as err:
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    kinds = meta["kind"].value_counts().to_dict() if len(meta) else {}
    print(f"\nwrote {len(meta)} pages ({kinds}) of {args.books} books to {args.out} in {seconds:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
