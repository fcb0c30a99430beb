"""Ingest: a landing drop -> contract partitions, a rejects file, `dvc add` + `dvc push`.

`precise ingest --date D` reads `landing/date=D/{events,catalog}.{parquet,csv}` (never modifying
it), enforces the data contract (core/schema.py) row by row and writes, each atomically:

    data/events/date=D/part-0.parquet     rows that meet the contract
    data/catalog/date=D/part-0.parquet    the day's catalog delta (empty if the drop has none)
    data/rejects/date=D/                  report.json (counts, reasons, source hashes) and
                                          events.parquet / catalog.parquet of rejected rows

Rows that break the contract (undecodable bytes, malformed CSV lines, missing or null-like ids
such as `null` or `-`, unparsable times, times before `ingest.earliest` or in the future) are
rejected with a reason and counted, never dropped silently. Input that cannot be used at all (no events file, unreadable or empty file, a missing required column, no valid row) stops with
an error naming the problem and writes nothing. Semantic checks (known scenes, timestamps inside
the day, duplicates...) belong to the validate stage, which sees the partitions.

A day whose drop is unchanged since its last ingest (same source hashes) is skipped; `--force`
re-ingests it. Re-ingesting the same drop writes byte-identical partitions.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ingest import versioning
from ingest.readers import RawFrame, find_file, missing_values, parse_timestamps, read_raw
from core import schema
from core.atomic import atomic_dir, write_json
from core.errors import PreciseError
from core.hashing import sha256_file
from core.ids import normalize_ids, normalize_text
from core.settings import IngestConfig, Settings, parse_date

log = logging.getLogger(__name__)

_LANDING_DAY = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class DayReport:
    day: str
    status: str  # "ingested" or "unchanged"
    events: int
    catalog: int
    rejected_events: int
    rejected_catalog: int
    reasons: dict[str, int]


def landing_days(landing: Path) -> list[str]:
    landing = Path(landing)
    if not landing.is_dir():
        return []
    return sorted(m.group(1) for p in landing.iterdir() if p.is_dir() and (m := _LANDING_DAY.match(p.name)))


def _rejects(raw: RawFrame, reason: np.ndarray) -> pd.DataFrame:
    """Rejected rows with their reason and 1-based data row number, values kept as text."""
    rows = np.flatnonzero(reason != "")
    out = raw.frame.iloc[rows].astype("string").reset_index(drop=True)
    out.insert(0, "reason", reason[rows])
    out.insert(0, "row", rows + 1)
    if raw.malformed:
        bad = pd.DataFrame(
            {
                "row": [line for line, _ in raw.malformed],
                "reason": "malformed line",
                "raw_line": [text for _, text in raw.malformed],
            }
        )
        out = pd.concat([out, bad], ignore_index=True)
    return out.astype({"row": "int64"})


def _require(raw: RawFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in raw.frame.columns]
    if missing:
        found = ", ".join(map(str, raw.frame.columns)) or "none"
        raise PreciseError(f"{path}: missing required column(s) {', '.join(missing)} (found: {found})")


def _first_reason(n: int, checks: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Per row, the first failed check's name, or '' when every check passed."""
    reason = np.full(n, "", dtype=object)
    for name, failed in checks:
        reason[(reason == "") & failed] = name
    return reason


def null_like(values: pd.Series, tokens: tuple[str, ...]) -> np.ndarray:
    """True where a value, trimmed, is one of `tokens` (strings such as `null` or `-` that mean missing)."""
    if not tokens or not (values.dtype == object or pd.api.types.is_string_dtype(values)):
        return np.zeros(len(values), dtype=bool)
    return values.astype("string").str.strip().isin(tokens).to_numpy(dtype=bool, na_value=False)


def implausible_times(ts: pd.Series, cfg: IngestConfig) -> np.ndarray:
    """True where a parsed time lies before `cfg.earliest` or past now + `cfg.future_hours`."""
    earliest = pd.Timestamp(cfg.earliest, tz="UTC")
    latest = pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=cfg.future_hours)
    return (ts.notna() & ((ts < earliest) | (ts > latest))).to_numpy(dtype=bool)


