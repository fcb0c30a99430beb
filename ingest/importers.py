"""Importers: public or user data -> daily drops in `landing/` (events + catalog delta per day).

Three sources, one output shape (the same as the synthetic generator's drops):

* `csv`: any CSV or Parquet event log, with a column mapping onto the contract's names; an
  optional item file with its own mapping.
* `movielens`: ratings.csv (a rating is a consumption: action `click` by default) and tags.csv
  (a rarer, stronger engagement: action `share` by default), movies.csv as the catalog
  (title; genres as text); one scene, `movie`.
* `food-kitchen`: the two-scene Amazon set (see ../shared/datasets/README.md). It has order but no
  times: position k (0-based) of a user's n-item history is placed at
  `start + (k + 0.5) / n * window`, window = `--days` days ending on `--end-date`. Only the order
  is real. The held-out last item of `valid` and `test` users is NOT written as an event (that
  would leak it into training); it goes to the sidecar `landing/_splits/food-kitchen.parquet`
  (user_id, split, target_item_id, target_scene, n_history) that evaluation reads.

Importers check the contract as ingest does (the same functions) and report rejected rows in
`landing/_rejects/<source>.parquet`; ingest checks again. An item is placed in the catalog delta of
the first event day on or after its `published_at`; without a `published_at`, the time of its first
event is used. Drops that already exist are kept unless `replace=True`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.ingest import enforce_catalog, enforce_events
from ingest.readers import RawFrame, read_raw
from core import schema
from core.atomic import atomic_dir, atomic_path
from core.errors import PreciseError
from core.settings import IngestConfig, parse_date

log = logging.getLogger(__name__)


def parse_mapping(specs: list[str] | None) -> dict[str, str]:
    """['user_id=uid,item_id=iid', 'ts=time'] -> {'user_id': 'uid', 'item_id': 'iid', 'ts': 'time'}."""
    mapping: dict[str, str] = {}
    for spec in specs or []:
        for pair in spec.split(","):
            if not pair.strip():
                continue
            if "=" not in pair:
                raise PreciseError(f"bad column mapping {pair!r}: expected CONTRACT_NAME=SOURCE_COLUMN")
            target, source = (x.strip() for x in pair.split("=", 1))
            mapping[target] = source
    return mapping


def _apply_mapping(raw: RawFrame, mapping: dict[str, str], allowed: tuple[str, ...], path: Path) -> RawFrame:
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise PreciseError(f"cannot map onto {', '.join(unknown)}: the contract names are {', '.join(allowed)}")
    absent = sorted(src for src in mapping.values() if src not in raw.frame.columns)
    if absent:
        found = ", ".join(map(str, raw.frame.columns))
        raise PreciseError(f"{path}: mapped column(s) {', '.join(absent)} not in the file (found: {found})")
    frame = raw.frame.rename(columns={src: dst for dst, src in mapping.items()})
    keep = [c for c in allowed if c in frame.columns]
    return RawFrame(frame[keep].copy(), raw.bad_bytes, raw.malformed)


def _with_constant(raw: RawFrame, column: str, value: str | None, path: Path) -> RawFrame:
    if column in raw.frame.columns:
        return raw
    if value is None:
        raise PreciseError(f"{path}: no `{column}` column mapped; map one or pass --{column} NAME for every row")
    raw.frame[column] = value
    return raw


def write_drops(
    landing: Path,
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    rejects: dict[str, pd.DataFrame],
    source: str,
    replace: bool = False,
) -> dict:
    """Split contract-typed events and catalog by UTC day and write one drop a day."""
    landing = Path(landing)
    if events.empty:
        raise PreciseError(f"{source}: no valid events to import")
    event_day = events["ts"].dt.strftime("%Y-%m-%d")
    days = np.array(sorted(event_day.unique()))
    # An item goes to the first event day on or after its publication (clamped to the last day).
    pub_day = catalog["published_at"].dt.strftime("%Y-%m-%d").to_numpy()
    slot = np.minimum(np.searchsorted(days, pub_day), len(days) - 1)
    catalog_day = days[slot] if len(catalog) else np.array([], dtype=object)

    written, kept = [], []
    for day in days:
        target = landing / f"date={day}"
        if target.exists() and not replace:
            kept.append(day)
            continue
        with atomic_dir(target) as tmp:
            day_events = events[(event_day == day).to_numpy()]
            day_events.to_parquet(tmp / "events.parquet", index=False)
            catalog[catalog_day == day].to_parquet(tmp / "catalog.parquet", index=False)
        written.append(day)
    n_rejects = {name: len(frame) for name, frame in rejects.items()}
    if any(n_rejects.values()):
        rejects_path = landing / "_rejects" / f"{source}.parquet"
        frame = pd.concat([f.assign(file=name) for name, f in rejects.items()], ignore_index=True)
        with atomic_path(rejects_path) as tmp:
            frame.astype({c: "string" for c in frame.columns if c != "row"}).to_parquet(tmp, index=False)
        log.warning("%s: rejected %s rows, listed in %s", source, n_rejects, rejects_path)
    return {
        "source": source,
        "days": [str(d) for d in days],
        "written": [str(d) for d in written],
        "kept": [str(d) for d in kept],
        "events": len(events),
        "items": len(catalog),
        "rejected": n_rejects,
        "seen": describe(events, catalog, event_day, catalog_day),
    }


def describe(events: pd.DataFrame, catalog: pd.DataFrame, event_day: pd.Series, catalog_day: np.ndarray) -> dict:
    """What an import saw: scenes, actions, events per day, items with text (overall and the
    lowest share of a day's catalog delta, which the gate judges), busiest user-day."""
    per_day = event_day.value_counts()
    has_text = (catalog["title"].fillna("").str.strip() != "") | (catalog["text"].fillna("").str.strip() != "")
    daily_text = has_text.groupby(np.asarray(catalog_day)).mean() if len(catalog) else pd.Series(dtype=float)
    per_user_day = events.groupby([events["user_id"], event_day]).size()
    return {
        "scenes": events["scene"].value_counts().to_dict(),
        "actions": events["action"].value_counts().to_dict(),
        "users": int(events["user_id"].nunique()),
        "events_per_day": {"min": int(per_day.min()), "median": float(per_day.median()), "max": int(per_day.max())},
        "items_in_catalog": len(catalog),
        "items_with_text": round(float(has_text.mean()), 4) if len(catalog) else 0.0,
        "items_with_text_lowest_day": round(float(daily_text.min()), 4) if len(daily_text) else 0.0,
        "event_items_in_catalog": round(float(events["item_id"].isin(set(catalog["item_id"])).mean()), 4),
        "max_events_per_user_day": int(per_user_day.max()),
    }


def suggested_params(name: str, seen: dict) -> dict:
    """A validation profile and task list for params.yaml that fit what the import saw.

    Bounds leave room around the observed values (the lowest daily text share minus 0.1, and the
    items without text allowed outside the length bounds; twice the busiest user-day); the daily-volume check is switched off when days differ by more than 2x from the
    median; one task per scene for the most common action, and one over every scene for each
    other action.
    """
    day = seen["events_per_day"]
    steady = day["min"] >= 0.5 * day["median"] and day["max"] <= 2 * day["median"]
    actions = sorted(seen["actions"], key=lambda a: -seen["actions"][a])
    scenes = sorted(seen["scenes"])
    profile = {
        "scenes": scenes,
        "actions": sorted(actions),
        "max_events_per_user": max(100, 2 * seen["max_events_per_user_day"]),
        # Judged per day's catalog delta: below the lowest day seen, with room for smaller days.
        "min_text_non_empty_rate": max(0.0, round(seen["items_with_text_lowest_day"] - 0.1, 2)),
        # Items without any text are outside the length bounds too: allow for them.
        "max_text_length_violation_rate": min(1.0, round(1.0 - seen["items_with_text_lowest_day"] + 0.1, 2)),
        # No catalog at all: every item is unknown, so the check is switched off.
        "max_unknown_item_rate": None if not seen["items_in_catalog"] else
        0.02 if seen["event_items_in_catalog"] >= 0.98 else min(1.0, round(1.05 - seen["event_items_in_catalog"], 2)),
    }
    if not steady:
        profile |= {"volume_min_ratio": None, "volume_max_ratio": None}
    main = actions[0]
    tasks = [{"name": f"{main}_{scene}", "scenes": [scene], "actions": [main]} for scene in scenes]
    tasks += [{"name": f"{a}_all", "scenes": "all", "actions": [a]} for a in actions[1:]]
    return {"validate": {"profile": name, "profiles": {name: profile}},
            "sequences": {"universal_actions": [main]}, "tasks": tasks}


def _first_seen(events: pd.DataFrame) -> pd.Series:
    return events.groupby("item_id")["ts"].min()


def import_csv(
    landing: Path,
    events_path: Path,
    mapping: dict[str, str],
    scene: str | None = None,
    action: str | None = None,
    catalog_path: Path | None = None,
    catalog_mapping: dict[str, str] | None = None,
    replace: bool = False,
    since: str | None = None,
    until: str | None = None,
    cfg: IngestConfig = IngestConfig(),
) -> dict:
    """A generic event log (CSV, gzip CSV or Parquet) with a column mapping -> daily drops.

    `since` / `until` (YYYY-MM-DD, inclusive) keep a window of a long history.
    """
    events_path = Path(events_path)
    raw = read_raw(events_path)
    raw = _apply_mapping(raw, mapping, schema.EVENT_COLUMNS, events_path)
    raw = _with_constant(raw, "scene", scene, events_path)
    raw = _with_constant(raw, "action", action, events_path)
    events, event_rejects = enforce_events(raw, events_path, cfg)
    events = _window(events, since, until)
    rejects = {events_path.name: event_rejects}

    catalog = schema.CATALOG_SCHEMA.empty_table().to_pandas()
    if catalog_path is not None:
        catalog_path = Path(catalog_path)
        craw = _apply_mapping(read_raw(catalog_path), catalog_mapping or {}, schema.CATALOG_COLUMNS, catalog_path)
        if "scene" not in craw.frame.columns:
            craw = _with_constant(craw, "scene", scene, catalog_path)
        if "published_at" not in craw.frame.columns:  # publication = first event of the item
            first = _first_seen(events)
            fallback = events["ts"].min() if len(events) else pd.NaT
            craw.frame["published_at"] = craw.frame["item_id"].map(first).fillna(fallback)
        catalog, catalog_rejects = enforce_catalog(craw, catalog_path, cfg)
        rejects[catalog_path.name] = catalog_rejects
    return write_drops(landing, events, catalog, rejects, source=events_path.name.split(".")[0], replace=replace)


def _window(events: pd.DataFrame, since: str | None, until: str | None) -> pd.DataFrame:
    """Events on days since..until (inclusive, UTC); either bound may be None."""
    for bound in (since, until):
        if bound is not None:
            parse_date(bound)
    if since:
        events = events[events["ts"] >= pd.Timestamp(since, tz="UTC")]
    if until:
        events = events[events["ts"] < pd.Timestamp(until, tz="UTC") + pd.Timedelta(days=1)]
    return events.reset_index(drop=True)


def import_movielens(
    landing: Path,
    folder: Path,
    since: str | None = None,
    until: str | None = None,
    rating_action: str = "click",
    tag_action: str = "share",
    scene: str = "movie",
    replace: bool = False,
    cfg: IngestConfig = IngestConfig(),
) -> dict:
    """MovieLens (ratings.csv, tags.csv, movies.csv) -> daily drops, optionally a date window."""
    folder = Path(folder)
    ratings_path, tags_path, movies_path = (folder / n for n in ("ratings.csv", "tags.csv", "movies.csv"))
    for p in (ratings_path, movies_path):
        if not p.is_file():
            raise PreciseError(f"{folder}: missing {p.name} (expected a MovieLens folder)")
    parts, rejects = [], {}
    sources = [(ratings_path, rating_action)] + ([(tags_path, tag_action)] if tags_path.is_file() else [])
    for path, action in sources:
        raw = _apply_mapping(read_raw(path), {"user_id": "userId", "item_id": "movieId", "ts": "timestamp"},
                             schema.EVENT_COLUMNS, path)
        raw.frame["scene"], raw.frame["action"] = scene, action
        good, bad = enforce_events(raw, path, cfg)
        parts.append(good)
        rejects[path.name] = bad
    # Ratings first, then tags: within the same second a rating precedes the tag.
    events = _window(pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable"), since, until)

    movies = read_raw(movies_path).frame
    first = _first_seen(events)
    movies = movies.rename(columns={"movieId": "item_id"})
    craw = RawFrame(
        pd.DataFrame(
            {
                "item_id": movies["item_id"],
                "scene": scene,
                "title": movies["title"],
                "text": movies["genres"].str.replace("|", ", ", regex=False),
                # MovieLens has no publication time: a movie appears on its first interaction;
                # movies nobody touched in the window appear on its first day.
                "published_at": movies["item_id"].map(first).fillna(events["ts"].min()),
            }
        ),
        np.zeros(len(movies), dtype=bool),
    )
    catalog, catalog_rejects = enforce_catalog(craw, movies_path, cfg)
    rejects[movies_path.name] = catalog_rejects
    return write_drops(landing, events, catalog, rejects, source="movielens", replace=replace)


def import_food_kitchen(
    landing: Path,
    folder: Path,
    days: int = 30,
    end_date: str = "2026-01-30",
    replace: bool = False,
) -> dict:
    """food-kitchen (items.csv, sequences.csv) -> daily drops plus the split sidecar."""
    folder = Path(folder)
    items_path, seq_path = folder / "items.csv", folder / "sequences.csv"
    for p in (items_path, seq_path):
        if not p.is_file():
            raise PreciseError(f"{folder}: missing {p.name} (expected the food-kitchen folder)")
    if days < 1:
        raise PreciseError("--days must be at least 1")
    seqs = pd.read_csv(seq_path, dtype=str, keep_default_na=False)
    for col in ("user_id", "split", "items"):
        if col not in seqs.columns:
            raise PreciseError(f"{seq_path}: missing column {col}")
    items = pd.read_csv(items_path, dtype=str, keep_default_na=False)
    scene_of = pd.Series(items["scene"].to_numpy(), index=items["item_id"].to_numpy())

    tokens = seqs["items"].str.split()
    n = tokens.str.len().to_numpy()
    held_out = seqs["split"].isin(["valid", "test"]).to_numpy() & (n >= 1)
    n_hist = n - held_out.astype(int)
    # Sidecar: the held-out target of valid/test users.
    last = tokens.str[-1]
    splits = pd.DataFrame(
        {
            "user_id": seqs["user_id"].to_numpy()[held_out],
            "split": seqs["split"].to_numpy()[held_out],
            "target_item_id": last.to_numpy()[held_out],
            "target_scene": last[held_out].map(scene_of).to_numpy(),
            "n_history": n_hist[held_out],
        }
    )
    # History events: position k of n placed at start + (k + 0.5) / n * window.
    hist = [t[: len(t) - int(h)] for t, h in zip(tokens, held_out)]
    flat_items = np.concatenate([np.asarray(h, dtype=object) for h in hist]) if len(hist) else np.array([])
    user = np.repeat(seqs["user_id"].to_numpy(), n_hist)
    pos = np.concatenate([np.arange(k) for k in n_hist]) if len(n_hist) else np.array([])
    frac = (pos + 0.5) / np.repeat(np.maximum(n_hist, 1), n_hist)
    end = pd.Timestamp(end_date, tz="UTC") + pd.Timedelta(days=1)
    start = end - pd.Timedelta(days=days)
    window_us = days * 86400 * 1_000_000
    ts = pd.to_datetime(start.value // 1000 + (frac * window_us).astype(np.int64), unit="us", utc=True)
    raw = RawFrame(
        pd.DataFrame(
            {
                "user_id": user,
                "item_id": flat_items,
                "scene": pd.Series(flat_items).map(scene_of).to_numpy(),
                "action": "click",
                "ts": ts,
            }
        ),
        np.zeros(len(user), dtype=bool),
    )
    events, event_rejects = enforce_events(raw, seq_path)
    events = events.sort_values("ts", kind="stable").reset_index(drop=True)
    craw = RawFrame(items.assign(text=None, published_at=start), np.zeros(len(items), dtype=bool))
    catalog, catalog_rejects = enforce_catalog(craw, items_path)

    report = write_drops(
        landing,
        events,
        catalog,
        {seq_path.name: event_rejects, items_path.name: catalog_rejects},
        source="food-kitchen",
        replace=replace,
    )
    with atomic_path(Path(landing) / "_splits" / "food-kitchen.parquet") as tmp:
        splits.to_parquet(tmp, index=False)
    report["splits"] = splits["split"].value_counts().to_dict()
    return report
