"""precise_publish: export the champions' embeddings, publish them to Feast and FAISS."""

from __future__ import annotations

from airflow.sdk import task

from precise import flows
from precise.assets import targeted
from precise.dag_kit import date_param, pick_day, precise_dag
from precise.flows import SERIAL_POOL


@precise_dag(
    "precise_publish",
    schedule=[targeted],
    tags=["serving"],
    params={"date": date_param("data day; empty: from the targeted event")},
    doc="""
### Publish embeddings

Runs when `precise_targeted_daily` announces models. **export** the champions' user and item
embeddings (per model version), then **publish**: new versions' Feast views are materialized
first, the `ranking_v1` FeatureService switches only when they are complete (a failure keeps the
previous version served), FAISS indexes are built. Roll back: `precise registry promote`, then
trigger this DAG with the `date` (export is re-run with a new timestamp).
""",
)
def precise_publish():
    @task(pool=SERIAL_POOL)
    def export(day: str) -> dict:
        return flows.export_day(day)

    @task(pool=SERIAL_POOL)
    def publish(exported: dict) -> dict:
        return flows.publish_day(exported["date"])

    publish(export(pick_day()))


precise_publish()
