"""The validate stage: a daily gate that loses nothing (ARCHITECTURE: validation manifest).

    precise validate --date D            validate one day; a bad day is quarantined, exit code 1
    precise validate --all               every day not yet validated (or re-ingested since); exit 0
    precise validate release --date D --reason R [--by NAME]
                                         an operator accepts a quarantined day after review

For each day: statistics of the events partition and of the catalog delta (validation/checks.py),
checked by the Great Expectations suites (validation/suites.py). `error` failures quarantine the
day, `warning` failures are reported and the day stays readable. Written atomically:

    data/validation/manifest.json              the manifest: status per day, who released what
    data/validation/results/date=D.json        the full result: every check, observed values,
                                               a few offending rows, notes, GX's own result
    data/metrics/validate.json                 counts per status (DVC metrics)
    var/gx/gx/uncommitted/data_docs/local_site/index.html   Great Expectations Data Docs

Raw partitions are only read, never modified or deleted; quarantine is a status in the manifest,
and every later stage reads days through `validation.manifest.good_days`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import schema
from core.atomic import write_json
from core.errors import PreciseError
from core.hashing import sha256_file
from core.settings import Settings, parse_date
from validation import manifest
from validation.checks import catalog_stats, checks, event_stats
from validation.suites import Gate, Outcome

log = logging.getLogger(__name__)


@dataclass
class DayResult:
    day: str
    status: str
    outcomes: list[Outcome]
    examples: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    result_path: str = ""

    @property
    def failed(self) -> list[str]:
        return [o.check for o in self.outcomes if not o.success and o.severity == "error"]

    @property
    def warnings(self) -> list[str]:
        return [o.check for o in self.outcomes if not o.success and o.severity == "warning"]


def partition_sha256(settings: Settings, day: str) -> dict[str, str | None]:
    """What the result of a day depends on: the bytes of its partitions (change detection, with
    or without DVC). The day's `data_version` is its events partition's DVC md5."""
    version = {}
    for table, root in (("events", settings.paths.events), ("catalog", settings.paths.catalog)):
        path = schema.partition_dir(root, day) / schema.PART_FILE
        version[table] = sha256_file(path) if path.is_file() else None
    return version


class CatalogIds:
    """Item ids of the catalog as of a day, loaded incrementally while days advance."""

    def __init__(self, catalog_root: Path):
        self.root = Path(catalog_root)
        self.loaded: list[str] = []
        self.ids = pa.array([], pa.string())

    def as_of(self, day: str) -> pa.Array:
        if self.loaded and day < self.loaded[-1]:
            self.loaded, self.ids = [], pa.array([], pa.string())
        new = [d for d in schema.list_days(self.root) if d <= day and (not self.loaded or d > self.loaded[-1])]
        if new:
            parts = [self.ids] + [
                pq.read_table(schema.partition_dir(self.root, d) / schema.PART_FILE, columns=["item_id"])["item_id"]
                .combine_chunks().cast(pa.string())
                for d in new
            ]
            self.ids = pc.unique(pa.concat_arrays(parts))
            self.loaded += new
        return self.ids


class Validator:
    """Validates days one by one, keeping the manifest, the GX project and the catalog cache."""

    def __init__(self, settings: Settings, now: dt.datetime | None = None):
        self.settings = settings
        self.now = now or dt.datetime.now(dt.timezone.utc)
        task_names = tuple(t.name for t in settings.tasks)
        self.gate = Gate(settings.paths.var / "gx", checks(settings.validate, task_names))
        self.catalog = CatalogIds(settings.paths.catalog)
        self.entries = manifest.read_or_empty(settings.paths.manifest)

    def _history(self, day: str) -> list[int]:
        """Event counts of the readable days before `day` (oldest first)."""
        days = [d for d, e in sorted(self.entries.items()) if d < day and e.get("status") in manifest.READABLE]
        counts = []
        for d in days[-self.settings.validate.profile.volume_history_days:]:
            path = schema.partition_dir(self.settings.paths.events, d) / schema.PART_FILE
            if path.is_file():
                counts.append(pq.ParquetFile(path).metadata.num_rows)
        return counts

    def validate(self, day: str) -> DayResult:
        paths, cfg = self.settings.paths, self.settings.validate
        events_path = schema.partition_dir(paths.events, day) / schema.PART_FILE
        if not events_path.is_file():
            raise PreciseError(f"no events partition for {day} at {events_path}; ingest it first")
        try:
            events = pq.read_table(events_path)
            catalog_path = schema.partition_dir(paths.catalog, day) / schema.PART_FILE
            catalog = pq.read_table(catalog_path) if catalog_path.is_file() else schema.CATALOG_SCHEMA.empty_table()
        except (pa.ArrowInvalid, OSError) as exc:
            raise PreciseError(f"cannot read the partitions of {day}: {exc}") from None
        ev = event_stats(events, day, self.catalog.as_of(day), self._history(day), self.now, cfg)
        cat = catalog_stats(catalog, day, cfg)
        if not catalog_path.is_file():
            cat.notes.append("no catalog delta for this day")
        outcomes, gx_events = self.gate.run("events", ev.values, run_name=f"events-{day}")
        cat_outcomes, gx_catalog = self.gate.run("catalog", cat.values, run_name=f"catalog-{day}")
        outcomes += cat_outcomes
        examples = {**ev.examples, **cat.examples}
        stat_of = {c.name: c.stat for c in self.gate.checks.values()}
        failed_examples = {o.check: examples.get(stat_of[o.check], []) for o in outcomes if not o.success}
        result = DayResult(day, "", outcomes, failed_examples, ev.notes + cat.notes)
        result.status = "quarantined" if result.failed else ("warning" if result.warnings else "passed")

        previous = self.entries.get(day, {})
        version = partition_sha256(self.settings, day)
        data_version = schema.day_data_version(paths.events, day)
        if previous.get("status") == "released" and previous.get("partition_sha256") == version:
            result.status = "released"  # an operator accepted these very bytes
            result.notes.append(f"released by {previous.get('released_by')}: {previous.get('reason')}")

        result_path = paths.data / "validation" / "results" / f"date={day}.json"
        checked_at = self.now.isoformat(timespec="seconds")
        write_json(
            result_path,
            {
                "day": day,
                "status": result.status,
                "profile": cfg.profile_name,
                "checked_at": checked_at,
                "data_version": data_version,
                "partition_sha256": version,
                "checks": [asdict(o) | {"examples": failed_examples.get(o.check, [])} for o in outcomes],
                "notes": result.notes,
                "great_expectations": {"events": gx_events, "catalog": gx_catalog},
            },
        )
        result.result_path = str(result_path)
        entry = {
            "status": result.status,
            "checked_at": checked_at,
            "result": result.result_path,
            "data_version": data_version,
            "partition_sha256": version,
            "failed": result.failed,
            "warnings": result.warnings,
        }
        if result.status == "released":
            entry |= {k: previous[k] for k in ("released_by", "released_at", "reason") if k in previous}
        self.entries[day] = entry
        manifest.write(paths.manifest, self.entries)
        return result

    def pending(self) -> list[str]:
        """Ingested days never validated, or whose partitions changed since."""
        return [
            d for d in schema.list_days(self.settings.paths.events)
            if self.entries.get(d, {}).get("partition_sha256") != partition_sha256(self.settings, d)
        ]


def write_metrics(settings: Settings, entries: dict[str, dict], validated: list[str]) -> dict:
    counts = {s: sum(e["status"] == s for e in entries.values()) for s in manifest.STATUSES}
    metrics = {
        "days": len(entries),
        **counts,
        "validated_now": len(validated),
        "quarantined_days": sorted(d for d, e in entries.items() if e["status"] == "quarantined"),
    }
    write_json(settings.paths.metrics / "validate.json", metrics)
    return metrics


def run_date(settings: Settings, day: str) -> tuple[DayResult, Path]:
    """Validate one day (again). Returns the result and the Data Docs index."""
    day = parse_date(day).isoformat()
    v = Validator(settings)
    result = v.validate(day)
    write_metrics(settings, v.entries, [day])
    return result, v.gate.build_docs()


def day_summary(settings: Settings, day: str) -> dict:
    """The validate stage for one day (`precise.stages`; the Airflow task and `precise pipeline run`
    call it): `run_date` as a summary (status, failed checks, the printable report, Data Docs)."""
    result, docs = run_date(settings, day)
    return {"date": result.day, "status": result.status, "failed": [o.check for o in result.outcomes if not o.success],
            "summary": summary(result), "data_docs": str(docs)}


def run_all(settings: Settings) -> tuple[list[DayResult], dict, Path]:
    """Validate every pending day in date order (the volume check needs earlier days first)."""
    v = Validator(settings)
    pending = v.pending()
    results = [v.validate(d) for d in pending]
    metrics = write_metrics(settings, v.entries, pending)
    return results, metrics, v.gate.build_docs()


def release(settings: Settings, day: str, reason: str, by: str | None = None) -> dict:
    """Accept a quarantined day after review; recorded with who, why and when."""
    day = parse_date(day).isoformat()
    if not reason.strip():
        raise PreciseError("a release needs a --reason")
    entries = manifest.read_or_empty(settings.paths.manifest)
    entry = entries.get(day)
    if entry is None:
        raise PreciseError(f"{day} has not been validated; nothing to release")
    if entry["status"] != "quarantined":
        raise PreciseError(f"{day} is {entry['status']}, not quarantined; nothing to release")
    entry |= {
        "status": "released",
        "released_by": by or getpass.getuser(),
        "released_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "reason": reason,
    }
    manifest.write(settings.paths.manifest, entries)
    write_metrics(settings, entries, [])
    return entry


def summary(result: DayResult) -> str:
    """A readable report of one day: each failed check, what was seen, a few bad rows."""
    lines = [f"{result.day}: {result.status.upper()}"]
    for o in result.outcomes:
        if o.success:
            continue
        bounds = " and ".join(
            b for b in ((f">= {o.min_value:g}" if o.min_value is not None else ""),
                        (f"<= {o.max_value:g}" if o.max_value is not None else "")) if b
        )
        observed = "not computable" if o.observed is None else f"{o.observed:g}"
        lines.append(f"  {o.severity:<7} {o.check}: {o.description}; observed {observed}, expected {bounds}")
        for row in result.examples.get(o.check, []):
            lines.append(f"          e.g. {json.dumps(row, default=str)[:300]}")
    lines += [f"  note: {n}" for n in result.notes]
    lines.append(f"  result: {result.result_path}")
    return "\n".join(lines)
