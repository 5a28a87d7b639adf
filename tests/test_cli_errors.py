"""User errors on the real command line (``python -m corpus_index`` in a subprocess): one ``error:`` line,
exit status 1 (2 for bad usage), never a traceback, and nothing computed or left behind before the refusal."""

import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tiny_corpus import SMALL_VGG_KEY, write_source

from corpus_index.cli import main
from corpus_index.models import load_model

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses

REPO = Path(__file__).resolve().parent.parent
HUGE = "99999999999999999999999"


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    """A tiny corpus with the smallest VGG model built (in-process: the subprocesses only read it)."""
    base = tmp_path_factory.mktemp("cli_errors")
    source = write_source(base / "source", per_book=1)
    root = base / "root"
    assert main(["--root", str(root), "ingest", str(source)]) == 0
    assert main(["--root", str(root), "build", "--model", SMALL_VGG_KEY, "--batch-size", "4"]) == 0
    return root


def _bad_csvs(base: Path) -> dict[str, Path]:
    """Folders whose metadata CSV has a year of 10^23, or ';' or tab separators."""
    folders = {}
    for name, text in [("overflow", f"path,year\nimages/b0_p0.png,1{'0' * 23}\n"),
                       ("semicolon", "path;year\nimages/b0_p0.png;1540\n"),
                       ("tab", "path\tyear\nimages/b0_p0.png\t1540\n")]:
        folder = write_source(base / name, per_book=1)
        (folder / "metadata.csv").write_text(text)
        folders[name] = folder
    return folders


# (name, arguments, exit status, text in the error line); {dir}, {new} and {csv:NAME} are filled in. The first
# ones run as subprocesses (the real command line); IN_PROCESS ones through main() (the same code, faster).
SUBPROCESS_CASES = [
    ("gamma nan", ["explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", "{dir}/p.png", "--gamma", "nan"], 2,
     "gamma must be a finite number >= 0"),
    ("gamma bad key", ["explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", "{dir}/p.png", "--gamma",
                       '{"x": 1}'], 2, "layer index 'x' is not a whole number"),
    ("gamma unknown layer", ["explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", "{dir}/p.png", "--gamma",
                             '{"99": 0.5}'], 1, "valid layer indices: ["),
    ("explain --out folder", ["explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", "{dir}"], 1, "is a folder"),
    ("px2048 key", ["query", "--model", "vgg16-L5-h8-seed0-px2048", "--item", "1"], 1,
     "px must be from 32 to 1024"),
    ("item -1", ["query", "--model", SMALL_VGG_KEY, "--item", "-1"], 2, "'-1' is not an item id"),
    ("item huge", ["query", "--model", SMALL_VGG_KEY, "--item", HUGE], 2, "is not an item id"),
    ("semicolon CSV", ["--root", "{new}", "ingest", "{csv:semicolon}"], 1,
     "this looks like a ';'-separated file"),
]
IN_PROCESS_CASES = [
    ("gamma inf", ["explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", "{dir}/p.png", "--gamma", "inf"], 2,
     "gamma must be a finite number"),
    ("gamma negative", ["build", "--model", SMALL_VGG_KEY, "--factors", "--gamma=-0.5"], 2, "gamma must be"),
    ("gamma JSON NaN", ["explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", "{dir}/p.png", "--gamma",
                        '{"2": NaN}'], 2, "gamma of layer 2 must be a finite number"),
    ("build gamma unknown layer", ["build", "--model", SMALL_VGG_KEY, "--factors", "--gamma", '{"99": 0.5}'], 1,
     "valid layer indices"),
    ("explain --csv folder", ["explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", "{dir}/p.png", "--csv",
                              "{dir}"], 1, "is a folder"),
    ("query --csv folder", ["query", "--model", SMALL_VGG_KEY, "--item", "1", "--csv", "{dir}"], 1, "is a folder"),
    ("export --csv folder", ["export", "--model", SMALL_VGG_KEY, "--csv", "{dir}"], 1, "is a folder"),
    ("explain item huge", ["explain", "--model", SMALL_VGG_KEY, "1", HUGE, "--out", "{dir}/p.png"], 2,
     "is not an item id"),
    ("export items -1", ["export", "--model", SMALL_VGG_KEY, "--items", "-1", "--csv", "{dir}/e.csv"], 2,
     "is not an item id"),
    ("year-min 1e23", ["query", "--model", SMALL_VGG_KEY, "--item", "1", "--year-min", "1e23"], 2,
     "'1e23' is not a year"),
    ("year-max huge", ["export", "--model", SMALL_VGG_KEY, "--year-max", HUGE, "--csv", "-"], 2, "is not a year"),
    ("k zero", ["query", "--model", SMALL_VGG_KEY, "--item", "1", "-k", "0"], 2, "'0' is not a valid count"),
    ("tab CSV", ["--root", "{new}", "ingest", "{csv:tab}"], 1, "this looks like a tab-separated file"),
]


