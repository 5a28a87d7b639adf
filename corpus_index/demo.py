"""The demo corpus, made ready in one call: generated, ingested and indexed.

``python -m corpus_index demo`` and the explorer's first start both use :func:`build_demo`: the generated pages
go to ``ROOT/demo-source/`` (:mod:`corpus_index.synthetic`; kept, so a rerun reuses them), are ingested into
ROOT, and each demo model is built. A model that cannot be built (e.g. its weights are missing) is reported and
the others are built anyway, so the corpus opens with what could be made.

Then the BiLRP factors of the table pages are precomputed for the table models (the bigram network), for the
default γ and the model's default patch size (:func:`corpus_index.build.default_pool`, where the explorer's
Explain page starts), so every demo table pair explains from the cache at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from corpus_index.build import BuildReport
from corpus_index.corpus import Corpus
from corpus_index.models import DEMO_MODEL_KEYS, canonical_key, parse_model_key
from corpus_index.progress import Progress
from corpus_index.storage.layout import Layout

#: Model families whose factors of the demo's table pages are precomputed (tables are what they are made for).
TABLE_MODEL_FAMILIES = ("bigram",)
TABLE_KIND = "table"


@dataclass
class DemoResult:
    """What :func:`build_demo` did.

    Attributes
    ----------
    corpus : Corpus
        The open corpus of the root.
    ingest : IngestReport or None
        The ingest of the generated pages (None when an open corpus was given: it holds them already).
    built : list of BuildReport
    failed : dict
        Canonical model key -> the error that kept it from being built.
    factor_errors : dict
        Canonical model key -> the error that stopped the precomputation of its table factors (the model itself
        was built and can be used; explanations then compute the factors on first use).
    """

    corpus: Corpus
    ingest: object | None = None
    built: list[BuildReport] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)
    factor_errors: dict[str, BaseException] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """One line per step, for the user."""
        lines = [] if self.ingest is None else [self.ingest.summary().splitlines()[0]]
        lines += [report.summary().splitlines()[0] for report in self.built]
        lines += [f"{report.model_key}: BiLRP factors of the table pages: {report.factors.computed} computed, "
                  f"{report.factors.cached} already cached, {len(report.factors.skipped)} skipped"
                  for report in self.built if report.factors is not None]
        lines += [f"model {key} could not be built: {error}" for key, error in self.failed.items()]
        lines += [f"{key}: the table pages' BiLRP factors could not be precomputed: {error}"
                  for key, error in self.factor_errors.items()]
        return lines


def build_demo(root: str | Path, books: int = 24, seed: int = 0,
               models: Sequence[str] | Callable[[Corpus], Sequence[str]] = DEMO_MODEL_KEYS,
               progress: Progress | None = None, corpus: Corpus | None = None, batch_size: int = 16,
               tolerate: tuple[type[BaseException], ...] = (Exception,),
               on_ingest: Callable[[object], None] | None = None,
               on_build: Callable[[str, BuildReport | BaseException], None] | None = None,
               table_factors: bool = True) -> DemoResult:
    """Generate the demo pages (unless already there), ingest them, build the demo models and precompute the
    table models' factors of the table pages.

    Parameters
    ----------
    root : path-like
        The corpus root; the pages go to ``ROOT/demo-source/``.
    books, seed : int
        Size and random seed of the generated corpus.
    models : sequence of str, or callable
        The model keys to build, or a function of the open corpus giving them (e.g. only those a resumed root
        still lacks).
    progress : callable, optional
        ``progress(done, total, message)`` of every step.
    corpus : Corpus, optional
        The open corpus of ``root`` when it already holds the demo pages: nothing is generated or ingested.
    batch_size : int
        Images per forward pass of the builds.
    tolerate : tuple of exception types
        Errors of one model's build that are recorded (and the next model built) rather than raised.
    on_ingest, on_build : callable, optional
        Told of the ingest report and of each model's report (or error) as soon as it is there (a table model's
        report after its factors, in ``report.factors``).
    table_factors : bool
        Precompute the factors of the table pages for the models of :data:`TABLE_MODEL_FAMILIES` built here.
    """
    ingest = None
    if corpus is None:
        from corpus_index.synthetic import generate_corpus

        source = Layout(Path(root).expanduser()).demo_source
        if not (source / "metadata.csv").is_file():
            generate_corpus(source, books=books, seed=seed, progress=progress)
        corpus = Corpus.open(root, create=True)
        ingest = corpus.ingest_folder(source, source / "metadata.csv", progress=progress)
        if on_ingest is not None:
            on_ingest(ingest)
    result = DemoResult(corpus, ingest)
    for key in models(corpus) if callable(models) else models:
        try:
            report = corpus.build(key, batch_size=batch_size, progress=progress)
        except tolerate as error:  # e.g. missing bigram weights: build the other models, then say so
            result.failed[canonical_key(key)] = error
            outcome = error
        else:
            result.built.append(report)
            outcome = report
            if table_factors and is_table_model(key):
                try:
                    report.factors = precompute_tables(corpus, key, progress)
                except tolerate as error:  # the model is built: explanations compute factors on first use
                    result.factor_errors[canonical_key(key)] = error
        if on_build is not None:
            on_build(key, outcome)
    return result


def is_table_model(model_key: str) -> bool:
    """Whether the model is one whose table-page factors the demo precomputes (:data:`TABLE_MODEL_FAMILIES`)."""
    return parse_model_key(canonical_key(model_key)).family in TABLE_MODEL_FAMILIES


def precompute_tables(corpus: Corpus, model_key: str, progress: Progress | None = None):
    """Cache the model's factors of the corpus's table pages for the default γ and the default patch size.

    Returns the :class:`~corpus_index.storage.factor_cache.FactorReport`; already cached factors are kept, so a
    rerun after an interruption continues where it stopped.
    """
    tables = [int(i) for i in corpus.items(kind=TABLE_KIND)["id"]]
    return corpus.precompute_factors(model_key, tables, gamma=None, pool="auto", progress=progress)
