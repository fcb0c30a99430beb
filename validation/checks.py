"""What the daily gate checks, and the vectorised statistics it checks them on.

Speed by design: the expensive work (catalog membership, duplicates, per-user counts, volume, time
ranges) is done once per day with Arrow compute kernels into a one-row frame of statistics; the
Great Expectations suites (validation/suites.py) then check bounds on that frame. A row-wise
expectation over a million events is never run. For every statistic that is off, a few offending
rows are kept as examples for the operator.

Each `Check` names one expectation: the statistic it reads, its bounds (from the profile in
params.yaml `validate.profiles`) and its severity (`error` fails the gate, `warning` is reported).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import schema
from core.settings import ValidateConfig

# Control bytes other than tab/newline/carriage return, DEL, and U+FFFD (a decoder's replacement).
DIRTY_TEXT = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F\x{FFFD}]"


@dataclass(frozen=True)
class Check:
    name: str
    table: str  # events | catalog | sequences
    stat: str
    min_value: float | None
    max_value: float | None
    severity: str  # error | warning
    description: str

    @property
    def enabled(self) -> bool:
        return self.min_value is not None or self.max_value is not None


@dataclass
class Stats:
    """One day's statistics: values (stat -> number or None when not computable), examples
    (stat -> a few offending rows) and notes (checks skipped, and why)."""

    values: dict[str, float | None] = field(default_factory=dict)
    examples: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def checks(cfg: ValidateConfig, tasks: tuple[str, ...] = ()) -> list[Check]:
    """Every check of the gate, bounds from the active profile, severities overridable."""
    p = cfg.profile

    def c(name, table, stat, lo, hi, description, severity="error"):
        return Check(name, table, stat, lo, hi, cfg.severity_of(name, severity), description)

    out = [
        c("events_columns", "events", "missing_columns", None, 0, "all contract columns are present"),
        c("events_types", "events", "wrong_types", None, 0, "columns have the contract types"),
        c("events_not_empty", "events", "rows", p.min_events, None, "the day has events"),
        c("events_user_id_not_null", "events", "null_user_id", None, 0, "user_id is never null or blank"),
        c("events_item_id_not_null", "events", "null_item_id", None, 0, "item_id is never null or blank"),
        c("events_ts_not_null", "events", "null_ts", None, 0, "ts is never null"),
        c("events_scene_in_set", "events", "unknown_scene", None, 0 if p.scenes else None,
          f"scene is one of {list(p.scenes)}"),
        c("events_action_in_set", "events", "unknown_action", None, 0 if p.actions else None,
          f"action is one of {list(p.actions)}"),
        c("events_ts_in_day", "events", "ts_outside_day", None, 0, "ts falls inside the partition's UTC day"),
        c("events_ts_not_future", "events", "ts_in_future", None,
          0 if p.future_tolerance_minutes is not None else None, "ts is not in the future"),
        c("events_duplicate_rate", "events", "duplicate_rate", None, p.max_duplicate_rate,
          "share of rows repeating (user_id, item_id, action, ts)"),
        c("events_unknown_item_rate", "events", "unknown_item_rate", None, p.max_unknown_item_rate,
          "share of events whose item is not in the catalog as of the day"),
        c("events_per_user_bounded", "events", "max_events_per_user", None, p.max_events_per_user,
          "events of the most active user that day (bots)"),
        c("events_day_volume", "events", "volume_ratio", p.volume_min_ratio, p.volume_max_ratio,
          f"events against the mean of the {p.volume_history_days} previous readable days"),
        c("catalog_columns", "catalog", "catalog_missing_columns", None, 0, "all catalog columns are present"),
        c("catalog_unique_item_id", "catalog", "catalog_duplicate_ids", None, 0, "item_id is unique in the delta"),
        c("catalog_text_non_empty", "catalog", "catalog_text_non_empty_rate", p.min_text_non_empty_rate, None,
          "share of items with a non-empty title or text"),
        c("catalog_published_at_sane", "catalog", "catalog_bad_published_at", None, 0,
          f"published_at between {p.published_after} and the end of the day"),
        c("catalog_text_length", "catalog", "catalog_text_length_violation_rate", None,
          p.max_text_length_violation_rate,
          f"share of items whose title + text is outside {p.text_min_chars}..{p.text_max_chars} characters",
          severity="warning"),
        c("catalog_clean_text", "catalog", "catalog_dirty_text", None, 0,
          "no control bytes or replacement characters in title or text"),
        c("sequences_median_length", "sequences", "median_length", p.min_sequence_median, None,
          "median length of the all-scene sequences", severity="warning"),
        c("sequences_truncation", "sequences", "truncated_share", None, p.max_truncated_share,
          "share of users whose history was cut to sequences.max_len", severity="warning"),
    ]
    out += [
        c(f"sequences_task_coverage_{t}", "sequences", f"task_coverage_{t}", p.min_task_coverage, None,
          f"share of users with a {t} sequence", severity="warning")
        for t in tasks
    ]
    return out


# --- statistics ---------------------------------------------------------------------------------


def _blank(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a string is null or only whitespace."""
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), True)


