"""Stored data is tied to the content it came from, damaged files are refused and repaired (issue 14, §2-§3)."""

import os
import shutil
import sqlite3
import time

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_corpus import SMALL_VGG_KEY, TINY_KEY, make_corpus, tiny_model, write_source

import bilrp_core
from corpus_index.cli import main
from corpus_index.corpus import Corpus
from corpus_index.explanation import resolve_schedule
from corpus_index.models import load_model
from corpus_index.storage.atomic import STALE_TMP_SECONDS, atomic_write
from corpus_index.storage.features import FeatureStore
from corpus_index.storage.integrity import StaleContentError
from corpus_index.storage.store import CorpusDatabaseError


def phi(image: Image.Image) -> np.ndarray:
    """φ of one image through the tiny model, computed directly."""
    model = tiny_model()
    with torch.no_grad():
        return model(model.preprocess(image))[0].numpy()


def run(root, *args) -> int:
    return main(["--root", str(root), *args])


def drop_database(root) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / f"corpus.sqlite{suffix}").unlink(missing_ok=True)


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def assert_one_line_error(capsys, path, status) -> None:
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("error:") and path.name in err and "build --model" in err, err


# -- (a) ids reused after the database was lost -------------------------------------------------------------------
def test_lost_database_reingested_with_other_scans_is_recomputed(tmp_path):
    corpus = make_corpus(tmp_path)
    corpus.build(TINY_KEY, batch_size=16)
    corpus.close()
    drop_database(corpus.root)
    other = write_source(tmp_path / "other", seed=1)  # the same names and ids, other pictures
    fresh = Corpus.open(corpus.root, create=True)
    fresh.ingest_folder(other, other / "metadata.csv")
    with pytest.raises(StaleContentError, match="build --model tiny-test"):
        fresh.search(TINY_KEY, item_id=1, k=3)  # the old index must not answer for the new items

    report = fresh.build(TINY_KEY, batch_size=16)
    assert (report.features.computed, report.features.reused) == (12, 0)
    vectors = {i: phi(fresh.image(i)) for i in fresh.items()["id"]}
    np.testing.assert_allclose(fresh.query_vector(TINY_KEY, item_id=1), vectors[1], rtol=1e-5, atol=1e-6)
    hits = fresh.search(TINY_KEY, item_id=1, k=11)
    expected = [float(vectors[i] @ vectors[1]) for i in hits["id"]]
    np.testing.assert_allclose(hits["score"], expected, rtol=1e-5)


# -- (b) a scan replaced in place ---------------------------------------------------------------------------------
def test_stored_vectors_leave_out_features_of_other_content(tmp_path):
    """The corpus map and the explorer's φ lookups read stored_vectors: vectors of other scans never reach them."""
    corpus = make_corpus(tmp_path)
    corpus.build(TINY_KEY, batch_size=16)
    ids, _ = corpus.stored_vectors(TINY_KEY)
    assert len(ids) == 12
    corpus.close()
    drop_database(corpus.root)
    other = write_source(tmp_path / "other", seed=1)
    fresh = Corpus.open(corpus.root, create=True)
    fresh.ingest_folder(other)
    assert len(fresh.stored_vectors(TINY_KEY)[0]) == 0  # same ids, other pictures: nothing is current
    assert len(fresh.stored_vectors(TINY_KEY, [1, 2])[0]) == 0
    fresh.build(TINY_KEY, batch_size=16)
    ids, vectors = fresh.stored_vectors(TINY_KEY, [2])
    np.testing.assert_allclose(vectors[0], phi(fresh.image(2)), rtol=1e-5, atol=1e-6)


def test_scan_replaced_in_place_is_recomputed(tmp_path):
    corpus = make_corpus(tmp_path)
    corpus.build(TINY_KEY, batch_size=16)
    path = corpus.store.resolve_path(corpus.item(3)["path"])
    noise = (np.random.default_rng(9).random((36, 44, 3)) * 255).astype("uint8")
    Image.fromarray(noise).save(path)
    report = corpus.build(TINY_KEY, batch_size=16)
    assert report.rehashed == [3] and (report.features.computed, report.features.reused) == (1, 11)
    new = phi(Image.open(path))
    np.testing.assert_allclose(corpus.query_vector(TINY_KEY, item_id=3), new, rtol=1e-5, atol=1e-6)
    hits = corpus.search(TINY_KEY, item_id=1, k=11).set_index("id")
    assert hits.loc[3, "score"] == pytest.approx(float(new @ phi(corpus.image(1))), rel=1e-5)
    assert corpus.build(TINY_KEY, batch_size=16).features.computed == 0  # checked once, not every build


