"""precise_targeted_daily: one mapped task per targeted task (warm-up or incremental)."""

from __future__ import annotations

from airflow.sdk import Asset, Param, dag, get_current_context, task

from precise import flows
from precise.flows import DEFAULT_ARGS, SERIAL_POOL, START, TARGETED, UNIVERSAL

universal = Asset(uri=UNIVERSAL, name="precise_universal_model")
targeted = Asset(uri=TARGETED, name="precise_targeted_models")


@dag(
    dag_id="precise_targeted_daily",
    schedule=[universal],
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS | {"depends_on_past": True},
    tags=["precise", "training"],
    params={
        "date": Param(None, type=["null", "string"], format="date", description="data day; empty: from the universal event"),
        "force_warmup": Param(False, type="boolean", description="re-warm-start every selected task from the universal champion"),
        "tasks": Param([], type="array", description="task names from params.yaml; empty: every task"),
    },
    doc_md="""
### Daily targeted training

Runs when `precise_universal_daily` announces a model. One mapped task per task of params.yaml
(or the `tasks` param): the registry gate for the task, then a **warm-up** from the universal
champion when `warmup_every_days` have passed (or `force_warmup`), else an **incremental** day,
then next-day evaluation and registration. Announces `precise://models/targeted`.
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
    def train(job: dict) -> dict:
        return flows.train_targeted_day(job["day"], job["task"], job["force_warmup"])

    @task(outlets=[targeted])
    def announce(results: list[dict]) -> dict:
        results = list(results)
        extra = {"date": results[0]["date"] if results else None,
                 "tasks": {r["task"]: r["registered_version"] for r in results}}
        get_current_context()["outlet_events"][targeted].extra = extra
        return extra

    announce(train.expand(job=plan()))


precise_targeted_daily()
