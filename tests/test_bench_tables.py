"""The faithfulness measure of benchmarks/bench_tables.py against sums worked out by hand."""

import torch

from benchmarks.bench_tables import digit_masks, same_digit_share


def test_same_digit_share_counts_positive_relevance_between_like_digits():
    # page 1: a '2' in cell 0, a '3' in cell 1, blank cells 2-3; page 2: a '2' in cell 1, a '3' in cell 2
    masks1 = digit_masks([(2, 0, 0, 4, 4), (3, 4, 0, 8, 4)], (1.0, 1.0), (1, 4), 4)
    masks2 = digit_masks([(2, 4, 0, 8, 4), (3, 8, 0, 12, 4)], (1.0, 1.0), (1, 4), 4)
    assert masks1[:, 2].tolist() == [1, 0, 0, 0] and masks2[:, 3].tolist() == [0, 0, 1, 0]
    f1 = torch.tensor([[[1.0, 0.0, 0.0, 0.0]], [[0.0, 2.0, 0.0, 1.0]]])  # (h=2, 1, 4)
    f2 = torch.tensor([[[0.0, 3.0, 0.0, 0.0]], [[0.0, 1.0, 1.0, -4.0]]])
    # positive pair relevance: 2↔2 (1·3) = 3, 3↔3 (2·1) = 2, 3↔2 (2·1) = 2, blank↔2 (1·1) = 1, blank↔3 (1·1) = 1;
    # the negative products (2·-4, 1·-4) are left out of both sums
    assert same_digit_share(f1, f2, masks1, masks2, block=1) == (3 + 2) / (3 + 2 + 2 + 1 + 1)
