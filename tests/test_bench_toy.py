"""Smoke tests of the Sec. 4 toy benchmark: ground truth, ACS, the toy network and a few training steps."""

import csv
import json
import math

import pytest
import torch

import bilrp_core
from benchmarks import bench_toy, toy_model


def test_match_matrix_counts_equal_digits_at_any_position():
    digits = torch.tensor([1, 2, 3, 4, 5, 6])
    digits2 = torch.tensor([6, 6, 0, 0, 0, 1])
    truth = toy_model.match_matrix(digits, digits2)
    expected = torch.zeros(6, 6)
    expected[0, 5] = expected[5, 0] = expected[5, 1] = 1  # 1 ↔ last 1; 6 ↔ both 6s
    torch.testing.assert_close(truth, expected)
    assert float(toy_model.match_count(digits, digits2)) == 3
    batch = toy_model.match_count(torch.stack([digits, digits]), torch.stack([digits2, digits]))
    torch.testing.assert_close(batch, torch.tensor([3.0, 6.0]))


def test_cosine_and_acs_on_hand_made_explanations():
    truth = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert toy_model.cosine(truth, truth) == pytest.approx(1.0)
    assert toy_model.cosine(-2 * truth, truth) == pytest.approx(-1.0)
    assert toy_model.cosine(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), truth) == pytest.approx(0.0)
    assert toy_model.cosine(torch.ones(2, 2), truth) == pytest.approx(2 / (2 * 2 ** 0.5))
    assert toy_model.cosine(torch.zeros(2, 2), truth) == 0.0
    acs = toy_model.average_cosine_similarity([truth, -truth, torch.ones(2, 2)], [truth] * 3)
    assert acs == pytest.approx((1 - 1 + 2 ** -0.5) / 3)
    with pytest.raises(ValueError, match="as many"):
        toy_model.average_cosine_similarity([truth], [truth, truth])


def test_embeddings_are_positive_correlated_and_distinct():
    emb = toy_model.digit_embeddings(seed=0)
    assert emb.shape == (10, 10) and bool((emb >= 0).all())
    assert toy_model.mean_cosine(emb) > 0.5  # correlated, as the paper asks
    assert int(torch.linalg.matrix_rank(emb)) == 10  # yet the digits stay tellable apart
    torch.testing.assert_close(emb, toy_model.digit_embeddings(seed=0))