def _fill(argument: str, values: dict) -> str:
    for name, value in values.items():
        argument = argument.replace("{" + name + "}", str(value))
    return argument


@pytest.fixture(scope="module")
def outcomes(corpus_root, tmp_path_factory):
    """Every case of :data:`SUBPROCESS_CASES` (and the year-overflow ingest) run as a subprocess, a few at a
    time."""
    base = tmp_path_factory.mktemp("cli_error_runs")
    values = {"dir": base} | {f"csv:{k}": v for k, v in _bad_csvs(base).items()}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CORPUS_INDEX_DEBUG", None)

    def run(case):
        name, arguments = case[0], case[1]
        new = base / ("new-" + name.replace(" ", "-"))
        filled = [_fill(a, values | {"new": new}) for a in arguments]
        if "--root" not in filled:
            filled = ["--root", str(corpus_root), *filled]
        result = subprocess.run([sys.executable, "-m", "corpus_index", *filled], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
        return name, (result, new)

    cases = [*SUBPROCESS_CASES, ("year overflow CSV", ["--root", "{new}", "ingest", "{csv:overflow}"], 0, "")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(run, cases))


def _check(stderr: str, returncode: int, status: int, message: str) -> None:
    assert "Traceback" not in stderr, stderr
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, stderr
    assert message in error_lines[0], stderr
    assert returncode == status, stderr
    if status == 1:
        assert error_lines[0].startswith("error: ") and stderr.strip() == error_lines[0]


@pytest.mark.parametrize(("name", "arguments", "status", "message"), SUBPROCESS_CASES,
                         ids=[c[0] for c in SUBPROCESS_CASES])
def test_user_error_is_one_line_without_traceback(outcomes, corpus_root, name, arguments, status, message):
    result, new_root = outcomes[name]
    _check(result.stderr, result.returncode, status, message)
    assert not (new_root / "corpus.sqlite").exists()  # a refused ingest leaves no empty store behind
    assert not list((corpus_root / "factors").glob("**/*.npy"))  # refused before any factor was computed


@pytest.mark.parametrize(("name", "arguments", "status", "message"), IN_PROCESS_CASES,
                         ids=[c[0] for c in IN_PROCESS_CASES])
def test_user_error_in_process(corpus_root, tmp_path, capsys, name, arguments, status, message):
    values = {"dir": tmp_path, "new": tmp_path / "new"} | {f"csv:{k}": v for k, v in _bad_csvs(tmp_path).items()}
    filled = [_fill(a, values) for a in arguments]
    if "--root" not in filled:
        filled = ["--root", str(corpus_root), *filled]
    try:
        returncode = main(filled)
    except SystemExit as exit_info:  # argparse's usage errors
        returncode = exit_info.code
    _check(capsys.readouterr().err, returncode, status, message)
    assert not (tmp_path / "new" / "corpus.sqlite").exists()
    assert not list((corpus_root / "factors").glob("**/*.npy"))


def test_year_overflow_in_a_csv_is_a_reported_row(outcomes):
    result, _ = outcomes["year overflow CSV"]
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"metadata.csv line 2: year 1{'0' * 23} is not a year" in result.stdout
    assert "3 added, 0 already present, 1 skipped" in result.stdout and "OverflowError" not in result.stdout


def test_gamma_is_validated_where_it_is_resolved(corpus_root, tmp_path):
    """bilrp_core's γ resolution refuses a bad γ for every caller (the app, the library, the CLI) at once."""
    import bilrp_core
    from corpus_index.corpus import Corpus

    model = load_model(SMALL_VGG_KEY)
    layers = bilrp_core.composite.parametric_indices(model)
    for gamma, message in [(math.nan, "finite number ≥ 0"), (math.inf, "finite number ≥ 0"),
                           (-1.0, "finite number ≥ 0"), ({str(layers[0]): math.nan}, f"of layer {layers[0]}"),
                           ({"x": 0.5}, "not a whole number"), ({99: 0.5}, f"valid layer indices: {layers}"),
                           ({1.5: 0.5}, "not a whole number")]:
        with pytest.raises(ValueError, match="gamma") as raised:
            bilrp_core.resolve_gamma(model, gamma)
        assert message in str(raised.value), (gamma, str(raised.value))
    assert bilrp_core.resolve_gamma(model, {str(layers[0]): 0.5})[layers[0]] == 0.5
    corpus = Corpus.open(corpus_root)
    try:
        with pytest.raises(ValueError, match="gamma"):
            corpus.explain(SMALL_VGG_KEY, 1, 2, gamma=math.nan, pool=16)
    finally:
        corpus.close()
    assert not list((corpus_root / "factors").glob("**/*.npy"))  # no NaN factors cached


def test_failed_ingest_keeps_an_existing_store(corpus_root, tmp_path, capsys):
    source = write_source(tmp_path / "source", per_book=1)
    (source / "metadata.csv").write_text("path;year\nimages/b0_p0.png;1540\n")
    assert main(["--root", str(corpus_root), "ingest", str(source)]) == 1
    assert "';'-separated" in capsys.readouterr().err
    assert (corpus_root / "corpus.sqlite").is_file()
    assert main(["--root", str(corpus_root), "info"]) == 0
    assert "items: 4" in capsys.readouterr().out


def test_ingest_that_fails_removes_the_store_it_created(tmp_path, monkeypatch, capsys):
    from corpus_index.corpus import Corpus

    def fail(self, *args, **kwargs):
        raise ValueError("the source vanished")

    monkeypatch.setattr(Corpus, "ingest_folder", fail)
    source = write_source(tmp_path / "source", per_book=1)
    assert main(["--root", str(tmp_path / "fresh"), "ingest", str(source)]) == 1
    assert "the source vanished" in capsys.readouterr().err
    assert not list((tmp_path / "fresh").glob("corpus.sqlite*"))


def test_ingest_of_an_unreadable_manifest_leaves_no_empty_store(tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{ not json")
    assert main(["--root", str(tmp_path / "fresh"), "ingest", "--iiif", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "nothing was ingested" in err and "Traceback" not in err
    assert not list((tmp_path / "fresh").glob("corpus.sqlite*"))


def test_one_list_of_user_errors_for_cli_and_explorer():
    """corpus_index.errors lists the errors a user can fix once; the facade's errors live there too."""
    import bilrp_core
    from corpus_index import errors
    from corpus_index.corpus import CorpusNotFoundError, ItemNotFoundError, StaleModelDataError
    from corpus_index.models import UnknownModelKeyError
    from corpus_index.storage.faiss_index import IndexMissingError
    from corpus_index.storage.integrity import DamagedFileError, StaleContentError

    assert errors.USER_ERRORS is errors.user_errors()
    assert {CorpusNotFoundError, ItemNotFoundError, StaleModelDataError, IndexMissingError, DamagedFileError,
            StaleContentError, UnknownModelKeyError, bilrp_core.WeightsUnavailableError} <= set(errors.USER_ERRORS)
    assert ItemNotFoundError is errors.ItemNotFoundError and str(ItemNotFoundError("no item 3")) == "no item 3"