def enforce_events(raw: RawFrame, path: Path, cfg: IngestConfig = IngestConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract check of an events file -> (valid rows in contract types, rejected rows).

    Reasons, first failed wins: invalid bytes, a missing value, a control character in an id, a
    null-like id (`cfg.null_tokens`), an unparsable time, a time outside [`cfg.earliest`, now +
    `cfg.future_hours`]. Ids are normalised first (core/ids.py); rejected rows keep the raw values.
    """
    _require(raw, schema.EVENT_COLUMNS, path)
    df = raw.frame
    keys = ("user_id", "item_id", "scene", "action")
    ids = {c: normalize_ids(df[c]) for c in keys}
    ts = parse_timestamps(df["ts"])
    checks = [("invalid UTF-8 bytes", raw.bad_bytes)]
    checks += [(f"missing {c}", missing_values(ids[c][0] if c in ids else df[c])) for c in (*keys, "ts")]
    checks += [(f"control character in {c}", ids[c][1]) for c in keys]
    checks += [(f"null-like {c}", null_like(ids[c][0], cfg.null_tokens)) for c in keys]
    checks.append(("unparsable ts", ts.isna().to_numpy()))
    checks.append(("implausible ts", implausible_times(ts, cfg)))
    reason = _first_reason(len(df), checks)
    ok = reason == ""
    good = pd.DataFrame({c: ids[c][0][ok].astype(str).to_numpy() for c in keys})
    good["ts"] = ts[ok].reset_index(drop=True)
    return good, _rejects(raw, reason)


def enforce_catalog(raw: RawFrame, path: Path, cfg: IngestConfig = IngestConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract check of a catalog delta -> (valid rows, rejected rows). `text` is optional."""
    _require(raw, schema.CATALOG_REQUIRED, path)
    df = raw.frame
    keys = ("item_id", "scene")
    ids = {c: normalize_ids(df[c]) for c in keys}
    published = parse_timestamps(df["published_at"])
    checks = [("invalid UTF-8 bytes", raw.bad_bytes)]
    checks += [(f"missing {c}", missing_values(ids[c][0] if c in ids else df[c])) for c in (*keys, "published_at")]
    checks += [(f"control character in {c}", ids[c][1]) for c in keys]
    checks += [(f"null-like {c}", null_like(ids[c][0], cfg.null_tokens)) for c in keys]
    checks.append(("unparsable published_at", published.isna().to_numpy()))
    reason = _first_reason(len(df), checks)
    ok = reason == ""
    good = pd.DataFrame({c: ids[c][0][ok].astype(str).to_numpy() for c in keys})
    good["title"] = normalize_text(df.loc[ok, "title"]).fillna("").astype(str).to_numpy()
    text = df["text"] if "text" in df.columns else pd.Series(None, index=df.index, dtype=object)
    good["text"] = normalize_text(text[ok]).to_numpy()
    good["published_at"] = published[ok].reset_index(drop=True)
    return good, _rejects(raw, reason)


def _reason_counts(*frames: pd.DataFrame) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in frames:
        for reason, n in f["reason"].value_counts().items() if len(f) else []:
            counts[reason] = counts.get(reason, 0) + int(n)
    return dict(sorted(counts.items()))


def ingest_day(settings: Settings, day: str, force: bool = False) -> tuple[DayReport, list[Path]]:
    """Ingest one drop. Returns its report and the partition folders written (for DVC)."""
    parse_date(day)
    paths = settings.paths
    drop = paths.landing / f"date={day}"
    if not drop.is_dir():
        raise PreciseError(f"no drop for {day}: {drop} does not exist")
    events_path = find_file(drop, "events")
    if events_path is None:
        raise PreciseError(f"{drop}: no events file (expected events.parquet or events.csv)")
    catalog_path = find_file(drop, "catalog")
    sources = {p.name: sha256_file(p) for p in (events_path, catalog_path) if p is not None}

    report_path = schema.partition_dir(paths.rejects, day) / "report.json"
    if not force and report_path.is_file() and day in schema.list_days(paths.events):
        previous = json.loads(report_path.read_text(encoding="utf-8"))
        if previous.get("sources") == sources:
            report = DayReport(**{**previous["summary"], "status": "unchanged"})
            # A crash between writing and `dvc add` leaves partitions without a .dvc file.
            unversioned = [
                schema.partition_dir(table, day)
                for table in (paths.rejects, paths.catalog, paths.events)
                if not schema.dvc_file(table, day).exists()
            ]
            return report, unversioned if settings.ingest.dvc else []

    events, event_rejects = enforce_events(read_raw(events_path), events_path, settings.ingest)
    if events.empty:
        reasons = _reason_counts(event_rejects)
        raise PreciseError(f"{events_path}: no valid event rows" + (f" (rejected: {reasons})" if reasons else ""))
    if catalog_path is not None:
        catalog, catalog_rejects = enforce_catalog(read_raw(catalog_path), catalog_path, settings.ingest)
    else:
        catalog = schema.CATALOG_SCHEMA.empty_table().to_pandas()
        catalog_rejects = pd.DataFrame({"row": pd.Series(dtype="int64"), "reason": pd.Series(dtype=str)})

    summary = DayReport(
        day=day,
        status="ingested",
        events=len(events),
        catalog=len(catalog),
        rejected_events=len(event_rejects),
        rejected_catalog=len(catalog_rejects),
        reasons=_reason_counts(event_rejects, catalog_rejects),
    )
    # Rejects and catalog first, events last: a day counts as ingested once its events exist.
    rejects_dir = schema.partition_dir(paths.rejects, day)
    with atomic_dir(rejects_dir) as tmp:
        event_rejects.to_parquet(tmp / "events.parquet", index=False)
        catalog_rejects.to_parquet(tmp / "catalog.parquet", index=False)
        write_json(tmp / "report.json", {"day": day, "sources": sources, "summary": summary.__dict__})
    written = [rejects_dir]
    for table, frame, table_schema in (
        (paths.catalog, catalog, schema.CATALOG_SCHEMA),
        (paths.events, events, schema.EVENTS_SCHEMA),
    ):
        folder = schema.partition_dir(table, day)
        with atomic_dir(folder) as tmp:
            schema.write_partition(frame, table_schema, tmp)
        written.append(folder)
    return summary, written


def run(settings: Settings, days: list[str] | None = None, force: bool = False) -> list[DayReport]:
    """Ingest the given days (default: every drop in landing/), then version what changed."""
    if days is None:
        days = landing_days(settings.paths.landing)
        if not days:
            raise PreciseError(
                f"no drops in {settings.paths.landing} (expected folders date=YYYY-MM-DD); "
                "run `precise data synth` or `precise data import ...` first"
            )
    if settings.ingest.dvc:
        versioning.require_repo(settings.paths.root)
    reports, written, failed = [], [], {}
    for day in tqdm(days, desc="ingest", unit="day", disable=None if len(days) > 1 else True):
        try:
            report, folders = ingest_day(settings, day, force=force)
        except PreciseError as exc:  # one bad drop must not hold back the others
            failed[day] = str(exc)
            continue
        reports.append(report)
        written += folders
    if settings.ingest.dvc:
        versioning.add(settings.paths.root, written)
        if settings.ingest.push:
            # Every partition of these days, not only the new ones: a push that failed before is
            # retried, and DVC moves only what the remote lacks.
            done = [r.day for r in reports]
            versioning.push(settings.paths.root, [
                schema.partition_dir(table, d)
                for d in done for table in (settings.paths.rejects, settings.paths.catalog, settings.paths.events)
            ])
        log.info("versioned %d new partitions with DVC", len(written))
    if failed:
        lines = "\n".join(f"  {d}: {msg}" for d, msg in failed.items())
        raise PreciseError(f"{len(failed)} of {len(days)} drop(s) could not be ingested (the others were):\n{lines}")
    return reports
