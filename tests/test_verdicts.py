"""Verdicts: recorded in the store with history, superseded per reviewer, stale after a content change, grouped."""

import json

import pytest
from tiny_corpus import make_corpus

from corpus_index import verdicts
from corpus_index.errors import ItemNotFoundError


@pytest.fixture
def corpus(tmp_path):
    corpus = make_corpus(tmp_path)
    yield corpus
    corpus.close()


def test_record_orders_the_pair_and_keeps_what_was_shown(corpus):
    store = corpus.store
    verdict = verdicts.record(store, 5, 2, "partial", "Ada", wrong_reason=True, regions=[3, 1, 3], note="frame",
                              model_key="tiny-test", gamma={12: 0.5, 2: 0.25}, pool=8, score=0.75)
    row = verdicts.history(store).iloc[0]
    assert int(row["id"]) == verdict and (row["item1"], row["item2"]) == (2, 5)
    tags = store.content_tags([2, 5])
    assert (row["hash1"], row["hash2"]) == (tags[2], tags[5])
    assert row["label"] == "partial" and row["wrong_reason"] and row["regions"] == [1, 3]
    assert row["gamma"] == '{"2":0.25,"12":0.5}' and row["pool"] == 8 and row["score"] == 0.75
    assert row["params_hash"] == verdicts.params_hash("tiny-test", '{"12": 0.5, "2": 0.25}', 8)
    assert row["params_hash"] != verdicts.params_hash("tiny-test", {2: 0.25, 12: 0.5}, 16)
    assert not row["stale"] and row["reviewer"] == "Ada" and row["note"] == "frame"


def test_a_new_verdict_supersedes_the_same_reviewers_only(corpus):
    store = corpus.store
    first = verdicts.record(store, 1, 2, "same", "Ada")
    other = verdicts.record(store, 2, 1, "related", "Bea")
    second = verdicts.record(store, 2, 1, "different", "Ada")
    every = verdicts.history(store, 1, 2)
    assert list(every["id"]) == [first, other, second]
    assert every.set_index("id").loc[first, "superseded_by"] == second
    now = verdicts.current(store)
    assert sorted(zip(now["reviewer"], now["label"], strict=True)) == [("Ada", "different"), ("Bea", "related")]
    assert list(verdicts.current(store, reviewer="Bea")["id"]) == [other]


@pytest.mark.parametrize(("args", "error", "match"), [
    ((1, 999, "same", "Ada"), ItemNotFoundError, "no item with id 999"),
    ((1, 2, "identical", "Ada"), ValueError, "label 'identical' is not one of same, partial"),
    ((1, 2, "same", "  "), ValueError, "reviewer"),
    ((3, 3, "same", "Ada"), ValueError, "two different items"),
])
def test_bad_verdicts_are_refused_with_a_clear_message(corpus, args, error, match):
    with pytest.raises(error, match=match):
        verdicts.record(corpus.store, *args)
    with pytest.raises(ValueError, match="rank"):
        verdicts.record(corpus.store, 1, 2, "same", "Ada", regions=[0])
    assert verdicts.history(corpus.store).empty  # nothing half-written


def test_verdicts_on_replaced_content_are_stale(corpus):
    store = corpus.store
    verdicts.record(store, 1, 2, "same", "Ada")
    with store.transaction() as conn:  # item 2's scan replaced: its content hash changes
        conn.execute("UPDATE items SET hash = 'f' || substr(hash, 2) WHERE id = 2")
    assert verdicts.current(store)["stale"].tolist() == [True]
    assert verdicts.current(store, include_stale=False).empty
    assert verdicts.groups(store).empty


def test_groups_are_connected_components_of_same_verdicts(corpus):
    store = corpus.store
    for a, b in [(1, 2), (2, 3), (5, 6)]:
        verdicts.record(store, a, b, "same", "Ada")
    verdicts.record(store, 7, 8, "same", "Ada")
    verdicts.record(store, 7, 8, "different", "Bea")  # contested: links nothing
    verdicts.record(store, 3, 9, "partial", "Ada")  # only `same` links
    verdicts.record(store, 10, 11, "same", "Ada")
    verdicts.record(store, 10, 11, "related", "Ada")  # changed its mind: no longer linked
    frame = verdicts.groups(store)
    members = {g: sorted(part["id"]) for g, part in frame.groupby("group")}
    assert members == {1: [1, 2, 3], 2: [5, 6]}
    assert frame.loc[frame["group"] == 1, "size"].tolist() == [3, 3, 3]
    assert set(frame.columns) >= {"book", "title", "year", "page", "source", "hash"}


