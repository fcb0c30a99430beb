"""precise_targeted_daily: per targeted task, mapped: gate, train (warm-up or incremental), evaluate."""

from __future__ import annotations

from airflow.sdk import Param, get_current_context, task

from precise import flows
from precise.assets import targeted, universal
from precise.dag_kit import date_param, precise_dag
from precise.flows import SERIAL_POOL


@precise_dag(
    "precise_targeted_daily",
    schedule=[universal],
    tags=["training"],
    depends_on_past=True,
    params={
        "date": date_param("data day; empty: from the universal event"),
        "force_warmup": Param(False, type="boolean", description="re-warm-start every selected task from the universal champion"),
        "tasks": Param([], type="array", description="task names from params.yaml; empty: every task"),
    },
    doc="""
### Daily targeted training

Runs when `precise_universal_daily` announces a model. One mapped task per task of params.yaml
(or the `tasks` param), three mapped tasks each: **gate** (the registry gate for the task),
**train** (a **warm-up** from the universal champion when `warmup_every_days` have passed, or
`force_warmup`, else an **incremental** day; registration) and **evaluate** (next-day metrics;
a failure there retries without retraining). Announces `precise://models/targeted`.
""",
)
def precise_targeted_daily():
    @task(retries=0)  # a quarantined day fails here, at once: a retry would not release it
    def plan() -> list[dict]:
        ctx = get_current_context()
        day = flows.readable_day(ctx["params"], ctx.get("triggering_asset_events"))
        force = bool(ctx["params"].get("force_warmup"))
        return [{"day": day, "task": t, "force_warmup": force} for t in flows.task_names(ctx["params"].get("tasks"))]

    @task(pool=SERIAL_POOL)
    def gate(job: dict) -> dict:
        return job | {"gate": flows.gate_targeted_day(job["day"], job["task"])}

    @task(pool=SERIAL_POOL)
    def train(job: dict) -> dict:
        return job | flows.train_targeted_day(job["day"], job["task"], job["force_warmup"])

    @task(pool=SERIAL_POOL)
    def evaluate(job: dict) -> dict:  # apart from training: a failed evaluation retries without retraining
        return job | flows.evaluate_targeted_day(job["day"], job["task"])

    @task(outlets=[targeted])
    def announce(results: list[dict]) -> dict:
        results = list(results)
        extra = {"date": results[0]["date"] if results else None,
                 "tasks": {r["task"]: r["registered_version"] for r in results}}
        get_current_context()["outlet_events"][targeted].extra = extra
        return extra

    announce(evaluate.expand(job=train.expand(job=gate.expand(job=plan()))))


precise_targeted_daily()
