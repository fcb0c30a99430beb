"""Sequences stage: per-user behaviour sequences as of day D (PRECISE III: S_u and S'_u).

`precise sequences --date D` reads the events of every readable day up to D (the validation
manifest decides; validation/manifest.py) and writes, atomically, into `data/sequences/`:

    all_scene.parquet     S_u: each user's behaviours of `sequences.universal_actions` in every scene
    task=<name>.parquet   S'_u of each task in params.yaml: the behaviours the task keeps

and `data/metrics/sequences.json` (DVC metrics): date, days used, and per file: users, events,
length quantiles, share of users truncated.

Two engines (`sequences.engine`): `local`, Arrow in this process, and `spark`, the same tables
computed by Spark (training/prep/spark.py; `spark.master` in params). Consumers read the files with
`schema.read_sequences`. Schema of every sequence file (`schema.SEQUENCES_SCHEMA`), one row per
user with at least one behaviour, sorted by user_id:

    user_id    string
    item_ids   list<string>        oldest first, the `sequences.max_len` most recent behaviours
    scenes     list<string>        aligned with item_ids
    actions    list<string>        aligned with item_ids
    ts         list<timestamp[us, UTC]>, aligned with item_ids
    n_total    int64               behaviours before truncation to max_len
    last_day   string              data day of the latest behaviour

Events are ordered by time; ties keep their order in the day's partition.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import schema
from core.atomic import atomic_dir, write_json
from core.errors import PreciseError
from core.settings import SequencesConfig, Settings, SparkConfig, Task
from validation import manifest

log = logging.getLogger(__name__)


def build(events: pa.Table | pd.DataFrame, max_len: int) -> pa.Table:
    """Events (user_id, item_id, scene, action, ts, date) -> one row per user, lists oldest first.

    Arrow throughout (no Python objects per event): the sequences stage holds every event of
    every readable day, and Arrow strings take a fraction of pandas' object columns (peak RSS
    in docs/scale.md)."""
    if isinstance(events, pd.DataFrame):
        events = pa.Table.from_pandas(events, preserve_index=False)
    n = events.num_rows
    if n == 0:
        return schema.SEQUENCES_SCHEMA.empty_table()
    # Order: user, then time, then position in the input (day order, file order): ties kept.
    order = pc.sort_indices(events.append_column("_row", pa.array(np.arange(n, dtype=np.int64))),
                            sort_keys=[("user_id", "ascending"), ("ts", "ascending"), ("_row", "ascending")])
    user = events["user_id"].take(order).combine_chunks()
    changed = pc.not_equal(user[1:], user[:-1]).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, changed])
    ends = np.r_[starts[1:], n]
    n_total = (ends - starts).astype(np.int64)
    # Position from the end of each user's run; keep the max_len most recent.
    from_end = np.repeat(ends, n_total) - np.arange(n) - 1
    kept = order.to_numpy()[from_end < max_len]  # input rows, user by user, oldest first
    lengths = np.minimum(n_total, max_len)
    ends_kept = np.cumsum(lengths)
    offsets = pa.array(np.r_[0, ends_kept].astype(np.int32))

    def lists(column: str, typ: pa.DataType) -> pa.ListArray:
        return pa.ListArray.from_arrays(offsets, events[column].take(pa.array(kept)).combine_chunks().cast(typ))

    last_day = events["date"].take(pa.array(kept[ends_kept - 1]))  # the latest kept row of each user
    return pa.table(
        {
            "user_id": user.take(pa.array(starts)),
            "item_ids": lists("item_id", pa.string()),
            "scenes": lists("scene", pa.string()),
            "actions": lists("action", pa.string()),
            "ts": lists("ts", schema.TS),
            "n_total": pa.array(n_total, type=pa.int64()),
            "last_day": last_day.cast(pa.string()),
        }
    )


def stats(table: pa.Table, max_len: int) -> dict:
    lengths = pc.list_value_length(table["item_ids"]).to_numpy(zero_copy_only=False)
    n_total = table["n_total"].to_numpy()
    return {
        "users": table.num_rows,
        "events": int(lengths.sum()),
        "events_before_truncation": int(n_total.sum()),
        "length_p10": float(np.percentile(lengths, 10)) if len(lengths) else 0.0,
        "length_median": float(np.median(lengths)) if len(lengths) else 0.0,
        "length_p90": float(np.percentile(lengths, 90)) if len(lengths) else 0.0,
        "truncated_users_share": float((n_total > max_len).mean()) if len(n_total) else 0.0,
    }


def select(events: pa.Table, actions: tuple[str, ...], scenes: tuple[str, ...] | None) -> pa.Table:
    keep = pc.is_in(events["action"], value_set=pa.array(list(actions), type=pa.string()))
    if scenes is not None:
        keep = pc.and_(keep, pc.is_in(events["scene"], value_set=pa.array(list(scenes), type=pa.string())))
    return events.filter(keep)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: uint64 -> well-spread uint64 (wrapping arithmetic)."""
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        x = (x ^ (x >> np.uint64(shift))) * np.uint64(factor)
    return x ^ (x >> np.uint64(31))


