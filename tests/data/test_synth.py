"""The synthetic world has the properties the method claims (ingest/synth.py documents them).

These tests run on the embedded default (params.yaml `synth`) and freeze the generator: a change
to it must keep every property, justified by the properties, never by which model wins.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from ingest import synth
from core.settings import Settings
from tests.conftest import REPO


@pytest.fixture(scope="module")
def world():
    cfg = Settings.load(REPO / "params.yaml").synth
    w = synth.build_world(cfg)
    events = pd.concat([synth.simulate_day(w, d).assign(day=d) for d in range(cfg.days)], ignore_index=True)
    return w, events


@pytest.fixture(scope="module")
def clicks(world):
    w, events = world
    items = w.items.set_index("item_id")
    c = events[events["action"] == "click"].copy()
    c["topic"] = items.loc[c["item_id"], "topic"].to_numpy()
    c["style"] = items.loc[c["item_id"], "style"].to_numpy()
    c["item_day"] = items.loc[c["item_id"], "day"].to_numpy()
    return c


def test_scenes_have_their_own_item_pools(world):
    w, events = world
    assert len(w.cfg.scenes) >= 4
    assert w.items["item_id"].is_unique
    scene_of = w.items.set_index("item_id")["scene"]
    assert (events["scene"].to_numpy() == scene_of.loc[events["item_id"]].to_numpy()).all()
    assert set(events["scene"]) == set(w.cfg.scenes)


def test_popularity_is_power_law_with_a_cold_tail(world, clicks):
    w, _ = world
    counts = clicks["item_id"].value_counts().reindex(w.items["item_id"], fill_value=0).sort_values(ascending=False)
    top10 = counts.iloc[: len(counts) // 10].sum() / counts.sum()
    assert top10 > 0.5, f"top 10% of items get only {top10:.2f} of clicks"
    assert (counts <= 2).mean() > 0.2, "no long tail of cold items"
    # Rank-frequency slope in log-log over the head is steep (Zipf-like), not flat.
    head = counts.iloc[10:1000].to_numpy()
    slope = np.polyfit(np.log(np.arange(10, 1000) + 1), np.log(head), 1)[0]
    assert slope < -0.5, f"rank-frequency slope {slope:.2f}"


def test_new_items_every_day_and_unseen_next_day_targets(world, clicks):
    w, _ = world
    per_day = w.items.groupby("day").size()
    assert (per_day.iloc[1:] == w.cfg.new_items_per_scene_per_day * len(w.cfg.scenes)).all()
    for d in range(1, w.cfg.days):
        day = clicks[clicks["day"] == d]
        seen = set(clicks.loc[clicks["day"] < d, "item_id"])
        new_share = (day["item_day"] == d).mean()
        unseen_share = (~day["item_id"].isin(seen)).mean()
        assert new_share > 0.02, f"day {d}: only {new_share:.3f} of clicks on items published that day"
        assert unseen_share >= new_share


def test_sequences_are_long_enough_for_transformers(world):
    _, events = world
    assert events.groupby("user_id").size().median() >= 20


def test_shares_are_rare_follow_a_click_and_prefer_strong_interest(world, clicks):
    w, events = world
    shares = events[events["action"] == "share"]
    rate = len(shares) / len(clicks)
    assert 0.01 < rate < 0.10, f"share rate {rate:.3f}"
    # Every share has an earlier click of the same item by the same user.
    first_click = clicks.groupby(["user_id", "item_id"])["ts"].min()
    key = pd.MultiIndex.from_frame(shares[["user_id", "item_id"]])
    assert key.isin(first_click.index).all()
    assert (first_click.reindex(key).to_numpy() < shares["ts"].to_numpy()).all()
    # Per click: share probability on the user's top topic + favourite style vs the rest.
    uidx = pd.Series(np.arange(len(w.user_ids)), index=w.user_ids)
    u = uidx.loc[clicks["user_id"]].to_numpy()
    topic = clicks["topic"].to_numpy()
    strong = (topic == w.user_topics.argmax(1)[u]) & (clicks["style"].to_numpy() == w.user_styles[u, topic])
    shared_pairs = set(zip(shares["user_id"], shares["item_id"], shares["day"]))
    shared = np.array([k in shared_pairs for k in zip(clicks["user_id"], clicks["item_id"], clicks["day"])])
    assert shared[strong].mean() > 3 * shared[~strong].mean()


def _topic_profiles(clicks: pd.DataFrame, scene: str, topics: int) -> pd.DataFrame:
    c = clicks[clicks["scene"] == scene]
    h = c.groupby(["user_id", "topic"]).size().unstack(fill_value=0)
    h = h.reindex(columns=range(topics), fill_value=0).astype(float)
    return h.div(np.linalg.norm(h.to_numpy(), axis=1), axis=0)


def test_interests_are_shared_across_scenes(world, clicks):
    w, _ = world
    a = _topic_profiles(clicks, w.cfg.scenes[0], w.cfg.topics)
    b = _topic_profiles(clicks, w.cfg.scenes[1], w.cfg.topics)
    users = a.index.intersection(b.index)
    a, b = a.loc[users].to_numpy(), b.loc[users].to_numpy()
    same_user = (a * b).sum(1).mean()
    other_user = (a * np.roll(b, 1, axis=0)).sum(1).mean()
    assert same_user > other_user + 0.2, f"same user {same_user:.2f} vs other users {other_user:.2f}"


def _words(items: pd.DataFrame) -> dict[str, set[str]]:
    text = (items["title"] + " " + items["text"]).str.lower()
    return {i: set(re.findall(r"[a-z]+", t)) for i, t in zip(items["item_id"], text)}


def test_text_carries_part_of_the_collaborative_signal(world, clicks):
    w, _ = world
    words = _words(w.items)
    rng = np.random.default_rng(0)
    c = clicks.sort_values(["user_id", "ts"])
    a, b = c["item_id"].to_numpy()[:-1], c["item_id"].to_numpy()[1:]
    same_user = c["user_id"].to_numpy()[:-1] == c["user_id"].to_numpy()[1:]
    pick = rng.choice(np.flatnonzero(same_user), 4000, replace=False)
    rand_a, rand_b = rng.choice(w.items["item_id"], 4000), rng.choice(w.items["item_id"], 4000)

    def jaccard(x, y):
        return np.mean([len(words[i] & words[j]) / len(words[i] | words[j]) for i, j in zip(x, y)])

    consecutive, random = jaccard(a[pick], b[pick]), jaccard(rand_a, rand_b)
    assert consecutive > 2 * random, f"consecutive items share words {consecutive:.3f} vs random {random:.3f}"


def test_text_does_not_carry_all_of_it(world, clicks):
    """Same topic (same vocabulary), different hidden style: consumed by different users."""
    w, _ = world
    users_of = clicks.groupby("item_id")["user_id"].agg(frozenset)
    users_of = users_of[users_of.map(len) >= 5]
    meta = w.items.set_index("item_id").loc[users_of.index]
    rng = np.random.default_rng(1)
    same_style, other_style = [], []
    for x, y in rng.integers(len(users_of), size=(60000, 2)):
        if x == y or meta["topic"].iat[x] != meta["topic"].iat[y] or meta["scene"].iat[x] != meta["scene"].iat[y]:
            continue
        ux, uy = users_of.iat[x], users_of.iat[y]
        overlap = len(ux & uy) / len(ux | uy)
        (same_style if meta["style"].iat[x] == meta["style"].iat[y] else other_style).append(overlap)
    assert len(same_style) > 100 and len(other_style) > 100
    assert np.mean(same_style) > 3 * np.mean(other_style)
    # ...while the text of same-topic items does not tell styles apart.
    words = _words(w.items)
    same_topic = w.items.groupby(["scene", "topic"])
    diffs = []
    for _, g in same_topic:
        ids, styles = g["item_id"].to_numpy(), g["style"].to_numpy()
        pairs = rng.integers(len(ids), size=(300, 2))
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        j = np.array([len(words[ids[p]] & words[ids[q]]) / len(words[ids[p]] | words[ids[q]]) for p, q in pairs])
        same = styles[pairs[:, 0]] == styles[pairs[:, 1]]
        if same.any() and (~same).any():
            diffs.append(j[same].mean() - j[~same].mean())
    assert abs(np.mean(diffs)) < 0.02


def test_deterministic_per_seed_and_extendable():
    cfg = dataclasses.replace(Settings.load(REPO / "params.yaml").synth, users=150, items_per_scene=200, days=3)
    a = synth.simulate_day(synth.build_world(cfg), 2)
    b = synth.simulate_day(synth.build_world(dataclasses.replace(cfg, days=5)), 2)
    pd.testing.assert_frame_equal(a, b)
    c = synth.simulate_day(synth.build_world(dataclasses.replace(cfg, seed=cfg.seed + 1)), 2)
    assert not a.equals(c)


def test_the_impression_log_holds_each_clicks_slate(world, tmp_path):
    """issue 31: one slate per click in its scene, the clicked item once, passed-over items half on
    the click's topic; its own random stream (the events do not change), none when switched off."""
    w, events = world
    day = w.cfg.days - 1
    day_events = events[events["day"] == day].drop(columns="day").reset_index(drop=True)
    imp = synth.impressions_day(w, day, day_events)
    clicks = day_events[day_events["action"] == "click"]
    size = w.cfg.impressions_per_click
    assert imp["slate_id"].nunique() == len(clicks) and (imp.groupby("slate_id").size() == size).all()
    assert (imp.groupby("slate_id")["clicked"].sum() == 1).all()
    assert not imp.duplicated(["slate_id", "item_id"]).any()
    shown = imp[imp["clicked"] == 1]
    pd.testing.assert_frame_equal(shown[["user_id", "item_id", "scene", "ts"]].reset_index(drop=True),
                                  clicks[["user_id", "item_id", "scene", "ts"]].reset_index(drop=True))
    items = w.items.set_index("item_id")
    assert (items.loc[imp["item_id"], "scene"].to_numpy() == imp["scene"].to_numpy()).all(), "slates stay in the scene"
    assert (items.loc[imp["item_id"], "day"].to_numpy() <= day).all(), "only published items are shown"
    topic = items.loc[imp["item_id"], "topic"].to_numpy()
    clicked_topic = imp.assign(t=topic).query("clicked == 1").set_index("slate_id")["t"]
    on_topic = (topic == clicked_topic.loc[imp["slate_id"]].to_numpy())[imp["clicked"].to_numpy() == 0].mean()
    assert on_topic > 0.4, f"about half the passed-over items share the click's topic, got {on_topic:.2f}"
    assert sorted(imp.groupby("slate_id")["position"].apply(list).iloc[0]) == list(range(size))
    assert imp.equals(synth.impressions_day(w, day, day_events)), "deterministic per seed"
    off = dataclasses.replace(w.cfg, impressions_per_click=0, days=1)
    synth.run(off, tmp_path / "off")
    synth.run(dataclasses.replace(off, impressions_per_click=size), tmp_path / "on")
    drop = f"date={w.day(0)}"
    assert not (tmp_path / "off" / drop / "impressions.parquet").exists()
    assert (tmp_path / "on" / drop / "impressions.parquet").is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "off" / drop / "events.parquet"),
                                  pd.read_parquet(tmp_path / "on" / drop / "events.parquet"))


