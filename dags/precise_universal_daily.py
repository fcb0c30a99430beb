"""precise_universal_daily: sequences, encoding, gate, universal training, evaluation."""

from __future__ import annotations

from airflow.sdk import get_current_context, task

from precise import flows
from precise.assets import events, universal
from precise.dag_kit import date_param, pick_day, precise_dag
from precise.flows import SERIAL_POOL


@precise_dag(
    "precise_universal_daily",
    schedule=[events],
    tags=["training"],
    depends_on_past=True,
    params={"date": date_param("data day; empty: the day in the triggering data event")},
    doc="""
### Daily universal training

Runs when `precise_data_daily` announces a validated day (the day travels in the Asset event).
**sequences** (good days up to D) -> **encode** new item texts -> **gate** (judges the universal
versions trained before D on D; progressive validation) -> **train** (continues from yesterday's
model, grown item table, replay window) -> **evaluate** (next-day metrics) -> announces
`precise://models/universal`. A manual run on a quarantined day fails at `pick_day`, without retry.
""",
)
def precise_universal_daily():
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