def _examples(table: pa.Table, mask, n: int) -> list[dict]:
    """Up to n rows (of those where mask is true, if given), JSON-ready."""
    rows = (table if mask is None else table.filter(mask)).slice(0, n).to_pylist()
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]


def _string(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    col = table[name]
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def event_stats(
    table: pa.Table,
    day: str,
    catalog_ids: pa.Array,
    history: list[int],
    now: dt.datetime,
    cfg: ValidateConfig,
) -> Stats:
    """Statistics of one day's events. `history`: event counts of the previous readable days."""
    p, n_ex, s = cfg.profile, cfg.examples, Stats()
    missing = _schema_stats(table, s)
    n = table.num_rows
    s.values["rows"] = n

    def flag(stat: str, mask) -> None:
        count = int(pc.sum(mask).as_py() or 0)
        s.values[stat] = count
        if count:
            s.examples[stat] = _examples(table, mask, n_ex)

    cols = {c: _string(table, c) for c in ("user_id", "item_id", "scene", "action") if c in table.column_names}
    for c in ("user_id", "item_id"):
        if cols.get(c) is not None:
            flag(f"null_{c}", _blank(cols[c]))
    if cols.get("scene") is not None:
        flag("unknown_scene", pc.invert(pc.fill_null(pc.is_in(cols["scene"], pa.array(p.scenes, pa.string())), False)))
    if cols.get("action") is not None:
        flag("unknown_action", pc.invert(pc.fill_null(pc.is_in(cols["action"], pa.array(p.actions, pa.string())), False)))

    ts_ok = "ts" in table.column_names and pa.types.is_timestamp(table["ts"].type)
    if ts_ok:
        ts = pc.cast(table["ts"], pa.timestamp("us", tz="UTC"))
        flag("null_ts", pc.is_null(ts))
        start, end = schema.day_bounds(day)
        outside = pc.or_(pc.less(ts, pa.scalar(start.to_pydatetime(), ts.type)),
                         pc.greater_equal(ts, pa.scalar(end.to_pydatetime(), ts.type)))
        flag("ts_outside_day", pc.fill_null(outside, False))
        if p.future_tolerance_minutes is not None:
            limit = now + dt.timedelta(minutes=p.future_tolerance_minutes)
            flag("ts_in_future", pc.fill_null(pc.greater(ts, pa.scalar(limit, ts.type)), False))
    elif "ts" in table.column_names:
        s.notes.append("ts is not a timestamp: time checks skipped")

    keys = ["user_id", "item_id", "action", "ts"]
    if n and not missing and ts_ok:
        groups = table.select(keys).group_by(keys).aggregate([([], "count_all")])
        s.values["duplicate_rate"] = (n - groups.num_rows) / n
        dup = groups.filter(pc.greater(groups["count_all"], 1))
        if dup.num_rows:
            s.examples["duplicate_rate"] = _examples(dup.sort_by([("count_all", "descending")]), None, n_ex)
    if n and cols.get("item_id") is not None:
        unknown = pc.invert(pc.fill_null(pc.is_in(cols["item_id"], catalog_ids), False))
        count = int(pc.sum(unknown).as_py() or 0)
        s.values["unknown_item_rate"] = count / n
        if count:
            s.examples["unknown_item_rate"] = _examples(table, unknown, n_ex)
    if n and cols.get("user_id") is not None:
        per_user = pa.table({"user_id": cols["user_id"]}).group_by("user_id").aggregate([([], "count_all")])
        top = per_user.sort_by([("count_all", "descending")]).slice(0, n_ex)
        s.values["max_events_per_user"] = int(top["count_all"][0].as_py())
        s.examples["max_events_per_user"] = top.to_pylist()

    k = p.volume_history_days
    if len(history) >= k:
        mean = float(np.mean(history[-k:]))
        s.values["volume_ratio"] = n / mean if mean else None
        s.examples["volume_ratio"] = [{"events": n, "trailing_mean": round(mean, 1), "days": k}]
    else:
        s.notes.append(f"events_day_volume skipped: {len(history)} of {k} days of history")
    return s


def _schema_stats(table: pa.Table, s: Stats) -> list[str]:
    """The contract's columns: missing ones and wrong types into `s`; returns the missing names."""
    expected = {f.name: f.type for f in schema.EVENTS_SCHEMA}
    missing = [c for c in expected if c not in table.column_names]
    s.values["missing_columns"] = len(missing)
    if missing:
        s.examples["missing_columns"] = [{"missing": missing, "found": table.column_names}]
    wrong = [{"column": c, "type": str(table[c].type), "expected": str(typ)} for c, typ in expected.items()
             if c in table.column_names and not _type_ok(table[c].type, typ)]
    s.values["wrong_types"] = len(wrong)
    if wrong:
        s.examples["wrong_types"] = wrong
    return missing


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual) and actual.tz in ("UTC", "+00:00", "Etc/UTC")
    return pa.types.is_string(actual) or pa.types.is_large_string(actual)


