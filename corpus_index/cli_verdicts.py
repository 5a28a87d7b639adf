"""Command line of verdicts and model validation: ``verdict``, ``verdicts`` and ``validate``.

Registered in :mod:`corpus_index.cli` (``add_parsers`` in ``build_parser``, :data:`COMMANDS` in its command table).
Output files are checked before anything is read or written; CSVs go through :mod:`corpus_index.csv_export`.

``verdict ID1 ID2 --label L`` records a verdict (:mod:`corpus_index.verdicts`); with ``--model`` the score the
model gives the pair is recorded too when both items have features. ``verdicts`` lists the current verdicts and
writes them as CSV (both items' metadata and the parameters), as W3C Web Annotations (JSON-LD,
:mod:`corpus_index.annotations`) and the groups of copies as CSV. ``validate`` compares models against the
verdicts (:mod:`corpus_index.validation`).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from corpus_index.cli_args import check_destination, count_arg, gamma_arg, item_id_arg
from corpus_index.verdicts import LABELS


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (a container without passwd entry)
        return "anonymous"


def add_parsers(sub) -> None:
    """Add the ``verdict``, ``verdicts`` and ``validate`` sub-commands to the parser of ``python -m corpus_index``."""
    verdict = sub.add_parser("verdict", help="record a verdict on a pair of items (same/partial/related/different)")
    verdict.add_argument("id1", type=item_id_arg)
    verdict.add_argument("id2", type=item_id_arg)
    verdict.add_argument("--label", required=True, choices=LABELS,
                         help="same (another printing), partial (shares a part), related (same subject), different")
    verdict.add_argument("--wrong-reason", action="store_true",
                         help="the model's similarity rests on something other than the content (a Clever Hans)")
    verdict.add_argument("--regions", type=count_arg(10_000), nargs="+", metavar="RANK",
                         help="ranks of the explanation's region pairs the wrong reason lies in")
    verdict.add_argument("--reviewer", default=_default_reviewer(), help="your name (default: the login name)")
    verdict.add_argument("--note", default="", help="a free note")
    verdict.add_argument("--model", metavar="KEY", help="the model whose explanation was judged")
    verdict.add_argument("--gamma", type=gamma_arg, help="the γ of that explanation: a number or JSON {layer: γ}")
    verdict.add_argument("--pool", type=count_arg(1024), help="the patch size of that explanation")

    listing = sub.add_parser("verdicts", help="list verdicts; export them as CSV, Web Annotations, groups of copies")
    listing.add_argument("--csv", help="write the verdicts with both items' metadata and the parameters as CSV")
    listing.add_argument("--annotations", help="write the verdicts as W3C Web Annotations (JSON-LD)")
    listing.add_argument("--groups", help="write the groups of copies (connected `same` verdicts) as CSV")
    listing.add_argument("--history", action="store_true", help="include superseded verdicts")
    listing.add_argument("--base-uri", help="base of stable item URIs in annotations (default: $SPHAERA_BASE_URI "
                                            "or urn:sphaera:corpus)")

    validate = sub.add_parser("validate", help="recall@k, false friends and Clever-Hans rate of models vs verdicts")
    validate.add_argument("--model", action="append", dest="models", required=True, metavar="KEY",
                          help="model key (repeatable: models side by side)")
    validate.add_argument("-k", type=count_arg(10_000), default=10, help="neighbourhood size (default 10)")
    validate.add_argument("--csv", help="also write the table as CSV")


def _open(args):
    from corpus_index.corpus import Corpus

    return Corpus.open(args.root)


def _pair_score(corpus, model_key: str, id1: int, id2: int) -> float | None:
    """⟨φ(x), φ(x')⟩ from stored features when both items have them (None otherwise, or for rotation-max keys,
    whose score is a max over flips that stored vectors alone do not give)."""
    from corpus_index.models import key_transform_count

    if key_transform_count(model_key) != 1:
        return None
    try:
        first, second = (corpus.query_vector(model_key, item_id=i) for i in (id1, id2))
    except KeyError:  # no stored features: the verdict is recorded without a score
        return None
    return float(first.astype("float64") @ second.astype("float64"))


def cmd_verdict(args) -> int:
    from corpus_index import verdicts

    corpus = _open(args)
    for item in (args.id1, args.id2):
        corpus.item(item)  # an unknown id: "no item with id …"
    score = _pair_score(corpus, args.model, args.id1, args.id2) if args.model else None
    verdict = verdicts.record(corpus.store, args.id1, args.id2, args.label, args.reviewer,
                              wrong_reason=args.wrong_reason, regions=args.regions or (), note=args.note,
                              model_key=args.model, gamma=args.gamma, pool=args.pool, score=score)
    shown = "" if score is None else f", score {score:.5g}"
    print(f"verdict {verdict}: items {min(args.id1, args.id2)} and {max(args.id1, args.id2)} are {args.label} "
          f"({args.reviewer}{', wrong reason' if args.wrong_reason else ''}{shown})")
    return 0


def cmd_verdicts(args) -> int:
    from corpus_index import verdicts
    from corpus_index.annotations import verdict_annotations
    from corpus_index.item_refs import base_uri

    for option, path, example in (("--csv", args.csv, "verdicts.csv"), ("--groups", args.groups, "groups.csv"),
                                  ("--annotations", args.annotations, "verdicts.jsonld")):
        check_destination(path, option, example)
    base = base_uri(args.base_uri)  # a bad base is refused before anything is written
    corpus = _open(args)
    table = verdicts.export_table(corpus.store, include_history=args.history)
    shown = [c for c in ("id", "item1", "item2", "label", "wrong_reason", "reviewer", "model_key", "created_at",
                         "superseded_by") if c in table.columns]
    if "-" not in (args.csv, args.groups, args.annotations):  # on stdout the export is the whole output
        print(table[shown].to_string(index=False) if len(table) else "(no verdicts)")
    if args.csv:
        _write(table, args.csv)
    if args.groups:
        _write(verdicts.groups(corpus.store), args.groups)
    if args.annotations:
        document = verdict_annotations(corpus.store, base=base, include_history=args.history)
        text = json.dumps(document, indent=1, ensure_ascii=False)
        if args.annotations == "-":
            print(text)
        else:
            Path(args.annotations).parent.mkdir(parents=True, exist_ok=True)
            Path(args.annotations).write_text(text + "\n", encoding="utf-8")
            print(f"wrote {document['total']} annotations to {args.annotations}")
    return 0


def cmd_validate(args) -> int:
    from corpus_index.progress import ProgressPrinter
    from corpus_index.validation import clever_hans, validate

    check_destination(args.csv, "--csv", "validation.csv")
    corpus = _open(args)
    table = validate(corpus, args.models, k=args.k, progress=ProgressPrinter())
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    per_gamma = clever_hans(corpus.store)
    if len(per_gamma):
        print("\nClever-Hans rate per model and γ:")
        print(per_gamma.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        _write(table, args.csv)
    return 0


def _write(table, destination: str) -> None:
    from corpus_index.csv_export import write_csv

    write_csv(table, destination)
    if destination != "-":
        print(f"wrote {len(table)} rows to {destination}")


COMMANDS = {"verdict": cmd_verdict, "verdicts": cmd_verdicts, "validate": cmd_validate}
