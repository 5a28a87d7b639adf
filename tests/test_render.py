"""Rendering of explanations (curves, heatmaps, top pairs, Web Annotations) and the invariance measure."""


import numpy as np
import pytest
import torch
from PIL import Image

from bilrp_core.invariance import invariance, local_band_mask, local_pairs, similarity_matrix
from bilrp_core.render import PairStyle, draw_pair, heatmap, marginal, select_pairs, top_pairs

SIZE, GRID, GAP, BEND = 64, 4, 16, 0.25
STYLE = PairStyle(gap=GAP, bend=BEND)


def white(size=SIZE):
    return Image.new("RGB", (size, size), "white")


def one_pair(value, noise=0.0, seed=0):
    """A 4×4×4×4 pair matrix whose strongest entry joins patch (0, 0) of image 1 and (3, 3) of image 2."""
    rng = np.random.default_rng(seed)
    pair = rng.uniform(-noise, noise, (GRID, GRID, GRID, GRID))
    pair[0, 0, 3, 3] = value
    return pair


def arc_midpoint(picture):
    """Where the curve of patch (0, 0) -> (3, 3) peaks (t = 1/2), from the geometry draw_pair documents."""
    (left, top, right, _), second = picture.info["boxes"]
    assert (left, right, second[0]) == (0, SIZE, SIZE + GAP)
    margin = top
    start = np.array([0.5 / GRID * SIZE, margin + 0.5 / GRID * SIZE])
    end = np.array([SIZE + GAP + 3.5 / GRID * SIZE, margin + 3.5 / GRID * SIZE])
    control = np.array([(start[0] + end[0]) / 2, min(start[1], end[1]) - BEND * (end[0] - start[0])])
    x, y = 0.25 * start + 0.5 * control + 0.25 * end
    return int(round(x)), int(round(y))


def pixel_near(picture, point, radius=2):
    """The most saturated pixel within ``radius`` of ``point`` (the curve is a few pixels wide)."""
    x, y = point
    patch = np.asarray(picture, dtype=int)[y - radius:y + radius + 1, x - radius:x + radius + 1].reshape(-1, 3)
    return patch[np.argmax(patch.max(axis=1) - patch.min(axis=1))]


def test_strongest_positive_pair_is_drawn_red():
    picture = draw_pair(white(), white(), one_pair(5.0, noise=0.1), top=1, style=STYLE)
    r, g, b = pixel_near(picture, arc_midpoint(picture))
    assert r > 180 and g < 90 and b < 90, (r, g, b)
    # Only the strongest pair was drawn: the mirror-image spot of the picture stays white.
    x, y = arc_midpoint(picture)
    assert tuple(np.asarray(picture)[y + 30, x]) == (255, 255, 255)


def test_negative_only_is_blue_and_hidden_when_positive_asked():
    pair = one_pair(-5.0)
    picture = draw_pair(white(), white(), pair, sign="negative", top=5, style=STYLE)
    r, g, b = pixel_near(picture, arc_midpoint(picture))
    assert b > 180 and r < 90, (r, g, b)
    positive = draw_pair(white(), white(), pair, sign="positive", top=5, style=STYLE)
    blank = draw_pair(white(), white(), np.zeros_like(pair), style=STYLE)
    assert np.array_equal(np.asarray(positive), np.asarray(blank))


def test_draw_pair_accepts_tensors_threshold_and_height():
    pair = torch.from_numpy(one_pair(1.0, noise=0.5, seed=3))
    picture = draw_pair(white(32), white(48), pair, threshold=0.9, style=PairStyle(height=SIZE))
    assert picture.mode == "RGB" and picture.height > SIZE
    indices, values, scale = select_pairs(pair, threshold=0.9)
    assert np.all(np.abs(values) >= 0.9 * scale) and len(indices) >= 1


def test_opacity_follows_relevance():
    strong, weak = one_pair(4.0), one_pair(4.0)
    weak[0, 0, 3, 3] = 1.0
    weak[3, 3, 0, 0] = 4.0  # now another pair sets the scale: the (0,0)->(3,3) curve is at 1/4 opacity
    strong_picture = draw_pair(white(), white(), strong, style=STYLE)
    weak_picture = draw_pair(white(), white(), weak, style=STYLE)
    assert weak_picture.info["boxes"] == strong_picture.info["boxes"]
    strong_rgb = pixel_near(strong_picture, arc_midpoint(strong_picture))
    weak_rgb = pixel_near(weak_picture, arc_midpoint(weak_picture))
    assert weak_rgb[1] > strong_rgb[1] + 60  # paler red: more white shows through