def test_export_table_carries_both_items_metadata_and_parameters(corpus):
    verdicts.record(corpus.store, 1, 4, "same", "Ada", regions=[2], model_key="tiny-test", gamma=0.25, pool=8)
    table = verdicts.export_table(corpus.store)
    row = table.iloc[0]
    one, four = corpus.item(1), corpus.item(4)
    for name in verdicts.ITEM_METADATA:
        assert row[f"{name}1"] == one[name] and row[f"{name}2"] == four[name]
    assert json.loads(row["regions"]) == [2] and row["gamma"] == "0.25" and row["model_key"] == "tiny-test"


def cell(value):
    """A table cell as CSV keeps it: missing and empty text are the same empty cell."""
    import pandas as pd

    if isinstance(value, list):
        return value
    return None if pd.isna(value) or (isinstance(value, str) and not value) else value


def test_cli_round_trip_verdicts_in_csv_and_annotations_out(corpus, tmp_path, capsys):
    import pandas as pd
    from tiny_corpus import TINY_KEY

    from corpus_index.annotations import read_verdict_annotations
    from corpus_index.cli import main

    corpus.build(TINY_KEY, batch_size=6)
    root = str(corpus.root)
    assert main(["--root", root, "verdict", "4", "1", "--label", "same", "--reviewer", "Ada", "--model", TINY_KEY,
                 "--gamma", '{"0": 0.5}', "--pool", "4", "--note", "same table, other fount"]) == 0
    assert "items 1 and 4 are same (Ada, score" in capsys.readouterr().out
    assert main(["--root", root, "verdict", "2", "3", "--label", "different", "--reviewer", "Bea",
                 "--wrong-reason", "--regions", "2", "5"]) == 0
    assert main(["--root", root, "verdict", "5", "6", "--label", "same", "--reviewer", "Bea"]) == 0
    assert main(["--root", root, "verdict", "6", "5", "--label", "partial", "--reviewer", "Bea"]) == 0  # changed
    files = {name: tmp_path / "out" / name for name in ("v.csv", "v.jsonld", "g.csv", "h.csv")}
    assert main(["--root", root, "verdicts", "--csv", str(files["v.csv"]), "--annotations", str(files["v.jsonld"]),
                 "--groups", str(files["g.csv"])]) == 0
    assert main(["--root", root, "verdicts", "--history", "--csv", str(files["h.csv"])]) == 0
    stored = verdicts.export_table(corpus.store)
    assert len(stored) == 3 and len(pd.read_csv(files["h.csv"])) == 4
    from_csv = pd.read_csv(files["v.csv"], keep_default_na=False, na_values=[""])
    assert list(from_csv.columns) == list(stored.columns)
    for name in stored.columns:
        assert [cell(v) for v in from_csv[name]] == [cell(v) for v in stored[name]], name
    assert from_csv.loc[0, "score"] == pytest.approx(float(corpus.query_vector(TINY_KEY, item_id=1)
                                                           @ corpus.query_vector(TINY_KEY, item_id=4)))
    from_annotations = read_verdict_annotations(files["v.jsonld"])
    for name in ("item1", "item2", "hash1", "hash2", "label", "wrong_reason", "note", "reviewer", "created_at",
                 "params_hash", "model_key", "pool"):
        assert [cell(v) for v in from_annotations[name]] == [cell(v) for v in stored[name]], name
    assert from_annotations["regions"].tolist() == [json.loads(t) for t in stored["regions"]]
    assert from_annotations["gamma"].tolist()[0] == {"0": 0.5}
    assert pd.read_csv(files["g.csv"])["id"].tolist() == [1, 4]  # 5-6 is no longer `same`
    capsys.readouterr()
    assert main(["--root", root, "validate", "--model", TINY_KEY, "-k", "2", "--csv", str(tmp_path / "val.csv")]) == 0
    printed = capsys.readouterr().out
    assert "Clever-Hans rate per model and γ:" in printed and '{"0":0.5}' in printed
    validation = pd.read_csv(tmp_path / "val.csv")
    assert validation["model"].tolist() == [TINY_KEY] and validation["same_partial_pairs"].tolist() == [2]


def test_cli_refuses_bad_verdicts_in_one_line(corpus, capsys):
    from corpus_index.cli import main

    root = str(corpus.root)
    assert main(["--root", root, "verdict", "1", "99", "--label", "same"]) == 1
    assert capsys.readouterr().err.strip() == f"error: no item with id 99 in the corpus at {corpus.root}"
    with pytest.raises(SystemExit):
        main(["--root", root, "verdict", "1", "2", "--label", "identical"])
    assert main(["--root", root, "validate", "--model", "vgg16-L10-h8-seed0"]) == 1
    assert "no index for model" in capsys.readouterr().err
    assert verdicts.history(corpus.store).empty
