"""The evaluation datasets of the results tables, each as (catalog, train histories, valid, test, times).

    catalog   DataFrame item_id, scene, title, text, published_at (the encode stage's input)
    train     Series user_id -> list of item ids, oldest first (everything the model trains on)
    valid     (user ids, target item ids) or None: the history of a valid user is train[user]
    test      (user ids, target item ids): the history of a test user is train[user] (+ its valid
              item where the protocol says so, see `test_histories`)
    times     None (no timestamps), or {"train": Series user_id -> list of times (datetime64, UTC)
              aligned with train, "test": the test targets' times, "valid": the valid targets'
              (where valid is given)}: the session context's input

Protocols (full ranking over every catalog item; ties count against the target):

* `synthetic`: the embedded default world of params.yaml; train on days 1..N-1, test on each
  user's first click of day N; valid = the last training item of 1,000 users (held out by the caller).
* `synthetic-dev` (a tuning split, not a results table): the same world one day shorter (a day
  depends only on the seed and its index, so these are its first N-1 days): train on days
  1..N-2, "test" on each user's first click of day N-1. Shaped like synthetic's test (a new
  session's first click, the next day) where its valid split is mid-session; it never reads day N.
* `food-kitchen`: train on every train sequence and the valid/test users' histories; select on the
  valid users' last items; report on the 937 test users' last items.
* `food-kitchen-sparse`: food-kitchen with each user's sequence cut to its last 8 items before
  the held-out one, and the titles of a random half of the items removed (seed 0).
* `movielens` (ml-latest-small): per user by time, last rating = test, second last = valid, the
  rest train; item text = title and genres; every movie of movies.csv is a candidate.
* `food-kitchen-newitems`, `movielens-newitems`: the item cold-start (inductive) protocol of
  UniSRec and Recformer on those two. A seeded 20% of the catalog's items (`held_out_items`, seed
  0, drawn over every catalog item) is **removed from every input**: each behaviour on a held-out
  item is dropped from the training sequences and from the histories of the valid and test users
  (MovieLens's test history too, which otherwise ends with the valid item), so the model never
  reads or trains on a held-out item's ID. Valid and test targets are left as they are: the test
  users whose target is held out are the "new items" rows of the table (the `new` bucket), ranked
  over the whole catalog, held-out items included. Valid targets on held-out items stay in the
  selection split (early stopping sees new items as a user would, never trains on them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATASETS = ("synthetic", "food-kitchen", "food-kitchen-sparse", "movielens",  # the results tables
            "food-kitchen-newitems", "movielens-newitems")
HELD_OUT_SHARE = 0.2  # of the catalog, in the new-item splits
DEV_DATASETS = ("synthetic-dev",)  # tuning splits shaped like a table's test, never reading it
EPOCH = pd.Timestamp("2026-01-01", tz="UTC")


def synthetic(synth_cfg):
    from ingest import synth

    world = synth.build_world(synth_cfg)
    events = pd.concat([synth.simulate_day(world, d).assign(day=d) for d in range(synth_cfg.days)])
    clicks = events[events["action"] == "click"].sort_values(["user_id", "ts"], kind="stable")
    catalog = world.items[["item_id", "scene", "title", "text", "published_at"]]
    last = synth_cfg.days - 1
    clicks = clicks.assign(us=clicks["ts"].dt.tz_convert(None).astype("datetime64[us]"))
    before = clicks[clicks["day"] < last].groupby("user_id")
    train, train_us = before["item_id"].agg(list), before["us"].agg(list)
    first = clicks[clicks["day"] == last].groupby("user_id").first()
    test_users = [u for u in first.index if u in train.index]
    times = {"train": train_us, "test": first.loc[test_users, "us"].to_numpy()}
    return catalog, train, None, (test_users, first.loc[test_users, "item_id"].tolist()), times


def synthetic_stream(synth_cfg) -> pd.DataFrame:
    """Every click of `synthetic`'s test day (its last), user_id, item_id, us (datetime64[us], UTC),
    by time: what a platform's click stream shows before each test target (the early-clicks
    audience of a new item, `training.fresh`). `synthetic-dev`'s with `days` one shorter."""
    from ingest import synth

    world, last = synth.build_world(synth_cfg), synth_cfg.days - 1
    day = synth.simulate_day(world, last)
    clicks = day[day["action"] == "click"].sort_values("ts", kind="stable")
    return pd.DataFrame({"user_id": clicks["user_id"].to_numpy(), "item_id": clicks["item_id"].to_numpy(),
                         "us": clicks["ts"].dt.tz_convert(None).astype("datetime64[us]").to_numpy()})