def catalog_stats(table: pa.Table, day: str, cfg: ValidateConfig) -> Stats:
    """Statistics of one day's catalog delta (checks on an empty delta pass vacuously)."""
    p, n_ex, s = cfg.profile, cfg.examples, Stats()
    missing = [c for c in schema.CATALOG_REQUIRED if c not in table.column_names]
    s.values["catalog_missing_columns"] = len(missing)
    if missing:
        s.examples["catalog_missing_columns"] = [{"missing": missing, "found": table.column_names}]
        return s
    n = table.num_rows
    ids = _string(table, "item_id")
    s.values["catalog_duplicate_ids"] = n - len(pc.unique(ids))
    if s.values["catalog_duplicate_ids"]:
        counts = pa.table({"item_id": ids}).group_by("item_id").aggregate([([], "count_all")])
        s.examples["catalog_duplicate_ids"] = counts.filter(pc.greater(counts["count_all"], 1)).slice(0, n_ex).to_pylist()
    title = pc.fill_null(_string(table, "title"), "")
    text = pc.fill_null(_string(table, "text"), "") if "text" in table.column_names else pa.chunked_array([pa.array([""] * n, pa.string())])

    def flag_rate(stat: str, mask) -> None:
        count = int(pc.sum(mask).as_py() or 0)
        s.values[stat] = count / n if n else None
        if count:
            s.examples[stat] = _examples(table, mask, n_ex)

    def flag_count(stat: str, mask) -> None:
        count = int(pc.sum(mask).as_py() or 0)
        s.values[stat] = count
        if count:
            s.examples[stat] = _examples(table, mask, n_ex)

    empty = pc.and_(_blank(title), _blank(text))
    s.values["catalog_text_non_empty_rate"] = 1 - int(pc.sum(empty).as_py() or 0) / n if n else None
    if n and pc.any(empty).as_py():
        s.examples["catalog_text_non_empty_rate"] = _examples(table, empty, n_ex)
    length = pc.add(pc.utf8_length(title), pc.utf8_length(text))
    flag_rate("catalog_text_length_violation_rate",
              pc.or_(pc.less(length, p.text_min_chars), pc.greater(length, p.text_max_chars)))
    flag_count("catalog_dirty_text", pc.or_(pc.match_substring_regex(title, DIRTY_TEXT),
                                            pc.match_substring_regex(text, DIRTY_TEXT)))
    if pa.types.is_timestamp(table["published_at"].type):
        pub = pc.cast(table["published_at"], pa.timestamp("us", tz="UTC"))
        _, end = schema.day_bounds(day)
        lo = dt.datetime.fromisoformat(p.published_after).replace(tzinfo=dt.timezone.utc)
        bad = pc.or_(pc.is_null(pub), pc.or_(pc.less(pub, pa.scalar(lo, pub.type)),
                                             pc.greater_equal(pub, pa.scalar(end.to_pydatetime(), pub.type))))
        flag_count("catalog_bad_published_at", pc.fill_null(bad, True))
    else:
        s.values["catalog_bad_published_at"] = n
        s.examples["catalog_bad_published_at"] = [{"type": str(table["published_at"].type)}]
    return s


def sequence_stats(summary: dict, tasks: tuple[str, ...]) -> Stats:
    """Statistics of a sequences build (training/prep/sequences.py summary)."""
    s = Stats()
    allseq = summary["sequences"]["all_scene"]
    s.values["median_length"] = allseq["length_median"]
    s.values["truncated_share"] = allseq["truncated_users_share"]
    users = allseq["users"] or 1
    for t in tasks:
        s.values[f"task_coverage_{t}"] = summary["sequences"][f"task={t}"]["users"] / users
    return s
