"""precise_data_daily: ingest a day's drop, validate it, version it, announce it."""

from __future__ import annotations

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from precise import flows
from precise.assets import events
from precise.dag_kit import date_param, precise_dag
from precise.flows import SERIAL_POOL


@precise_dag(
    "precise_data_daily",
    schedule="@daily",
    tags=["data"],
    params={"date": date_param("data day YYYY-MM-DD; empty: the oldest drop in landing/ not ingested yet")},
    doc="""
### Daily data: ingest, validate, version

1. **ingest** the day's drop from the landing folder (contract check, rejects report);
2. **validate** it with the Great Expectations gate: a failure quarantines the day and fails this
   run, the summary and the Data Docs path are in the task log; nothing downstream runs for it;
3. **version** the partitions with DVC (`dvc add` + `dvc push`; the md5 is the data version);
4. **announce** the Asset `precise://data/events` with the data day in its `extra`, which starts
   `precise_universal_daily`.

With no `date` and no new drop in the landing folder the run is **skipped** (the reason is in the
`pick_day` log), not failed. Re-run a day: trigger with `date`. Release a quarantined day after review:
`precise validate release --date D --reason ...`, then trigger this DAG with that `date`.
""",
)
def precise_data_daily():
    @task
    def pick_day() -> str:
        date = get_current_context()["params"].get("date")
        if date:
            return flows.schema_date(date)
        s = flows.settings()
        day = flows.next_drop(s)
        if day is None:  # nothing new is not a failure: this run and everything after it are skipped
            raise AirflowSkipException(f"no new drop in {s.paths.landing}: every drop there is ingested")
        return day

    @task(pool=SERIAL_POOL)
    def ingest(day: str) -> dict:
        return flows.ingest_day(day)

    @task(pool=SERIAL_POOL, retries=0)
    def validate(ingested: dict) -> dict:
        return flows.validate_day(ingested["day"])

    @task(pool=SERIAL_POOL)
    def version(validated: dict) -> dict:
        return flows.version_day(validated["date"])

    @task(outlets=[events])
    def announce(versioned: dict) -> dict:
        extra = {"date": versioned["date"], "data_version": versioned["data_version"]}
        get_current_context()["outlet_events"][events].extra = extra
        return extra

    announce(version(validate(ingest(pick_day()))))


precise_data_daily()