# -- (c) an empty or foreign corpus.sqlite ------------------------------------------------------------------------
def test_empty_database_is_an_error_not_a_new_store(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    (root / "corpus.sqlite").write_bytes(b"")
    with pytest.raises(CorpusDatabaseError, match=r"empty \(0 bytes\).*move it away"):
        Corpus.open(root)
    with pytest.raises(CorpusDatabaseError, match="empty"):
        Corpus.open(root, create=True)
    assert run(root, "info") == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "empty (0 bytes)" in err and "Traceback" not in err
    assert (root / "corpus.sqlite").stat().st_size == 0  # untouched
    Corpus.open(tmp_path / "new", create=True).close()  # a root without the file still gets a store
    assert (tmp_path / "new" / "corpus.sqlite").stat().st_size > 0


def test_foreign_database_says_what_to_do(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    conn = sqlite3.connect(root / "corpus.sqlite")
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    assert run(root, "info") == 1
    err = capsys.readouterr().err
    assert "photos" in err and "move it away and re-ingest" in err and "\n" not in err.strip()


# -- (d) a factor file of another item ----------------------------------------------------------------------------
def test_factor_file_of_another_item_is_recomputed(tmp_path):
    corpus = make_corpus(tmp_path, per_book=1)
    corpus.build(SMALL_VGG_KEY, batch_size=4)
    model = load_model(SMALL_VGG_KEY)
    first = corpus.explain(SMALL_VGG_KEY, 1, 2, pool=16)
    cache, schedule = corpus.factor_cache, resolve_schedule(model, None)
    shutil.copy(cache.path(SMALL_VGG_KEY, schedule, 16, 1), cache.path(SMALL_VGG_KEY, schedule, 16, 2))
    again = corpus.explain(SMALL_VGG_KEY, 1, 2, pool=16)
    assert again.cached == (True, False)
    np.testing.assert_array_equal(again.pair, first.pair)
    own = bilrp_core.relevance_factors(model, model.preprocess(corpus.image(2)), pool=16).numpy()
    np.testing.assert_allclose(corpus.factors(SMALL_VGG_KEY, item_id=2, pool=16), own, rtol=1e-4,
                               atol=1e-6 * np.abs(own).max())


# -- (e) damaged files: refused with one line, repaired by build --------------------------------------------------
@pytest.fixture
def built(tmp_path):
    corpus = make_corpus(tmp_path, per_book=1)
    assert run(corpus.root, "build", "--model", SMALL_VGG_KEY) == 0
    corpus.close()
    return corpus.root


def _repaired(root, damaged, capsys) -> None:
    assert run(root, "build", "--model", SMALL_VGG_KEY) == 0
    assert not damaged.exists() or damaged.stat().st_size > 0
    moved = [p.name for p in (root / "replaced").rglob("*") if p.is_file()]
    assert any(name.endswith(damaged.name) for name in moved), moved
    capsys.readouterr()


def test_truncated_feature_batch(built, tmp_path, capsys):
    batch = FeatureStore(built, SMALL_VGG_KEY).batch_files()[0]
    truncate(batch)
    capsys.readouterr()
    assert_one_line_error(capsys, batch, run(built, "info"))
    assert_one_line_error(capsys, batch, run(built, "query", "--model", SMALL_VGG_KEY, "--item", "1"))
    out = str(tmp_path / "pair.png")
    assert_one_line_error(capsys, batch, run(built, "explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", out))
    _repaired(built, batch, capsys)
    assert run(built, "query", "--model", SMALL_VGG_KEY, "--item", "1") == 0
    assert len(FeatureStore(built, SMALL_VGG_KEY).ids()) == 4


def test_truncated_index(built, capsys):
    index = built / "indexes" / f"{SMALL_VGG_KEY}.faiss"
    truncate(index)
    capsys.readouterr()
    assert_one_line_error(capsys, index, run(built, "info"))
    assert_one_line_error(capsys, index, run(built, "query", "--model", SMALL_VGG_KEY, "--item", "1"))
    _repaired(built, index, capsys)
    assert run(built, "query", "--model", SMALL_VGG_KEY, "--item", "1") == 0
    capsys.readouterr()
    assert run(built, "info") == 0 and "4 items indexed" in capsys.readouterr().out


def test_truncated_factor_file(built, tmp_path, capsys):
    out = str(tmp_path / "pair.png")
    assert run(built, "explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", out) == 0
    factor = next((built / "factors" / SMALL_VGG_KEY).rglob("2.npy"))
    truncate(factor)
    capsys.readouterr()
    assert_one_line_error(capsys, factor, run(built, "explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", out))
    _repaired(built, factor, capsys)
    assert run(built, "explain", "--model", SMALL_VGG_KEY, "1", "2", "--out", out) == 0


# -- data written before content tags -----------------------------------------------------------------------------
def test_untagged_batches_and_index_require_a_rebuild(tmp_path):
    corpus = make_corpus(tmp_path)
    corpus.build(TINY_KEY, batch_size=16)
    features = corpus.features(TINY_KEY)
    batch = features.batch_files()[0]
    with np.load(batch) as old:
        ids, vectors = old["ids"], old["vectors"]
    np.savez(batch, ids=ids, vectors=vectors)  # as written before batches carried hashes
    index = corpus.index(TINY_KEY)
    index.tags_path.unlink()  # as written before index sidecars
    reopened = Corpus.open(corpus.root)
    with pytest.raises(StaleContentError, match="does not record"):
        reopened.search(TINY_KEY, item_id=1)
    with pytest.raises(StaleContentError, match="build --model"):
        reopened.query_vector(TINY_KEY, item_id=1)
    report = reopened.build(TINY_KEY, batch_size=16)
    assert (report.features.computed, report.features.reused, len(report.set_aside)) == (12, 0, 1)
    assert len(reopened.search(TINY_KEY, item_id=1, k=3)) == 3


# -- (f) leftovers of killed writes -------------------------------------------------------------------------------
def test_stale_tmp_files_are_swept_by_the_next_write(tmp_path):
    stale, fresh = tmp_path / ".batch_000001.npz.abcd.tmp", tmp_path / ".batch_000002.npz.efgh.tmp"
    stale.write_bytes(b"half a batch")
    fresh.write_bytes(b"being written right now")
    old = time.time() - STALE_TMP_SECONDS - 60
    os.utime(stale, (old, old))
    atomic_write(tmp_path / "note.txt", lambda tmp: open(tmp, "w").write("x"))
    assert not stale.exists() and fresh.exists() and (tmp_path / "note.txt").read_text() == "x"
