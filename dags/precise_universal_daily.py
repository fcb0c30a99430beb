"""precise_universal_daily: sequences, encoding, gate, universal training, evaluation."""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from precise import flows
from precise.assets import events, universal
from precise.flows import DEFAULT_ARGS, SERIAL_POOL, START


@dag(
    dag_id="precise_universal_daily",
    schedule=[events],
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS | {"depends_on_past": True},
    tags=["precise", "training"],
    params={"date": Param(None, type=["null", "string"], format="date",
                          description="data day; empty: the day in the triggering data event")},
    doc_md="""
### Daily universal training

Runs when `precise_data_daily` announces a validated day (the day travels in the Asset event).
**sequences** (good days up to D) -> **encode** new item texts -> **gate** (judges the universal
versions trained before D on D; progressive validation) -> **train** (continues from yesterday's
model, grown item table, replay window) -> **evaluate** (next-day metrics) -> announces
`precise://models/universal`. A manual run on a quarantined day fails at `pick_day`, without retry.
""",
)
def precise_universal_daily():
    @task(retries=0)  # a quarantined day fails here, at once: a retry would not release it
    def pick_day() -> str:
        ctx = get_current_context()
        return flows.readable_day(ctx["params"], ctx.get("triggering_asset_events"))

    @task(pool=SERIAL_POOL)
    def sequences(day: str) -> dict:
        return flows.sequences_day(day)

    @task
    def encode(day: str) -> dict:
        return flows.encode_day(day)

    @task(pool=SERIAL_POOL)
    def gate(day: str) -> list:
        return flows.gate_day(day)

    @task(pool=SERIAL_POOL)
    def train(day: str) -> dict:
        return flows.train_universal_day(day)

    @task(pool=SERIAL_POOL, outlets=[universal])
    def evaluate(day: str, trained: dict) -> dict:
        metrics = flows.evaluate_universal_day(day)
        get_current_context()["outlet_events"][universal].extra = {"date": day, "version": trained.get("registered_version")}
        return metrics

    day = pick_day()
    trained = train(day)
    sequences(day) >> encode(day) >> gate(day) >> trained  # each reads what the one before wrote
    evaluate(day, trained)


precise_universal_daily()