def test_toy_network_explanations_are_6x6_and_conserve_the_similarity():
    model = toy_model.build_model(seed=0)
    emb = toy_model.digit_embeddings(seed=0)
    digits = torch.tensor([[3, 1, 4, 1, 5, 9]])
    digits2 = torch.tensor([[2, 7, 1, 8, 2, 8]])
    x, x2 = toy_model.encode(digits, emb), toy_model.encode(digits2, emb)
    assert x.shape == (1, 1, 6, 10)
    explanations = bench_toy.explain_pair(model, x, x2, gammas=(0.0, 0.3))
    assert all(matrix.shape == (6, 6) for matrix in explanations.values())
    with torch.no_grad():
        y = float(model.similarity(x, x2))
    # Proposition 1 (bias-free network) and Proposition 2 (γ = 0 is Hessian × Product).
    assert float(explanations[("BiLRP", 0.3)].sum()) == pytest.approx(y, rel=1e-4, abs=1e-5)
    torch.testing.assert_close(explanations[("BiLRP", 0.0)], explanations[("Hessian×Product", None)],
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(explanations[("BiLRP", 0.0)], explanations[("BiLRP", 0.3)])
    # pool=(1, 10) is one value per digit: the same as pooling the full 60×60 Hessian × Product by hand.
    full = bilrp_core.baselines.cross_hessian(model, x, x2) * (x.reshape(-1, 1) * x2.reshape(1, -1))
    pooled_by_hand = full.reshape(6, 10, 6, 10).sum((1, 3))
    torch.testing.assert_close(explanations[("Hessian×Product", None)], pooled_by_hand, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_few_training_steps_reduce_the_error_and_are_deterministic():
    emb = toy_model.digit_embeddings(seed=0)
    generator = torch.Generator().manual_seed(5)
    digits, digits2 = toy_model.sample_digits(500, generator), toy_model.sample_digits(500, generator)
    model = toy_model.build_model(seed=0)
    before = toy_model.pair_mse(model, emb, digits, digits2)
    result = toy_model.train(model, emb, steps=60, batch_size=64, seed=0, every=30)
    after = toy_model.pair_mse(model, emb, digits, digits2)
    assert [step for step, _, _ in result["history"]] == [30, 60]
    assert result["rollbacks"] == [] and result["best_step"] == 60
    assert after < 0.5 * before
    again = toy_model.build_model(seed=0)
    toy_model.train(again, emb, steps=60, batch_size=64, seed=0, every=30)
    torch.testing.assert_close(again.state_dict(), model.state_dict())


@pytest.mark.slow
def test_a_diverging_run_rolls_back_and_returns_its_best_validated_state():
    emb = toy_model.digit_embeddings(seed=0)
    model = toy_model.build_model(seed=0)
    validation = toy_model.validation_set(seed=0)
    start = toy_model.pair_mse(model, emb, *validation)
    # a learning rate far past the stable limit makes the loss explode (or go NaN) between checks
    result = toy_model.train(model, emb, steps=40, batch_size=64, lr=3.0, final_lr=3.0, seed=0, every=10)
    assert result["rollbacks"], result["history"]
    final = toy_model.pair_mse(model, emb, *validation)
    assert math.isfinite(final) and final == result["validation_mse"] <= start
    assert all(not mse < final for _, _, mse in result["history"])  # the best state seen is the one returned
    with pytest.raises(ValueError, match="rollback_factor"):
        toy_model.train(model, emb, steps=1, rollback_factor=1.0)


def test_the_defaults_live_in_train_and_the_flags_read_them():
    defaults = toy_model.training_defaults()
    assert set(defaults) == {"steps", "batch_size", "lr", "final_lr", "seed", "every", "rollback_factor"}
    assert bench_toy.parse_args([]).config == defaults
    assert bench_toy.parse_args(["--lr", "0.01"]).config == {**defaults, "lr": 0.01}


def test_shipped_checkpoint_was_trained_with_the_defaults():
    saved = torch.load(bench_toy.RESULTS / "toy_model.pt", weights_only=True)
    # `python -m benchmarks.bench_toy --retrain` with no other flag reproduces the shipped model
    assert saved["config"] == toy_model.training_defaults()
    assert saved["final_mse"] < bench_toy.MSE_WARN


def test_shipped_results_record_how_they_were_made():
    with open(bench_toy.RESULTS / "toy.json") as handle:
        summary = json.load(handle)
    saved = torch.load(bench_toy.RESULTS / "toy_model.pt", weights_only=True)
    assert summary["command"].startswith("python -m benchmarks.bench_toy")
    assert summary["model"]["config"] == saved["config"]
    assert summary["model"]["held_out_mse"] == pytest.approx(saved["final_mse"])
    with open(bench_toy.RESULTS / "toy_acs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["gamma"], float(r["acs"])) for r in rows] == [
        (r["method"], str(r["gamma"]), r["acs"]) for r in summary["acs"]]


def test_test_pairs_all_have_a_match():
    pairs = bench_toy.test_pairs(20, seed=0)
    assert len(pairs) == 20
    assert all(toy_model.match_count(a, b) >= 1 for a, b in pairs)
    with pytest.raises(ValueError, match="n_pairs"):
        bench_toy.test_pairs(0, seed=0)


@pytest.mark.slow
def test_benchmark_end_to_end_writes_csv_png_and_reuses_the_model(tmp_path):
    args = ["--steps", "20", "--batch-size", "32", "--pairs", "5", "--out", str(tmp_path)]
    rows = bench_toy.main(args)
    methods = {(row["method"], row["gamma"]) for row in rows}
    assert {("Saliency", ""), ("Curvature", ""), ("Hessian×Product", "")} <= methods
    assert {("BiLRP", g) for g in bench_toy.GAMMAS} <= methods
    with open(tmp_path / "toy_acs.csv") as handle:
        saved = list(csv.DictReader(handle))
    assert len(saved) == len(rows) and all(int(r["n_pairs"]) == 5 for r in saved)
    assert (tmp_path / "toy_acs.png").stat().st_size > 0
    summary = json.loads((tmp_path / "toy.json").read_text())
    assert summary["command"] == "python -m benchmarks.bench_toy " + " ".join(args)
    assert summary["model"]["trained_by_this_command"]
    assert summary["model"]["config"] == {**toy_model.training_defaults(), "steps": 20, "batch_size": 32}
    stamp = (tmp_path / "toy_model.pt").stat().st_mtime_ns
    bench_toy.main(args)  # same config: loads the checkpoint instead of training
    assert (tmp_path / "toy_model.pt").stat().st_mtime_ns == stamp
    assert not json.loads((tmp_path / "toy.json").read_text())["model"]["trained_by_this_command"]
