"""The bigram network (Sec. 6.2): structure, scale normalisation, explanation, weights and the training script."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from bilrp_core import (
    BigramOptions,
    WeightsUnavailableError,
    bigram_network,
    bilrp,
    relevance_factors,
    resolve_gamma,
)
from bilrp_core.bigram import BigramPooling, DetectionThreshold, detect_digits, load_detector_weights
from bilrp_core.detector import GatedDigitMaps
from bilrp_core.page_ink import estimate_component_height, normalise_page, to_ink
from corpus_index.synthetic.training import digit_training_pages


@pytest.fixture(scope="module")
def print_strip():
    """A degraded strip of table print at a known font size (grey PIL image)."""
    return digit_training_pages(1, seed=3, size=(160, 320), font_px=(22, 22), fonts=["EB Garamond"])[0][0]


def test_structure_and_default_gamma():
    model = bigram_network(pretrained=False)
    assert isinstance(model.layers[-1], BigramPooling) and model.projection is None
    convs = [i for i, m in enumerate(model.layers) if isinstance(m, nn.Conv2d)]
    assert resolve_gamma(model) == dict.fromkeys(convs, 0.5)
    page = torch.rand(1, 1, 32, 48)
    for options, dims in [(BigramOptions(unigrams=False, aligned=False), 100), (None, 100),
                          (BigramOptions(aligned=True), 200), (BigramOptions(aligned=True, unigrams=True), 210)]:
        assert bigram_network(options, pretrained=False)(page).shape == (1, dims)


def test_bigram_pooling_counts_a_bigram_at_its_shift():
    pooling = BigramPooling(shifts=(2,), unigrams=True)
    maps = torch.zeros(1, 10, 5, 12)
    maps[0, 1, 2, 3] = 1.0  # a "1" at column 3 followed by a "7" two map pixels to the right
    maps[0, 7, 2, 5] = 0.5
    phi = pooling(maps)[0]
    assert phi[17] == pytest.approx(0.5) and phi[71] == 0 and phi[11] == 0
    assert phi[100 + 1] == pytest.approx(1.0) and phi[100 + 7] == pytest.approx(0.5)


def test_preprocess_accepts_colour_and_grey_of_any_size(print_strip):
    model = bigram_network(pretrained=False)
    grey = model.preprocess(print_strip)
    colour = model.preprocess(print_strip.convert("RGB"))
    torch.testing.assert_close(grey, colour, atol=2 / 255, rtol=0)
    assert grey.shape[:2] == (1, 1) and grey.shape[2] % 4 == 0 and grey.shape[3] % 4 == 0
    assert 0 <= grey.min() and grey.max() <= 1


def test_scale_normalisation_brings_a_large_scan_to_the_learnt_size(print_strip):
    small, _ = normalise_page(print_strip, 12.0)
    big_scan = print_strip.resize((print_strip.width * 3, print_strip.height * 3), Image.BICUBIC)
    big, (sx, _) = normalise_page(big_scan, 12.0)
    assert sx < 0.5  # the 3x scan is shrunk
    assert abs(big.shape[-1] - small.shape[-1]) <= 0.1 * small.shape[-1]
    measured = estimate_component_height(big[0, 0].numpy())
    assert measured == pytest.approx(12.0, rel=0.25)


def test_print_size_of_faint_print_beside_dark_rules_is_measured_on_the_glyphs(print_strip):
    # to_ink scales the darkest ink (here the rules) to 1, leaving the figures below the ink level 0.5
    ink = to_ink(print_strip)
    faint = 255 - 0.45 * ink * 255
    rules = np.zeros(ink.shape, dtype=bool)
    for row in (20, 60, 100, 140):
        rules[row:row + 3] = True
    faint[rules] = 0
    faint_ink = to_ink(Image.fromarray(faint.astype(np.uint8)))
    assert faint_ink[~rules].max() < 0.5  # no stroke of a figure reaches the old fixed ink level
    assert estimate_component_height(faint_ink) == pytest.approx(estimate_component_height(ink), rel=0.15)


def test_blank_page_keeps_its_size_and_gives_zero_features():
    page = Image.fromarray(np.full((120, 80), 240, dtype=np.uint8))
    assert estimate_component_height(to_ink(page)) is None
    model = bigram_network(pretrained=False)
    x = model.preprocess(page)
    assert x.shape[-2:] == (120, 80)


def test_explanation_runs_and_shapes(print_strip):
    model = bigram_network(pretrained=False)
    x = model.preprocess(print_strip)
    x2 = model.preprocess(print_strip.transpose(Image.FLIP_TOP_BOTTOM))
    factors = relevance_factors(model, x, pool=8)
    assert factors.shape == (100, -(-x.shape[2] // 8), -(-x.shape[3] // 8))
    out = bilrp(model, x, x2, pool=8)
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_dimensions_with_zero_phi_are_skipped_and_nothing_changes(print_strip, monkeypatch):
    """Absent bigrams (φ_m = 0) have zero relevance by linearity: skipped, and every factor stays as computed."""
    import bilrp_core.attribution as attribution

    model = bigram_network(BigramOptions(aligned=True))
    x = model.preprocess(print_strip)
    phi = model(x)[0]
    assert 0 < int((phi == 0).sum()) < len(phi)  # the strip exercises both kinds of dimension
    backward_rows = []
    real_backward = attribution._backward

    def counting_backward(model_, rules, contexts, relevance):
        backward_rows.append(relevance.shape[0])
        return real_backward(model_, rules, contexts, relevance)

    monkeypatch.setattr(attribution, "_backward", counting_backward)
    skipped = relevance_factors(model, x, pool=4, method="dense")  # the dense path's backward rows are counted
    assert sum(backward_rows) == int((phi != 0).sum())
    monkeypatch.setattr(attribution, "_active_dims", lambda model_, a_top, dims: list(range(len(dims))))
    every = relevance_factors(model, x, pool=4, method="dense")
    assert sum(backward_rows) == int((phi != 0).sum()) + len(phi)
    torch.testing.assert_close(skipped, every, rtol=0, atol=0)
    assert (every[phi == 0] == 0).all() and (every[phi != 0] != 0).any(dim=(1, 2)).all()
    sub = relevance_factors(model, x, pool=4, dims=[int(phi.argmax()), int(phi.argmin())])
    torch.testing.assert_close(sub, every[[int(phi.argmax()), int(phi.argmin())]])


def test_shipped_weights_load_and_missing_weights_say_how_to_train(tmp_path):
    model = bigram_network()
    assert model.key == "bigram-trained-100-cos-t0.3-sqrt"
    gated = [m for m in model.layers if isinstance(m, GatedDigitMaps)]
    assert len(gated) == 1  # the shipped detector is gated, with the training script's three context layers
    assert sum(isinstance(m, nn.Conv2d) and m.dilation == (2, 2) for m in gated[0].gate) == 3
    with pytest.raises(WeightsUnavailableError, match="train_bigram"):
        bigram_network(weights=tmp_path / "none.pt")


def test_shipped_weights_were_trained_with_the_training_scripts_defaults():
    from corpus_index.train_bigram import training_defaults

    checkpoint, defaults = load_detector_weights()[1], training_defaults()
    for name in ("steps", "n_patches", "n_pages", "crops_per_page", "context", "gated", "width", "seed",
                 "near_digit", "false_positive_weight", "held_out"):
        assert checkpoint[name] == defaults[name], name  # README: the shipped weights = the defaults


def test_threshold_drops_weak_responses_and_the_explanation_still_conserves(print_strip):
    gated, ungated = bigram_network(), bigram_network(BigramOptions(threshold=0))
    assert isinstance(gated.layers[-2], DetectionThreshold)
    assert not any(isinstance(layer, DetectionThreshold) for layer in ungated.layers)
    x = gated.preprocess(print_strip)
    counts, all_responses = gated.unnormalized(x)[0], ungated.unnormalized(x)[0]
    assert (counts <= all_responses + 1e-6).all() and counts.sum() < all_responses.sum() and counts.sum() > 0
    factors = relevance_factors(gated, x, pool=8)  # LRP through the gate loses nothing: Σ factors = φ
    torch.testing.assert_close(factors.sum(dim=(1, 2)), gated(x)[0], rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="threshold"):
        bigram_network(BigramOptions(threshold=-0.1), pretrained=False)


def test_phi_holds_the_roots_of_the_bigram_sums_by_default(print_strip):
    rooted, sums = bigram_network(), bigram_network(BigramOptions(sqrt=False))
    assert rooted.layers[-1].sqrt and not sums.layers[-1].sqrt and sums.key == "bigram-trained-100-cos-t0.3"
    assert rooted.key == "bigram-trained-100-cos-t0.3-sqrt" and rooted.options == BigramOptions()
    x = rooted.preprocess(print_strip)
    torch.testing.assert_close(rooted.unnormalized(x) ** 2, sums.unnormalized(x), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_training_script_runs_and_its_weights_load(tmp_path, print_strip):
    from corpus_index.train_bigram import blob_targets, main

    target = blob_targets([(3, 10.0, 10.0)], (32, 64))
    assert target.shape == (10, 8, 16) and target[3].max() > 0.8 and target[4].max() == 0
    out = tmp_path / "tiny.pt"
    assert main(["--out", str(out), "--steps", "3", "--patches", "8", "--pages", "2", "--crops", "2",
                 "--near-digit", "0.5", "--false-positive-weight", "4"]) == 0
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["near_digit"] == 0.5 and checkpoint["false_positive_weight"] == 4 and checkpoint["gated"]
    assert checkpoint["context"] == 3  # the default: the shipped weights' setting
    model = bigram_network(BigramOptions(threshold=0), weights=out)
    assert isinstance(detect_digits(model, print_strip, threshold=0.0), list)
    # the gated digit maps take the γ of the schedule, and BiLRP through them conserves (the gate has biases)
    gated = [i for i, m in enumerate(model.layers) if isinstance(m, GatedDigitMaps)]
    assert len(gated) == 1 and resolve_gamma(model)[gated[0]] == 0.5
    assert any(".gate." in k and k.endswith("bias") for k in checkpoint["state_dict"])
    x = model.preprocess(print_strip)
    factors = relevance_factors(model, x, pool=8)
    assert float(model(x).abs().sum()) > 0
    torch.testing.assert_close(factors.sum(dim=(1, 2)), model(x)[0], rtol=1e-3, atol=1e-6)
    plain = tmp_path / "plain.pt"
    assert main(["--out", str(plain), "--steps", "1", "--patches", "4", "--pages", "0", "--no-gated"]) == 0
    assert not any(isinstance(m, GatedDigitMaps) for m in bigram_network(weights=plain).layers)
