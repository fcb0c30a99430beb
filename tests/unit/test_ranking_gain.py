"""The ranking benchmark's own arithmetic (benchmarks/ranking_gain.py): base features are point in
time (only days before the impression's), GAUC is the impression-weighted per-user AUC."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.ranking_gain import base_features, gauc


def test_base_features_count_only_days_before_the_impression():
    ts = pd.to_datetime(["2026-01-01 10:00", "2026-01-02 10:00", "2026-01-03 09:00", "2026-01-03 10:00"], utc=True)
    events = pd.DataFrame({"user_id": ["u", "u", "v", "u"], "item_id": ["a", "a", "a", "b"],
                           "scene": ["article", "video", "article", "article"], "action": "click", "ts": ts})
    catalog = pd.DataFrame({"item_id": ["a", "b"], "published_at": pd.to_datetime(["2025-12-31 00:00", "2026-01-02 12:00"], utc=True)})
    frame = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "day": ["2026-01-03", "2026-01-03"]})
    out = base_features(events, catalog, frame, {"article"})
    # day 3's own clicks (v on a at 09:00, u on b) are not counted: they happen on the impression's day
    assert out["item_clicks_7d"].tolist() == [2, 0]
    assert out["item_clicks_1d"].tolist() == [1, 0]
    assert out["user_clicks_7d"].tolist() == [2, 2]
    assert out["user_task_clicks_7d"].tolist() == [1, 1]
    assert out["item_age_days"].tolist() == pytest.approx([3.0, 0.5])


def test_gauc_weights_each_users_auc_by_impressions_and_skips_one_label_users():
    frame = pd.DataFrame({"user_id": ["u"] * 4 + ["v"] * 2 + ["w"] * 3, "clicked": [1, 0, 0, 0, 1, 0, 0, 0, 0]})
    score = np.array([0.9, 0.1, 0.2, 0.95, 0.1, 0.5, 0.3, 0.2, 0.1])
    # u: the click beats 2 of 3 -> 2/3 over 4 rows; v: the click loses -> 0 over 2 rows; w: no click, skipped
    assert gauc(frame, score) == pytest.approx((2 / 3 * 4 + 0 * 2) / 6)
