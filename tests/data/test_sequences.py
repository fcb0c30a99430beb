"""Sequences: per-user order, truncation to the most recent, task selection, readable days only."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ingest import ingest, synth
from core import schema
from core.errors import PreciseError
from training.prep import sequences
from validation import manifest, validate


def _events(rows):
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "scene", "action", "ts"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[us, UTC]")
    df["date"] = df["ts"].dt.strftime("%Y-%m-%d")
    return df


def test_build_orders_truncates_and_keeps_ties_in_file_order():
    ev = _events(
        [
            ("b", "x", "s", "click", "2026-01-01T10:00Z"),
            ("a", "3", "s", "click", "2026-01-02T10:00Z"),
            ("a", "1", "s", "click", "2026-01-01T10:00Z"),
            ("a", "2a", "t", "click", "2026-01-01T11:00Z"),
            ("a", "2b", "t", "share", "2026-01-01T11:00Z"),  # same time: file order kept
        ]
    )
    table = sequences.build(ev, max_len=3).to_pandas().set_index("user_id")
    assert list(table.index) == ["a", "b"]
    assert list(table.loc["a", "item_ids"]) == ["2a", "2b", "3"]
    assert list(table.loc["a", "actions"]) == ["click", "share", "click"]
    assert table.loc["a", "n_total"] == 4 and table.loc["a", "last_day"] == "2026-01-02"
    assert list(table.loc["b", "item_ids"]) == ["x"]


def test_build_empty():
    assert sequences.build(_events([]), max_len=5).num_rows == 0


def test_stage_on_synthetic_days(settings):
    synth.run(settings.synth, settings.paths.landing)
    ingest.run(settings)
    validate.run_all(settings)
    summary = sequences.main(settings)
    days = schema.list_days(settings.paths.events)
    assert summary["date"] == days[-1] and summary["days"] == days
    metrics = json.loads((settings.paths.metrics / "sequences.json").read_text())
    assert metrics == json.loads(json.dumps(summary, default=str))
    assert metrics["checks"]["sequences_median_length"]["success"]
    events = schema.read_events(settings.paths.data, days)
    allseq = schema.read_sequences(settings.paths.sequences)
    clicks = events[events["action"] == "click"]
    assert allseq["n_total"].sum() == len(clicks)
    for task in settings.tasks:
        seq = schema.read_sequences(settings.paths.sequences, f"task={task.name}")
        kept = [task.keeps(s, a) for s, a in zip(events["scene"], events["action"])]
        assert seq["n_total"].sum() == sum(kept)
        flat_actions = {a for actions in seq["actions"] for a in actions}
        assert flat_actions <= set(task.actions)
    # Sequences as of an earlier day use only the days up to it.
    early = sequences.main(settings, days[1])
    assert early["days"] == days[:2]


def test_manifest_gates_the_days(settings):
    synth.run(settings.synth, settings.paths.landing, days=3)
    ingest.run(settings)
    days = schema.list_days(settings.paths.events)
    settings.paths.manifest.parent.mkdir(parents=True)
    settings.paths.manifest.write_text(json.dumps({"days": {
        days[0]: {"status": "passed"}, days[1]: {"status": "quarantined"}, days[2]: {"status": "released"}}}))
    assert manifest.good_days(settings) == [days[0], days[2]]
    assert sequences.main(settings)["days"] == [days[0], days[2]]
    settings.paths.manifest.write_text("{broken")
    with pytest.raises(PreciseError, match="not a valid validation manifest"):
        manifest.good_days(settings)


def test_no_days_is_a_readable_error(settings):
    with pytest.raises(PreciseError, match="no ingested days"):
        sequences.main(settings)


def test_unvalidated_days_are_not_read(settings):
    synth.run(settings.synth, settings.paths.landing, days=1)
    ingest.run(settings)
    with pytest.raises(PreciseError, match="run `precise validate --all` first"):
        sequences.main(settings)


def test_local_engine_in_user_buckets_gives_the_same_tables(settings):
    """Bounded memory: users split into buckets of about `batch_events` events, a bucket at a time,
    give the tables of one pass (whole users per bucket, rows sorted by user)."""
    synth.run(settings.synth, settings.paths.landing)
    ingest.run(settings)
    days = schema.list_days(settings.paths.events)
    selections = {"all_scene": (("click",), None), "task": (("click", "share"), ("article",))}
    one = sequences.build_local(settings.paths.events, days, selections, 5, batch_events=10**9)
    events = sum(len(pd.read_parquet(schema.partition_dir(settings.paths.events, d))) for d in days)
    many = sequences.build_local(settings.paths.events, days, selections, 5, batch_events=events // 4)
    for name in selections:
        assert many[name].equals(one[name]), name
    users = pa.array([f"u{i}" for i in range(3000)])
    buckets = sequences.user_bucket(users, 4)
    assert set(buckets.tolist()) == {0, 1, 2, 3} and np.bincount(buckets).min() > 600  # spread out
    # A user's bucket does not depend on where its id sits (slices, chunks, other rows).
    assert sequences.user_bucket(users.slice(7, 5), 4).tolist() == buckets[7:12].tolist()
    assert sequences.user_bucket(pa.chunked_array([users[:2], users[2:4]]), 4).tolist() == buckets[:4].tolist()
