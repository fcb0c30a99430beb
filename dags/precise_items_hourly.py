"""precise_items_hourly: embeddings of newly published items into Feast and the indexes."""

from __future__ import annotations

from airflow.sdk import dag, task

from precise import flows
from precise.flows import DEFAULT_ARGS, SERIAL_POOL, START


@dag(
    dag_id="precise_items_hourly",
    schedule="@hourly",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["precise", "serving"],
    doc_md="""
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
