"""Runs precise DAGs with real Airflow (`DAG.test`: the tasks execute through Airflow's task
runner and metadata DB) for the given days, in order (`--idle-data`: then the data DAG without a date), as the Asset chain would: data, universal,
targeted, publish. Prints one JSON line per run. Used by tests/dags/test_dags.py in a
subprocess (Airflow reads its configuration from the environment at import)."""

from __future__ import annotations

import json
import os
import sys

from airflow.dag_processing.dagbag import DagBag

CHAIN = ("precise_data_daily", "precise_universal_daily", "precise_targeted_daily", "precise_publish")


def main(days: list[str], only: str | None = None, idle_data: bool = False) -> None:
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    for day in days:
        for dag_id in ([only] if only else CHAIN):
            run = bag.get_dag(dag_id).test(run_conf={"date": day})
            states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
            print(json.dumps({"day": day, "dag": dag_id, "state": str(run.state), "tasks": states}), flush=True)
            if str(run.state) != "success":
                break  # a failed data day: nothing downstream runs for it (no Asset event)
    if idle_data:  # then the data DAG without a date, as a scheduled run with nothing new would be
        run = bag.get_dag("precise_data_daily").test(run_conf={})
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        print(json.dumps({"day": "none", "dag": "precise_data_daily", "state": str(run.state), "tasks": states}), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    only = args.pop(args.index("--dag") + 1) if "--dag" in args else None
    main([a for a in args if a not in ("--dag", "--idle-data")], only, idle_data="--idle-data" in args)
