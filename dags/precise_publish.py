"""precise_publish: export the champions' embeddings, publish them to Feast and FAISS."""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from precise import flows
from precise.assets import targeted
from precise.flows import DEFAULT_ARGS, SERIAL_POOL, START


@dag(
    dag_id="precise_publish",
    schedule=[targeted],
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["precise", "serving"],
    params={"date": Param(None, type=["null", "string"], format="date", description="data day; empty: from the targeted event")},
    doc_md="""
### Publish embeddings

Runs when `precise_targeted_daily` announces models. **export** the champions' user and item
embeddings (per model version), then **publish**: new versions' Feast views are materialized
first, the `ranking_v1` FeatureService switches only when they are complete (a failure keeps the
previous version served), FAISS indexes are built. Roll back: `precise registry promote`, then
trigger this DAG with the `date` (export is re-run with a new timestamp).
""",
)
def precise_publish():
    @task(retries=0)  # a quarantined day fails here, at once: a retry would not release it
    def pick_day() -> str:
        ctx = get_current_context()
        return flows.readable_day(ctx["params"], ctx.get("triggering_asset_events"))

    @task(pool=SERIAL_POOL)
    def export(day: str) -> dict:
        return flows.export_day(day)

    @task(pool=SERIAL_POOL)
    def publish(exported: dict) -> dict:
        return flows.publish_day(exported["date"])

    publish(export(pick_day()))


precise_publish()
