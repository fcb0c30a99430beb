"""What the Airflow DAGs call: one function per task, each a thin call into the stage function
that `precise <verb>` and `dvc repro` call too. No Airflow import here (the DAG files own it).

**Dates.** The data day D travels explicitly: a manual trigger passes the `date` param; the data
DAG puts D in its Asset event's `extra`; downstream DAGs read it from their triggering events
(`data_day`). A scheduled run of the data DAG without a `date` takes the newest drop in the
landing folder that is not ingested yet (never the run's logical date).

**Quarantine.** A day the gate quarantines fails the data DAG (no Asset event, so nothing
downstream runs for it); a manual run of a downstream DAG on a quarantined day fails at its
first task (`readable_day`; that task has no retry: waiting does not release a day), and the
stages check again (`require_readable`). The next good day continues from the last good state:
the stages read good days only and continue from the newest checkpoints.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

from core.errors import PreciseError
from core.settings import PARAMS_ENV, Settings
from precise import stages

log = logging.getLogger("precise.flows")

REPO = Path(__file__).resolve().parents[1]


# --- shared by the DAG files ------------------------------------------------------------------------
# DVC and the SQLite-backed stores (MLflow, Feast registry, the manifest) take one writer at a
# time: every task that writes them runs in this one-slot pool (`make airflow` creates it).
SERIAL_POOL = "precise_serial"
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

EVENTS = "precise://data/events"
UNIVERSAL = "precise://models/universal"
TARGETED = "precise://models/targeted"


def on_failure(context) -> None:
    """One line in the task log (and the scheduler's) saying what failed and why."""
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    reason = str(exc).splitlines()[0] if exc else "unknown reason"
    logging.getLogger("precise.dags").error("FAILED %s.%s: %s", getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?"), reason)


DEFAULT_ARGS = {
    "owner": "precise",
    "retries": 1,
    "retry_delay": dt.timedelta(minutes=2),
    "on_failure_callback": on_failure,
}


class Quarantined(PreciseError):
    """The day failed validation: downstream work for it must not run."""


def settings() -> Settings:
    return Settings.load(os.environ.get(PARAMS_ENV) or REPO / "params.yaml")


def data_day(params: dict | None, triggering_events: dict | None = None) -> str:
    """D from the manual `date` param, else from the triggering Asset events' extra (newest)."""
    value = (params or {}).get("date")
    if value:
        return schema_date(value)
    days = [e.extra.get("date") for events in (triggering_events or {}).values() for e in events if e.extra.get("date")]
    if days:
        return max(days)
    raise PreciseError("no data day: pass the `date` param (YYYY-MM-DD) when triggering by hand")


def readable_day(params: dict | None, triggering_events: dict | None = None) -> str:
    """`data_day`, refused (Quarantined) unless the manifest lets training read it."""
    day = data_day(params, triggering_events)
    require_readable(day)
    return day


def schema_date(value: str) -> str:
    from core.settings import parse_date

    return parse_date(value).isoformat()


def next_drop(s: Settings) -> str | None:
    """The oldest landing drop not ingested yet (scheduled runs of the data DAG); None when every
    drop is ingested (nothing to do: the DAG run is skipped, not failed)."""
    from ingest import ingest

    from core import schema

    done = set(schema.list_days(s.paths.events))
    todo = [d for d in ingest.landing_days(s.paths.landing) if d not in done]
    return todo[0] if todo else None


# --- precise_data_daily -------------------------------------------------------------------------------


def ingest_day(day: str) -> dict:
    from ingest import ingest

    s = settings()
    [report] = ingest.run(s, days=[day])
    return report.__dict__


def validate_day(day: str) -> dict:
    """The gate; a quarantined day raises with the summary and the Data Docs path."""
    out = stages.call("validate", settings(), day)
    log.info("validation of %s:\n%s\nData Docs: %s", day, out["summary"], out["data_docs"])
    if out["status"] == "quarantined":
        raise Quarantined(f"{day} is quarantined (Data Docs: {out['data_docs']}):\n{out['summary']}")
    return {"date": day, "status": out["status"], "data_docs": out["data_docs"]}


def version_day(day: str) -> dict:
    """The DVC md5s of the day's partitions. Ingest adds and pushes them (and re-adds them if a
    crash left a partition unversioned), so this only reads what it recorded."""
    from ingest import versioning
    from core import schema

    s = settings()
    out = {}
    for table, root in (("events", s.paths.events), ("catalog", s.paths.catalog)):
        dvc_file = schema.dvc_file(root, day)
        if s.ingest.dvc and not dvc_file.is_file():
            raise PreciseError(f"{dvc_file} is missing: ingest {day} again (`precise ingest --date {day}`) to version it")
        out[table] = versioning.data_version(dvc_file) if dvc_file.is_file() else None
    return {"date": day, "data_version": out["events"], "catalog_version": out["catalog"]}


def require_readable(day: str) -> None:
    from validation import manifest

    s = settings()
    entry = manifest.read_or_empty(s.paths.manifest).get(day)
    if entry is None or entry["status"] not in manifest.READABLE:
        status = "not validated" if entry is None else entry["status"]
        raise Quarantined(f"{day} is {status}: training and publishing skip it")


# --- precise_universal_daily --------------------------------------------------------------------------


def stage_day(name: str, day: str, task: str | None = None, **options):
    """Any stage of the table (precise/stages.py) for D, after the readable-day check: the task
    body a new DAG uses for a stage that needs no summary of its own."""
    require_readable(day)
    return stages.call(name, settings(), day, task, **options)


def sequences_day(day: str) -> dict:
    out = stage_day("sequences", day)
    return {"date": day, "sequences": out["sequences"]}


def encode_day(day: str) -> dict:
    return stages.call("encode", settings(), day)


def gate_day(day: str, task: str | None = None) -> list[dict]:
    from training.lifecycle import gate

    return gate.gate(settings(), task, day)


def train_universal_day(day: str) -> dict:
    from training import distributed

    s = settings()
    if s.universal.nproc > 1:  # train_universal.nproc workers; then read the finished day's metrics
        distributed.launch(["--params", str(s.params_path), "train", "universal", "--date", day], s.universal.nproc)
    m = stages.call("train_universal", s, day)
    return {k: m[k] for k in ("date", "epochs", "valid", "registered_version", "mlflow_run_id", "data_version") if k in m}


def evaluate_universal_day(day: str) -> dict:
    m = stages.call("evaluate_universal", settings(), day)
    return {"date": day, **({"R@10": m["all"]["R@10"]} if "all" in m else {"skipped": m.get("skipped")})}


# --- precise_targeted_daily ---------------------------------------------------------------------------


def task_names(requested: list[str] | None) -> list[str]:
    s = settings()
    names = [t.name for t in s.tasks]
    chosen = list(requested) if requested else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise PreciseError(f"unknown task(s) {unknown}; params.yaml defines {names}")
    return chosen


def gate_targeted_day(day: str, task: str) -> list[dict]:
    """The registry gate of one task on D (its pending versions judged before D's training)."""
    from training.lifecycle import gate

    require_readable(day)
    return gate.gate(settings(), task, day)


def train_targeted_day(day: str, task: str, force_warmup: bool = False) -> dict:
    m = stage_day("train_targeted", day, task, force_warmup=force_warmup)
    return {"task": task, "date": day, "mode": m["mode"], "universal": m["universal"], "valid": m["valid"],
            "registered_version": m.get("registered_version"), "coverage": m["coverage"]["share"]}


def evaluate_targeted_day(day: str, task: str) -> dict:
    """Next-day metrics of the task's newest model trained before D (a failure here retrains nothing)."""
    ev = stages.call("evaluate_targeted", settings(), day, task)
    return {"task": task, "date": day, "next_day_R@10": ev.get("all", {}).get("R@10")}


# --- precise_publish and precise_items_hourly ---------------------------------------------------------


def export_day(day: str) -> dict:
    out = stage_day("export", day)
    return {"date": day, "versions": out["versions"], "files": out["files"]}


def publish_day(day: str) -> dict:
    return stages.call("publish", settings(), day)


def new_items_now() -> dict:
    from serving import publish
    from serving import export

    from core import schema

    from serving.state import read_state

    s = settings()
    days = schema.list_days(s.paths.events)
    if not days:  # nothing ingested yet: nothing to embed
        return {"items": 0, "skipped": f"no ingested day in {s.paths.events} yet"}
    if not read_state(s)["serving"]:  # a fresh install before its first publish: no model serves yet
        return {"items": 0, "skipped": "nothing published yet (the first precise_publish run serves every item)"}
    out = export.new_items(s, days[-1])
    if "folder" in out:  # new items, or never-seen items the day's clicks moved (training.audience)
        out["published"] = publish.new_items(s, Path(out["folder"]))
    return out
