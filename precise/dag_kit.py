"""What every DAG file shares, declared once: the house's `@dag` settings (the start date, no
catch-up, one active run, retries with the failure callback, the `precise` tag), the `date` param
and the first task of the DAGs that follow a data event (`pick_day`: the readable data day).
Like `precise/assets.py`, only DAG files import it (it imports Airflow); task bodies stay in
`precise/flows.py`. tests/dags/test_dags.py checks every DAG keeps these settings.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from precise.flows import DEFAULT_ARGS, START, readable_day


def precise_dag(dag_id: str, *, schedule, tags: list[str], doc: str, params: dict | None = None,
                depends_on_past: bool = False):
    """`@dag` with the house's settings; depends_on_past for the training DAGs (a day continues
    from the day before, so it waits for it)."""
    return dag(dag_id=dag_id, schedule=schedule, start_date=START, catchup=False, max_active_runs=1,
               default_args=DEFAULT_ARGS | ({"depends_on_past": True} if depends_on_past else {}),
               tags=["precise", *tags], params=params or {}, doc_md=doc)


def date_param(description: str) -> Param:
    """The optional `date` param (YYYY-MM-DD) a manual trigger sets."""
    return Param(None, type=["null", "string"], format="date", description=description)


def pick_day():
    """The first task of a DAG that follows a data event: the data day from the `date` param, else
    from the triggering Asset events; a quarantined day fails here at once, without retry (waiting
    does not release a day). Call inside the DAG function; returns the task's output."""
    @task(task_id="pick_day", retries=0)
    def pick() -> str:
        ctx = get_current_context()
        return readable_day(ctx["params"], ctx.get("triggering_asset_events"))

    return pick()
