"""``python -m corpus_index editions``: the files it writes and its one-line errors."""

import networkx as nx
import pandas as pd
import pytest
from tiny_corpus import TINY_KEY, make_corpus

from corpus_index.cli import main
from corpus_index.editions import analyse


@pytest.fixture
def root(tmp_path):
    corpus = make_corpus(tmp_path, per_book=4)
    corpus.build(TINY_KEY)
    corpus.close()
    return tmp_path / "root"


def test_editions_writes_edges_groups_matrix_and_networks(root, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["--root", str(root), "editions", "--model", TINY_KEY, "--kind", "table", "--k", "5",
                   "--threshold=-1e9", "--csv", str(out / "edges.csv"), "--groups", str(out / "groups.csv"),
                   "--matrix", str(out / "matrix.csv"), "--graphml", str(out / "net.graphml"),
                   "--gexf", str(out / "net.gexf")])
    assert status == 0
    printed = capsys.readouterr().out
    assert "set by hand" in printed and f"to {out / 'edges.csv'}" in printed
    from corpus_index.corpus import Corpus

    corpus = Corpus.open(root)
    expected = analyse(corpus, TINY_KEY, kind="table", k=5, threshold=-1e9)
    edges = pd.read_csv(out / "edges.csv")
    assert edges[["item1", "item2"]].to_numpy().tolist() == expected.edges[["item1", "item2"]].to_numpy().tolist()
    assert set(edges["kind1"]) == {"table"}
    groups = pd.read_csv(out / "groups.csv")
    assert groups["id"].tolist() == expected.groups["id"].tolist()
    matrix = pd.read_csv(out / "matrix.csv")
    assert matrix["book"].tolist() == ["b0", "b1", "b2", "b3"]  # the tiny books in year order
    assert (matrix.set_index("book").to_numpy() == expected.matrix.to_numpy()).all()
    network = nx.read_graphml(out / "net.graphml")
    assert sorted(network.nodes) == ["b0", "b1", "b2", "b3"]
    assert network.number_of_edges() == len(expected.book_edges)
    assert nx.read_gexf(out / "net.gexf").number_of_edges() == len(expected.book_edges)
    corpus.close()


def test_editions_default_threshold_says_what_it_means(root, tmp_path, capsys):
    assert main(["--root", str(root), "editions", "--model", TINY_KEY, "--csv", str(tmp_path / "e.csv")]) == 0
    assert "top 0.5%" in capsys.readouterr().out


@pytest.mark.parametrize(("arguments", "message"), [
    (["--kind", "map"], "--kind map: no item of this kind"),
    (["--groups", "-"], "--groups cannot be '-'"),
])
def test_editions_errors_are_one_line(root, tmp_path, capsys, arguments, message):
    status = main(["--root", str(root), "editions", "--model", TINY_KEY, "--csv", str(tmp_path / "e.csv"),
                   *arguments])
    error = capsys.readouterr().err
    assert status == 1 and message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "e.csv").exists()


def test_editions_refuses_a_folder_as_output_before_any_work(root, tmp_path, capsys):
    status = main(["--root", str(root), "editions", "--model", TINY_KEY, "--csv", str(tmp_path)])
    assert status == 1 and "is a folder" in capsys.readouterr().err
    assert not (root / "editions").exists()  # no kNN graph was searched


def test_editions_bad_threshold_is_a_usage_error(root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(root), "editions", "--model", TINY_KEY, "--csv", str(tmp_path / "e.csv"),
              "--threshold", "inf"])
    assert exit_info.value.code == 2 and "not a finite number" in capsys.readouterr().err