def test_select_pairs_validates():
    with pytest.raises(ValueError, match="4 dimensions"):
        select_pairs(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="sign"):
        select_pairs(one_pair(1.0), sign="up")
    with pytest.raises(ValueError, match="threshold"):
        select_pairs(one_pair(1.0), threshold=2)


def test_heatmap_marks_positive_red_and_negative_blue():
    pair = np.zeros((GRID, GRID, GRID, GRID))
    pair[0, 0, 1, 1] = 2.0    # image 1, top-left patch: positive
    pair[3, 3, 2, 2] = -2.0   # image 1, bottom-right patch: negative
    picture = np.asarray(heatmap(pair, white(), axis=0, smooth=False), dtype=int)
    r, g, b = picture[4, 4]
    assert r > 180 and g < 100 and b < 100
    r, g, b = picture[60, 60]
    assert b > 180 and r < 100
    assert tuple(picture[4, 60]) == tuple(picture[60, 4])  # untouched patches stay grey
    assert np.allclose(marginal(pair, axis=1)[1, 1], 2.0) and np.allclose(marginal(pair, axis=1)[2, 2], -2.0)


def test_marginal_of_factors_equals_pair_marginal():
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(5, 3, 3)), rng.normal(size=(5, 2, 2))
    pair = np.einsum("mab,mcd->abcd", f1, f2)
    assert np.allclose(marginal(f1, weights=f2.sum(axis=(1, 2))), marginal(pair, axis=0))
    with pytest.raises(ValueError, match="weights"):
        marginal(f1, weights=np.ones(3))


def test_top_pairs_ranks_and_boxes():
    pair = np.zeros((GRID, GRID, GRID, GRID))
    pair[1, 2, 3, 0] = 3.0
    pair[0, 0, 0, 1] = -2.0
    pair[2, 2, 2, 2] = 1.0
    table = top_pairs(pair, pool=8, n=2, original_sizes=((64, 128), (32, 32)))
    assert list(table["rank"]) == [1, 2] and list(table["relevance"]) == [3.0, -2.0]
    assert np.isclose(table["share"].iloc[0], 3.0 / 2.0)  # of the explained total 3 - 2 + 1
    first = table.iloc[0]
    assert (first.img1_x0, first.img1_y0, first.img1_x1, first.img1_y1) == (16, 8, 24, 16)
    assert (first.img2_x0, first.img2_y0, first.img2_x1, first.img2_y1) == (0, 24, 8, 32)
    assert (first.orig1_x0, first.orig1_y0, first.orig1_x1, first.orig1_y1) == (32, 32, 48, 64)
    assert list(top_pairs(pair, pool=8, n=5, sign="positive")["relevance"]) == [3.0, 1.0]
    assert list(top_pairs(pair, pool=8, n=5, sign="negative")["relevance"]) == [-2.0]


def test_invariance_ratio_and_band():
    groups = ["a", "a", "b", "b", "c", None]
    mask = local_band_mask(groups)
    assert mask[0, 1] and mask[1, 0] and mask[2, 3] and not mask[0, 2] and not mask.diagonal().any()
    assert not mask[5].any()
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, (3, 8))
    features = np.vstack([base[0], base[0] + 0.01, base[1], base[1] + 0.01, base[2], rng.uniform(0, 1, 8)])
    sim = similarity_matrix(features)
    off = ~np.eye(6, dtype=bool)
    expected = np.mean([sim[0, 1], sim[1, 0], sim[2, 3], sim[3, 2]]) / sim[off].mean()
    assert np.isclose(invariance(features, groups), expected) and expected > 1
    assert local_band_mask(["a"] * 4, width=1)[0, 1] and not local_band_mask(["a"] * 4, width=1)[0, 2]
    ranked = local_pairs(sim, groups)
    assert {(i, j) for i, j, _, _ in ranked} == {(0, 1), (2, 3)} and np.isclose(sum(s for *_, s in ranked), 1)
    with pytest.raises(ValueError, match="no two items"):
        invariance(features, list("abcdef"))
