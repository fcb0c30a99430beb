"""The daily gate: good days pass; each kind of broken day fails with the expected check named, is
quarantined without a byte of raw data changing, and drops out of the next sequences build until
an operator releases it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest import ingest, synth
from core import schema
from core.errors import PreciseError
from core.settings import Settings
from tests.conftest import run_cli, write_params
from training.prep import sequences
from validation import manifest, validate

HISTORY_DAYS = 8  # > volume_history_days, so the volume check is active on the day under test


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A project with 8 good days ingested and validated, and the 9th day's drop in landing/."""
    root = tmp_path_factory.mktemp("gate")
    s = Settings.load(write_params(root))
    synth.run(s.synth, s.paths.landing, days=HISTORY_DAYS + 1)
    days = ingest.landing_days(s.paths.landing)
    ingest.run(s, days=days[:HISTORY_DAYS])
    results, metrics, _ = validate.run_all(s)
    assert [r.status for r in results] == ["passed"] * HISTORY_DAYS
    return root


@pytest.fixture
def project(base, tmp_path) -> Settings:
    root = tmp_path / "p"
    shutil.copytree(base, root)
    return Settings.load(root / "params.yaml")


def _day(s: Settings) -> str:
    return ingest.landing_days(s.paths.landing)[-1]


def _good(s: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 9th day's events and catalog delta, as the contract types."""
    drop = s.paths.landing / f"date={_day(s)}"
    events = pd.read_parquet(drop / "events.parquet")
    events["ts"] = events["ts"].astype("datetime64[us, UTC]")
    catalog = pd.read_parquet(drop / "catalog.parquet")
    catalog["published_at"] = catalog["published_at"].astype("datetime64[us, UTC]")
    return events, catalog


def _write(s: Settings, day: str, events, catalog=None) -> None:
    """Write partitions directly (as a foreign writer or contract drift would), bypassing ingest."""
    for root, frame in ((s.paths.events, events), (s.paths.catalog, catalog)):
        if frame is None:
            continue
        folder = schema.partition_dir(root, day)
        folder.mkdir(parents=True, exist_ok=True)
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, folder / schema.PART_FILE)