def user_bucket(users: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """A bucket in [0, buckets) for each user id, from a hash of its UTF-8 bytes (each byte times a
    pseudo-random weight of its position, summed, then mixed): the same for a user on every day,
    so that a bucket holds whole users."""
    users = users.combine_chunks() if isinstance(users, pa.ChunkedArray) else users
    users = users.cast(pa.large_string())
    offsets = np.frombuffer(users.buffers()[1], dtype=np.int64)[users.offset:users.offset + len(users) + 1]
    data = np.frombuffer(users.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].astype(np.uint64)
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    with np.errstate(over="ignore"):
        weighted = np.append((data + np.uint64(1)) * _mix(position.astype(np.uint64) + np.uint64(1)), np.uint64(0))
        sums = np.add.reduceat(weighted, np.minimum(starts, len(data)))
        sums[lengths == 0] = 0
        return (_mix(sums + lengths.astype(np.uint64)) % np.uint64(buckets)).astype(np.int64)


def build_local(events_root: Path, days: list[str], selections: dict, max_len: int, batch_events: int) -> dict[str, pa.Table]:
    """The local engine, Arrow in this process. The users are split into buckets of about
    `batch_events` events (a hash of the user id, the same every day); a bucket at a time, every
    readable day's events of its users are read and each selection built, so peak memory follows
    `batch_events` and the output, not the length of the log. One bucket when the log is smaller."""
    total = sum(pq.ParquetFile(schema.partition_file(events_root, d)).metadata.num_rows for d in days)
    buckets = max(1, -(-total // batch_events))
    parts: dict[str, list[pa.Table]] = {name: [] for name in selections}
    for b in range(buckets):
        where = None if buckets == 1 else (lambda t, b=b: pa.array(user_bucket(t["user_id"], buckets) == b))
        events = schema.read_days_table(events_root, days, schema.EVENTS_SCHEMA, where)
        for name, keep in selections.items():
            parts[name].append(build(select(events, *keep), max_len))
        del events
    if buckets == 1:
        return {name: tables[0] for name, tables in parts.items()}
    log.info("local engine: %d events in %d user buckets", total, buckets)
    return {name: pa.concat_tables([t.cast(schema.SEQUENCES_SCHEMA) for t in tables]).sort_by("user_id")
            for name, tables in parts.items()}


def build_spark(events_root: Path, days: list[str], selections: dict, max_len: int, spark_cfg: SparkConfig) -> dict[str, pa.Table]:
    """The Spark engine (training/prep/spark.py): the same tables, sorted and typed as the local ones."""
    from training.prep.spark import build_all, session

    files = [schema.partition_file(events_root, day) for day in days]
    with session(spark_cfg) as spark:
        tables = build_all(spark, files, selections, max_len)
    return {name: t.select(schema.SEQUENCES_SCHEMA.names).cast(schema.SEQUENCES_SCHEMA).sort_by("user_id") for name, t in tables.items()}


def run(
    cfg: SequencesConfig,
    tasks: tuple[Task, ...],
    days: list[str],
    data: Path,
    out: Path,
    metrics: Path,
    check: Callable[[dict], dict] | None = None,
    spark_cfg: SparkConfig | None = None,
) -> dict:
    """Build the all-scene and per-task sequences from `days` of `data/events` into `out`, on
    `cfg.engine` (`local`, or `spark` with `spark_cfg`).

    `check(summary)` runs before anything is written; it may raise to keep the last good output,
    and what it returns is recorded under `checks` in the metrics.
    """
    if not days:
        raise PreciseError("no readable days to build sequences from (none ingested, or all quarantined)")
    selections = {"all_scene": (cfg.universal_actions, None), **{f"task={t.name}": (t.actions, t.scenes) for t in tasks}}
    summary = {"date": days[-1], "days": days, "max_len": cfg.max_len, "engine": cfg.engine, "sequences": {}}
    if cfg.engine == "spark":
        tables = build_spark(Path(data) / "events", days, selections, cfg.max_len, spark_cfg or SparkConfig())
    else:
        tables = build_local(Path(data) / "events", days, selections, cfg.max_len, cfg.batch_events)
    summary["sequences"] = {name: stats(table, cfg.max_len) for name, table in tables.items()}
    if check is not None:
        summary["checks"] = check(summary)
    with atomic_dir(out) as tmp:
        for name, table in tables.items():
            pq.write_table(table, Path(tmp) / f"{name}.parquet", compression="zstd")
    write_json(metrics, summary)
    log.info("sequences as of %s from %d days: %s", days[-1], len(days),
             {k: v["users"] for k, v in summary["sequences"].items()})
    return summary


def main(settings: Settings, date: str | None = None) -> dict:
    """Entry point of the CLI, `dvc repro` and the DAGs."""
    day = manifest.resolve_day(settings, date)
    days = manifest.good_days(settings, up_to=day)
    if day not in days:
        log.warning("day %s is not readable (not ingested or quarantined); building from %s",
                    day, days[-1] if days else "nothing")
    paths = settings.paths
    return run(settings.sequences, settings.tasks, days, paths.data, paths.sequences,
               paths.metrics / "sequences.json", check=lambda summary: _check(settings, summary),
               spark_cfg=settings.spark)


def _check(settings: Settings, summary: dict) -> dict:
    """The sequences suite (validation/checks.py): `error` failures stop the stage."""
    from validation.checks import checks, sequence_stats
    from validation.suites import Gate

    names = tuple(t.name for t in settings.tasks)
    gate = Gate(settings.paths.var / "gx", checks(settings.validate, names))
    outcomes, _ = gate.run("sequences", sequence_stats(summary, names).values, run_name=f"sequences-{summary['date']}")
    failed = [o for o in outcomes if not o.success]
    for o in failed:
        log.warning("sequences check %s (%s) failed: observed %s", o.check, o.severity, o.observed)
    errors = [o.check for o in failed if o.severity == "error"]
    if errors:
        raise PreciseError(f"sequences as of {summary['date']} fail: {', '.join(errors)}; outputs left as they were")
    return {o.check: {"success": o.success, "severity": o.severity, "observed": o.observed} for o in outcomes}