def test_the_command_records_its_world_and_extends_only_that_one(tmp_path):
    """`precise data synth --users --items-per-scene` (make run's smaller first world) records its
    settings in landing/_synth.json; a later `--days` adds days of that world; other sizes are
    refused instead of mixing two worlds' drops."""
    from tests.conftest import run_cli, write_params

    write_params(tmp_path, synth={"impressions_per_click": 0})
    run_cli("data", "synth", "--days", "2", "--users", "60", "--items-per-scene", "40", cwd=tmp_path)
    record = synth.recorded(tmp_path / "landing")
    assert record["users"] == 60 and record["items_per_scene"] == 40 and record["days"] == 2
    first = (tmp_path / "landing" / "date=2026-01-02" / "events.parquet").read_bytes()
    run_cli("data", "synth", "--days", "3", cwd=tmp_path)  # no sizes: the recorded world's
    assert (tmp_path / "landing" / "date=2026-01-02" / "events.parquet").read_bytes() == first
    assert pd.read_parquet(tmp_path / "landing" / "date=2026-01-03" / "events.parquet")["user_id"].nunique() <= 60
    assert synth.recorded(tmp_path / "landing")["days"] == 3
    bad = run_cli("data", "synth", "--days", "4", "--users", "70", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "another synthetic world (users: 60)" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "landing" / "date=2026-01-04").exists()
