"""Training-data preparation: every behaviour of a long history is a target exactly once."""

import numpy as np

from training.data import next_item_pairs


def test_long_sequences_are_cut_into_windows_that_cover_every_target_once():
    seqs = [np.arange(1, 12), np.array([5]), np.array([3, 0, 4])]  # 11 items, too short, one unknown
    inputs, targets = next_item_pairs(seqs, max_len=4)
    assert inputs.shape == targets.shape and inputs.shape[1] == 4
    flat = targets[targets > 0].tolist()
    assert sorted(flat) == sorted(list(range(2, 12)) + [4]), "each next item once; unknown items dropped"
    for x, t in zip(inputs.tolist(), targets.tolist()):
        real = [(a, b) for a, b in zip(x, t) if b]
        assert all(b == a + 1 for a, b in real if a), "input and target stay aligned"  # sequence 1..11
