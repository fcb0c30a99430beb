"""precise_items_hourly: embeddings of newly published items into Feast and the indexes."""

from __future__ import annotations

from airflow.sdk import task

from precise import flows
from precise.dag_kit import precise_dag
from precise.flows import SERIAL_POOL


@precise_dag(
    "precise_items_hourly",
    schedule="@hourly",
    tags=["serving"],
    doc="""
### New items, hourly

Items published since the last run get embeddings from each serving champion (text-driven ID
rows: nothing to retrain), written into the serving item views of Feast and appended to the
FAISS indexes, so recall and ranking see new items before the next daily publish.
""",
)
def precise_items_hourly():
    @task(pool=SERIAL_POOL)
    def new_items() -> dict:
        return flows.new_items_now()

    new_items()


precise_items_hourly()
