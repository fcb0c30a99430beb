"""Ingest enforces the contract, rejects bad rows with a reason, refuses unusable input, writes
atomically and idempotently, and never modifies the landing drop."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ingest import ingest, synth
from core import schema
from core.errors import PreciseError


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _drop(settings, day: str, events: bytes | str, catalog: bytes | str | None = None, suffix=".csv") -> Path:
    folder = settings.paths.landing / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    data = events.encode() if isinstance(events, str) else events
    (folder / f"events{suffix}").write_bytes(data)
    if catalog is not None:
        (folder / "catalog.csv").write_bytes(catalog.encode() if isinstance(catalog, str) else catalog)
    return folder


GOOD = (
    "user_id,item_id,scene,action,ts\n"
    "u1,i1,article,click,2026-01-05T10:00:00Z\n"
    "u1,i2,video,click,2026-01-05 11:00:00+02:00\n"
    "u2,i1,article,share,1767607200\n"
)


def test_synthetic_drops_ingest_cleanly(settings):
    synth.run(settings.synth, settings.paths.landing, days=2)
    before = _hashes(settings.paths.landing)
    reports = ingest.run(settings)
    assert [r.status for r in reports] == ["ingested", "ingested"]
    assert all(r.rejected_events == 0 and r.rejected_catalog == 0 for r in reports)
    day = reports[0].day
    table = pq.read_table(schema.partition_dir(settings.paths.events, day) / schema.PART_FILE)
    assert table.schema.equals(schema.EVENTS_SCHEMA)
    assert table.num_rows == reports[0].events
    catalog = schema.read_catalog(settings.paths.data, as_of=day)
    assert len(catalog) == settings.synth.items_per_scene * len(settings.synth.scenes)
    assert _hashes(settings.paths.landing) == before, "landing must never be modified"


def test_bad_rows_are_rejected_with_reasons_never_dropped(settings):
    day = "2026-01-05"
    raw = (
        GOOD
        + ",i3,article,click,2026-01-05T12:00:00Z\n"          # missing user_id
        + "u3,i3,article,click,yesterday-ish\n"               # unparsable ts
        + "u4,i4,article,click\n"                              # malformed line (too few fields)
        + "u5,  ,article,click,2026-01-05T12:00:00Z\n"        # blank item_id
    ).encode() + b"u\xff6,i5,article,click,2026-01-05T13:00:00Z\n"  # undecodable bytes
    _drop(settings, day, raw)
    [report] = ingest.run(settings, days=[day])
    assert report.events == 3
    assert report.rejected_events == 5
    assert report.reasons == {
        "invalid UTF-8 bytes": 1, "malformed line": 1, "missing item_id": 1,
        "missing user_id": 1, "unparsable ts": 1,
    }
    rejects = pd.read_parquet(schema.partition_dir(settings.paths.rejects, day) / "events.parquet")
    assert len(rejects) == 5
    bad_bytes = rejects[rejects["reason"] == "invalid UTF-8 bytes"]
    assert bad_bytes["user_id"].iloc[0] == "u\\xff6", "the raw bytes stay visible in the rejects file"
    events = schema.read_events(settings.paths.data, [day])
    # All timestamps end up in UTC; the +02:00 one is 09:00Z, the epoch one 10:00Z.
    assert sorted(events["ts"].dt.strftime("%H:%M")) == ["09:00", "10:00", "10:00"]
    assert str(events["ts"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        ("user_id,item_id,scene,ts\nu1,i1,a,2026-01-05\n", "missing required column(s) action"),
        ("user_id,item_id,scene,action,ts\n", "no valid event rows"),
        ("user_id,item_id,scene,action,ts\n,,,,\n", "no valid event rows"),
    ],
)
def test_unusable_input_fails_with_a_message_and_writes_nothing(settings, content, message):
    day = "2026-01-05"
    _drop(settings, day, content)
    with pytest.raises(PreciseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest.run(settings, days=[day])
    assert not settings.paths.data.exists() or not any(settings.paths.data.rglob("*.parquet"))


def test_unreadable_and_missing_files(settings):
    day = "2026-01-05"
    _drop(settings, day, b"PAR1 this is not parquet", suffix=".parquet")
    with pytest.raises(PreciseError, match="cannot read the file"):
        ingest.run(settings, days=[day])
    with pytest.raises(PreciseError, match="no drop for 2026-01-06"):
        ingest.run(settings, days=["2026-01-06"])
    with pytest.raises(PreciseError, match="not a date"):
        ingest.run(settings, days=["2026-13-01"])


def test_catalog_contract_and_optional_text(settings):
    day = "2026-01-05"
    catalog = (
        "item_id,scene,title,published_at\n"
        "i1,article,Hello,2026-01-04T00:00:00Z\n"
        "i2,video,,2026-01-05\n"          # empty title is allowed (validation judges it)
        "i3,video,x,not a time\n"         # rejected
    )
    _drop(settings, day, GOOD, catalog)
    [report] = ingest.run(settings, days=[day])
    assert (report.catalog, report.rejected_catalog) == (2, 1)
    cat = schema.read_catalog(settings.paths.data, day)
    assert list(cat["item_id"]) == ["i1", "i2"]
    assert cat["text"].isna().all() and list(cat["title"]) == ["Hello", ""]


def _ingested_good_drop(settings, day: str) -> tuple[Path, Path]:
    """A good drop of `day`, ingested: (its landing folder, its events partition file)."""
    folder = _drop(settings, day, GOOD)
    ingest.run(settings, days=[day])
    return folder, schema.partition_dir(settings.paths.events, day) / schema.PART_FILE


def test_reingest_is_idempotent_and_a_changed_drop_replaces_the_partition(settings):
    day = "2026-01-05"
    folder, part = _ingested_good_drop(settings, day)
    first = part.read_bytes()
    [again] = ingest.run(settings, days=[day])
    assert again.status == "unchanged"
    [forced] = ingest.run(settings, days=[day], force=True)
    assert forced.status == "ingested" and part.read_bytes() == first, "same drop, same bytes"
    (folder / "events.csv").write_text(GOOD + "u9,i9,game,click,2026-01-05T20:00:00Z\n")
    [changed] = ingest.run(settings, days=[day])
    assert changed.status == "ingested" and changed.events == 4


def test_a_failed_reingest_keeps_the_last_good_partition(settings):
    day = "2026-01-05"
    folder, part = _ingested_good_drop(settings, day)
    good = part.read_bytes()
    (folder / "events.csv").write_text("user_id,item_id\nu1,i1\n")
    with pytest.raises(PreciseError):
        ingest.run(settings, days=[day])
    assert part.read_bytes() == good
    assert schema.list_days(settings.paths.events) == [day]
    assert not [p for p in settings.paths.events.iterdir() if p.name.startswith(".")], "no temp leftovers"


def test_interrupted_swap_is_recovered(settings):
    """A crash between the two renames of a partition swap leaves `.old-*`; the next write restores it."""
    from core.atomic import atomic_dir

    target = settings.paths.events / "date=2026-01-05"
    target.mkdir(parents=True)
    (target / "x").write_text("old")
    target.rename(target.parent / ".old-date=2026-01-05")  # as if the process died here
    with pytest.raises(RuntimeError):
        with atomic_dir(target):
            raise RuntimeError("boom")
    assert (target / "x").read_text() == "old"


def test_catalog_as_of_day_takes_the_latest_version(settings):
    _drop(settings, "2026-01-05", GOOD, "item_id,scene,title,published_at\ni1,article,Old,2026-01-05\n")
    _drop(settings, "2026-01-06", GOOD.replace("2026-01-05", "2026-01-06"),
          "item_id,scene,title,published_at\ni1,article,New,2026-01-05\ni2,video,Two,2026-01-06\n")
    ingest.run(settings)
    assert list(schema.read_catalog(settings.paths.data, "2026-01-05")["title"]) == ["Old"]
    assert list(schema.read_catalog(settings.paths.data, "2026-01-06")["title"]) == ["New", "Two"]


def test_one_bad_drop_does_not_hold_back_the_others(settings):
    _drop(settings, "2026-01-05", GOOD)
    _drop(settings, "2026-01-06", "user_id,item_id\nu1,i1\n")
    _drop(settings, "2026-01-07", GOOD.replace("2026-01-05", "2026-01-07"))
    with pytest.raises(PreciseError, match=r"1 of 3 drop\(s\) could not be ingested(.|\n)*2026-01-06: .*missing required"):
        ingest.run(settings)
    assert schema.list_days(settings.paths.events) == ["2026-01-05", "2026-01-07"]
