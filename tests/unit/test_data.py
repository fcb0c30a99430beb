"""Training-data preparation: every behaviour of a long history is a target exactly once."""

import numpy as np

from training.prep.tensors import next_item_pairs


def test_long_sequences_are_cut_into_windows_that_cover_every_target_once():
    seqs = [np.arange(1, 12), np.array([5]), np.array([3, 0, 4])]  # 11 items, too short, one unknown
    inputs, targets = next_item_pairs(seqs, max_len=4)
    assert inputs.shape == targets.shape and inputs.shape[1] == 4
    flat = targets[targets > 0].tolist()
    assert sorted(flat) == sorted(list(range(2, 12)) + [4]), "each next item once; unknown items dropped"
    for x, t in zip(inputs.tolist(), targets.tolist()):
        real = [(a, b) for a, b in zip(x, t) if b]
        assert all(b == a + 1 for a, b in real if a), "input and target stay aligned"  # sequence 1..11


def test_the_synthetic_dev_split_is_the_same_world_one_day_earlier():
    """benchmarks.datasets `synthetic-dev`: training histories are prefixes of synthetic's, and each
    dev "test" target is the user's first click of day N-1, which follows that prefix in
    synthetic's training sequence; day N (synthetic's test) is never read."""
    import dataclasses

    from benchmarks import datasets
    from core.settings import Settings
    from tests.conftest import REPO

    cfg = dataclasses.replace(Settings.load(REPO / "params.yaml").synth, users=150, items_per_scene=100, days=4)
    _, train, _, (test_users, test_items), times = datasets.load("synthetic", cfg)
    _, dev_train, _, (dev_users, dev_items), _ = datasets.load("synthetic-dev", cfg)
    assert len(dev_users) > 50 and set(dev_train.index) <= set(train.index)
    for user in dev_train.index:
        assert train[user][: len(dev_train[user])] == dev_train[user]
    for user, item in zip(dev_users, dev_items):
        assert train[user][len(dev_train[user])] == item
    assert any(len(train[u]) > len(dev_train.get(u, [])) for u in test_users)


def test_session_context_marks_where_the_next_behaviour_starts_a_new_session():
    import pandas as pd

    from training.prep.tensors import NEW_SESSION, SAME_SESSION, UNKNOWN, next_item_pairs, same_session_share, session_context

    ts = np.array(["2026-01-01T10:00", "2026-01-01T10:20", "2026-01-01T10:51", "2026-01-02T09:00"], dtype="datetime64[us]")
    assert session_context(ts, 30).tolist() == [SAME_SESSION, NEW_SESSION, NEW_SESSION, UNKNOWN]
    assert session_context(ts, 31).tolist() == [SAME_SESSION, SAME_SESSION, NEW_SESSION, UNKNOWN]
    assert session_context(ts, 30, request=NEW_SESSION)[-1] == NEW_SESSION
    assert same_session_share([session_context(ts, 30), np.array([SAME_SESSION, UNKNOWN])]) == 0.5, "unknown codes do not count"
    assert np.isnan(same_session_share([np.array([UNKNOWN])]))
    aware = list(pd.to_datetime(ts).tz_localize("UTC"))  # Timestamps with a zone: the same instants
    assert session_context(aware, 30).tolist() == session_context(ts, 30).tolist()
    assert len(session_context(ts[:0], 30)) == 0
    # next_item_pairs: each input carries its own context, window by window.
    seq, ctx = np.arange(1, 8), np.array([1, 2, 1, 2, 1, 2, 0])
    inputs, targets, contexts = next_item_pairs([seq, np.array([9, 0, 8])], 3, [ctx, np.array([2, 1, 0])])
    for row_in, row_ctx in zip(inputs.tolist(), contexts.tolist()):
        for item, c in zip(row_in, row_ctx):
            if item in range(1, 8):
                assert c == ctx[item - 1]
    assert contexts[-1].tolist() == [0, 0, 2]  # the unknown item 0 is dropped, 9 keeps its own code
