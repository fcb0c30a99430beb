"""A never-seen item's first clicks of the day (`training.audience`, issue 30): its vector moves
towards the users who clicked it before the query's hour, and nothing else changes."""

import numpy as np
import torch
import torch.nn.functional as F

from tests.model.test_model import tiny
from training.audience import blend, ranks
from training.trainer import model_ranks


def _space(v):
    return F.normalize(v, dim=-1)


def test_blend_moves_only_clicked_eligible_items_towards_their_audience():
    torch.manual_seed(0)
    items, users = _space(torch.randn(6, 4)), _space(torch.randn(3, 4))
    items[0] = 0.0
    eligible = torch.tensor([False, True, True, True, False, False])
    clicked_items, clicked_users = torch.tensor([1, 1, 1, 2, 4]), torch.tensor([0, 1, 0, 2, 2])
    out = blend(items, users, clicked_items, clicked_users, eligible, 2.0, _space)
    # item 1: three clicks (users 0, 1, 0) -> w = 3 / 5 towards the normalised sum of their vectors
    a = _space(2 * users[0] + users[1])
    torch.testing.assert_close(out[1], _space(0.4 * items[1] + 0.6 * a))
    torch.testing.assert_close(out[2], _space(items[2] / 3 * 2 + users[2] / 3))  # one click: w = 1 / 3
    for j in (0, 3, 4, 5):  # padding, eligible but not clicked, clicked but seen in training, neither
        torch.testing.assert_close(out[j], items[j])
    assert (out[1] @ a) > (items[1] @ a), "the item now points more where its audience does"
    # more clicks pull harder; k = 0 is off; no clicks change nothing
    more = blend(items, users, torch.tensor([1] * 9), torch.tensor([0, 1, 0] * 3), eligible, 2.0, _space)
    assert (more[1] @ a) > (out[1] @ a)
    torch.testing.assert_close(blend(items, users, clicked_items, clicked_users, eligible, 0.0, _space), items)
    torch.testing.assert_close(blend(items, users, clicked_items[:0], clicked_users[:0], eligible, 2.0, _space), items)


def _queries(m, n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, 21, (n, m.cfg.max_len), generator=g)  # histories on items 1..20 only
    targets = torch.full((n,), 25)  # a never-seen item
    hours = np.array(["2026-01-05T09:30", "2026-01-05T10:10"] * (n // 2), dtype="datetime64[us]")
    return inputs, targets, hours


def test_ranks_count_only_clicks_before_the_targets_hour():
    m = tiny("fused", similarity="cosine", temperature=0.1)
    inputs, targets, hours = _queries(m)
    eligible = torch.zeros(m.cfg.n_items + 1, dtype=torch.bool)
    eligible[21:] = True  # items 21..30 never seen
    plain = model_ranks(m, inputs, targets)[0]
    none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype="datetime64[us]"))
    np.testing.assert_array_equal(ranks(m, inputs, targets, None, None, hours, none, eligible, 4.0), plain)
    # every user clicked item 25 at 09:59: only the queries of the 10:00 hour may see those clicks
    clicks = (np.full(8, 25), np.arange(8), np.full(8, np.datetime64("2026-01-05T09:59", "us")))
    moved = ranks(m, inputs, targets, None, None, hours, clicks, eligible, 4.0)
    at9, at10 = hours.astype("datetime64[h]") == np.datetime64("2026-01-05T09", "h"), ~(hours.astype("datetime64[h]") == np.datetime64("2026-01-05T09", "h"))
    np.testing.assert_array_equal(moved[at9], plain[at9]), "a click in the query's own hour is not yet published"
    assert (moved[at10] < plain[at10]).all(), "the clicked item rises for the queries after the hour"
    # an item seen in training does not move, however often it is clicked
    eligible[25] = False
    np.testing.assert_array_equal(ranks(m, inputs, targets, None, None, hours, clicks, eligible, 4.0), plain)