def food_kitchen(folder: Path = SHARED / "food-kitchen", keep_last: int | None = None, drop_text: float = 0.0):
    seqs = pd.read_csv(folder / "sequences.csv")
    items = pd.read_csv(folder / "items.csv")
    if drop_text:
        rng = np.random.default_rng(0)
        gone = rng.random(len(items)) < drop_text
        items = items.assign(title=np.where(gone, "", items["title"]))
    catalog = items.assign(text=None, published_at=EPOCH)
    tokens = seqs["items"].str.split()
    held = seqs["split"].isin(["valid", "test"]).to_numpy()
    hist = [t[:-1] if h else t for t, h in zip(tokens, held)]
    if keep_last is not None:
        hist = [h[-keep_last:] for h in hist]
    train = pd.Series(hist, index=seqs["user_id"])

    def pick(split):
        rows = (seqs["split"] == split).to_numpy()
        return seqs.loc[rows, "user_id"].tolist(), tokens[rows].str[-1].tolist()

    return catalog, train, pick("valid"), pick("test"), None


def movielens(folder: Path = SHARED / "ml-latest-small"):
    ratings = pd.read_csv(folder / "ratings.csv").sort_values(["userId", "timestamp", "movieId"], kind="stable")
    movies = pd.read_csv(folder / "movies.csv")
    genres = movies["genres"].str.replace("|", ", ", regex=False).replace("(no genres listed)", "")
    catalog = pd.DataFrame({"item_id": "m" + movies["movieId"].astype(str), "scene": "movie",
                            "title": movies["title"], "text": genres, "published_at": EPOCH})
    ratings = ratings.assign(item="m" + ratings["movieId"].astype(str),
                             time=pd.to_datetime(ratings["timestamp"], unit="s").astype("datetime64[us]"))
    grouped = ratings.groupby("userId")[["item", "time"]].agg(list)
    grouped = grouped[grouped["item"].str.len() >= 3]
    seqs, stamps = grouped["item"], grouped["time"]
    users = [f"u{u}" for u in seqs.index]
    train = pd.Series([s[:-2] for s in seqs], index=users)
    valid = (users, [s[-2] for s in seqs])
    test = (users, [s[-1] for s in seqs])
    times = {"train": pd.Series([t[:-2] for t in stamps], index=users), "valid": [t[-2] for t in stamps],
             "test": [t[-1] for t in stamps]}
    return catalog, train, valid, test, times


def held_out_items(catalog: pd.DataFrame, share: float = HELD_OUT_SHARE, seed: int = 0) -> set[str]:
    """The new-item splits' held-out items: each catalog item with probability `share` (seeded)."""
    rng = np.random.default_rng(seed)
    return set(catalog["item_id"][rng.random(len(catalog)) < share])


def without_items(loaded: tuple, held: set[str]) -> tuple:
    """A loaded dataset with every behaviour on `held` items dropped from the training sequences
    (and their times); targets unchanged (see the module docstring)."""
    catalog, train, valid, test, times = loaded
    keep = [np.array([i not in held for i in s], dtype=bool) for s in train]
    train = pd.Series([list(np.asarray(s, dtype=object)[k]) for s, k in zip(train, keep)], index=train.index)
    if times is not None:
        times = dict(times, train=pd.Series([list(np.asarray(t)[k]) for t, k in zip(times["train"], keep)],
                                            index=times["train"].index))
    return catalog, train, valid, test, times


def load(name: str, synth_cfg=None):
    if name.endswith("-newitems"):
        loaded = load(name.removesuffix("-newitems"), synth_cfg)
        return without_items(loaded, held_out_items(loaded[0]))
    if name == "synthetic":
        return synthetic(synth_cfg)
    if name == "synthetic-dev":
        return synthetic(dataclasses.replace(synth_cfg, days=synth_cfg.days - 1))
    if name == "food-kitchen":
        return food_kitchen()
    if name == "food-kitchen-sparse":
        return food_kitchen(keep_last=8, drop_text=0.5)
    if name == "movielens":
        return movielens()
    raise ValueError(f"unknown dataset {name!r} ({', '.join(DATASETS + DEV_DATASETS)})")


def test_includes_valid_item(name: str) -> bool:
    """MovieLens tests on the last rating after the valid one: the test history includes it (in
    `movielens-newitems`, unless the valid item is held out)."""
    return name in ("movielens", "movielens-newitems")
