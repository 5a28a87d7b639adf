"""The README's promises: its results table is the one the benchmark results generate, and it stays short."""

import importlib.util

from tests.browser_helpers import REPO


def _results_table():
    spec = importlib.util.spec_from_file_location("results_table", REPO / "scripts" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_results_table_is_generated_from_the_result_files():
    readme = (REPO / "README.md").read_text()
    assert _results_table().render(readme) == readme, "run: python scripts/results_table.py"


def test_results_table_reads_the_numbers_from_the_files():
    module = _results_table()
    table = module.table()
    tables = module._json("tables.json")
    assert f"{tables['table_retrieval']['bigram']['map@10']:.3f}" in table
    assert f"{module._json('index.json')['explain']['cached_ms_per_pair_median']:.2f} ms" in table


def test_readme_gives_two_commands_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text()
    assert "`./scripts/run.sh`" in readme and "`./scripts/test.sh`" in readme
    assert "./scripts/test.sh" in (REPO / ".ci" / "run").read_text()
    assert len(readme.splitlines()) <= 150