def _hashes(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


def test_good_history_passed_with_volume_check_skipped_at_first(project):
    entries = manifest.read(project.paths.manifest)
    assert {e["status"] for e in entries.values()} == {"passed"}
    first = json.loads(Path(entries[min(entries)]["result"]).read_text())
    assert any("events_day_volume skipped: 0 of 7" in n for n in first["notes"])
    last = json.loads(Path(entries[max(entries)]["result"]).read_text())
    assert not any("skipped" in n for n in last["notes"])
    assert {c["check"] for c in last["checks"]} >= {"events_ts_in_day", "catalog_clean_text"}


def test_good_day_passes(project):
    events, catalog = _good(project)
    _write(project, _day(project), events, catalog)
    result, docs = validate.run_date(project, _day(project))
    assert result.status == "passed", validate.summary(result)
    assert docs.is_file() and docs.name == "index.html"


def _bad_cases(now: dt.datetime):
    def missing_column(e, c):
        return e.drop(columns=["scene"]), c

    def wrong_type(e, c):
        return e.assign(ts=e["ts"].astype(str)), c

    def null_ids(e, c):
        e = e.copy()
        e.loc[e.index[:5], "user_id"] = None
        return e, c

    def unknown_scene(e, c):
        e = e.copy()
        e.loc[e.index[:3], "scene"] = "podcast"
        return e, c

    def future(e, c):
        return e.assign(ts=pd.Timestamp(now + dt.timedelta(days=2)).floor("s")), c

    def other_day(e, c):
        e = e.copy()
        e.loc[e.index[:10], "ts"] = e["ts"].iloc[:10] - pd.Timedelta(days=1)
        return e, c

    def duplicates(e, c):
        return pd.concat([e, e.iloc[: len(e) // 10]], ignore_index=True), c

    def unknown_items(e, c):
        e = e.copy()
        e.loc[e.index[: len(e) // 10], "item_id"] = [f"ghost-{i}" for i in range(len(e) // 10)]
        return e, c

    def empty_day(e, c):
        return e.iloc[:0], c

    def volume_spike(e, c):
        copies = [e.assign(user_id=e["user_id"] + f"-copy{k}") for k in range(10)]
        return pd.concat(copies, ignore_index=True), c

    def empty_titles(e, c):
        return e, c.assign(title="", text=None)

    def control_bytes(e, c):
        c = c.copy()
        c.loc[c.index[:2], "title"] = "Bell\x07 and \ufffd broken"
        return e, c

    def one_bot(e, c):
        start = e["ts"].min().floor("D")
        bot = pd.DataFrame({
            "user_id": "bot-1",
            "item_id": e["item_id"].sample(100_000, replace=True, random_state=0).to_numpy(),
            "scene": "article",
            "action": "click",
            "ts": start + pd.to_timedelta(range(100_000), unit="s") * 0.8,
        })
        return pd.concat([e, bot], ignore_index=True), c

    return {
        "missing column": (missing_column, "events_columns"),
        "wrong type": (wrong_type, "events_types"),
        "null ids": (null_ids, "events_user_id_not_null"),
        "unknown scene": (unknown_scene, "events_scene_in_set"),
        "future timestamps": (future, "events_ts_not_future"),
        "timestamps from another day": (other_day, "events_ts_in_day"),
        "burst of duplicated rows": (duplicates, "events_duplicate_rate"),
        "unknown items over tolerance": (unknown_items, "events_unknown_item_rate"),
        "empty day": (empty_day, "events_not_empty"),
        "10x volume spike": (volume_spike, "events_day_volume"),
        "flood of empty titles": (empty_titles, "catalog_text_non_empty"),
        "text with control bytes": (control_bytes, "catalog_clean_text"),
        "one user with 100k events": (one_bot, "events_per_user_bounded"),
    }


@pytest.mark.parametrize("case", list(_bad_cases(dt.datetime.now(dt.timezone.utc))))
def test_bad_day_is_quarantined_with_the_check_named(project, case):
    now = dt.datetime.now(dt.timezone.utc)
    corrupt, expected = _bad_cases(now)[case]
    events, catalog = corrupt(*_good(project))
    day = _day(project)
    _write(project, day, events, catalog)
    raw_before = _hashes(project.paths.events, project.paths.catalog, project.paths.landing)

    result, _ = validate.run_date(project, day)

    assert result.status == "quarantined"
    assert expected in result.failed, validate.summary(result)
    assert _hashes(project.paths.events, project.paths.catalog, project.paths.landing) == raw_before
    entry = manifest.read(project.paths.manifest)[day]
    assert entry["status"] == "quarantined" and expected in entry["failed"]
    kept = json.loads(Path(entry["result"]).read_text())
    failed = [c for c in kept["checks"] if c["check"] == expected]
    assert failed and not failed[0]["success"]
    if expected not in ("events_columns", "events_types", "events_day_volume", "events_not_empty"):
        assert failed[0]["examples"], "an operator sees a few offending rows"


def test_quarantine_release_and_sequences(project):
    events, catalog = _good(project)
    day = _day(project)
    bad = events.copy()
    bad.loc[bad.index[:20], "scene"] = "podcast"
    _write(project, day, bad, catalog)
    result, _ = validate.run_date(project, day)
    assert result.status == "quarantined"
    assert day not in manifest.good_days(project)
    assert day not in sequences.main(project)["days"]

    with pytest.raises(PreciseError, match="needs a --reason"):
        validate.release(project, day, " ")
    entry = validate.release(project, day, "podcast scene launched today", by="ops@example")
    assert entry["status"] == "released" and entry["released_by"] == "ops@example"
    assert day in sequences.main(project)["days"]
    # Re-validating the same bytes keeps the operator's decision...
    assert validate.run_date(project, day)[0].status == "released"
    with pytest.raises(PreciseError, match="not quarantined"):
        validate.release(project, day, "again")
    # ...but new bytes for the day are judged afresh.
    _write(project, day, bad.iloc[:-1], catalog)
    results, metrics, _ = validate.run_all(project)
    assert [r.day for r in results] == [day] and results[0].status == "quarantined"
    assert metrics["quarantined_days"] == [day]


def test_warning_severity_reports_but_keeps_the_day(project):
    events, catalog = _good(project)
    day = _day(project)
    catalog = catalog.assign(title="x" * 6000)  # every item too long: a warning by default
    _write(project, day, events, catalog)
    result, _ = validate.run_date(project, day)
    assert result.status == "warning" and result.warnings == ["catalog_text_length"]
    assert day in manifest.good_days(project)


def test_all_validates_only_new_days_and_exits_zero(project):
    ingest.run(project, days=[_day(project)])
    results, metrics, docs = validate.run_all(project)
    assert [r.day for r in results] == [_day(project)]
    assert metrics["passed"] == HISTORY_DAYS + 1 and metrics["validated_now"] == 1
    assert validate.run_all(project)[0] == []
    assert json.loads((project.paths.metrics / "validate.json").read_text())["days"] == HISTORY_DAYS + 1


def test_cli_on_a_broken_day(project):
    events, catalog = _good(project)
    day = _day(project)
    _write(project, day, events.assign(action="purchase"), catalog)
    root = project.paths.root
    proc = run_cli("validate", "--date", day, cwd=root, check=False)
    assert proc.returncode == 1
    assert "QUARANTINED" in proc.stdout and "events_action_in_set" in proc.stdout
    assert "Data Docs:" in proc.stdout and "index.html" in proc.stdout
    assert "precise validate release" in proc.stderr
    proc = run_cli("validate", "release", "--date", day, "--reason", "new action, reviewed", cwd=root)
    assert json.loads(proc.stdout)["status"] == "released"
    proc = run_cli("validate", "--all", cwd=root)
    assert json.loads(proc.stdout)["released"] == 1


def test_profiles_change_the_bounds(tmp_path):
    s = Settings.load(write_params(tmp_path, validate={"profile": "food_kitchen"}))
    assert s.validate.profile.scenes == ("food", "kitchen")
    with pytest.raises(PreciseError, match="is not one of validate.profiles"):
        Settings.load(write_params(tmp_path, validate={"profile": "nope"}))
    s = Settings.load(write_params(tmp_path, validate={"severity": {"catalog_text_length": "error"}}))
    assert s.validate.severity_of("catalog_text_length", "warning") == "error"
