"""Runs precise DAGs with real Airflow (`DAG.test`: the tasks execute through Airflow's task
runner and metadata DB) for the given days (`none`: no date), in order, as the Asset chain would: data, universal,
targeted, publish. Prints one JSON line per run. Used by tests/dags/test_dags.py in a
subprocess (Airflow reads its configuration from the environment at import)."""

from __future__ import annotations

import json
import os
import sys

from airflow.dag_processing.dagbag import DagBag

CHAIN = ("precise_data_daily", "precise_universal_daily", "precise_targeted_daily", "precise_publish")


def main(days: list[str], only: str | None = None) -> None:
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    for day in days:
        for dag_id in ([only] if only else CHAIN):
            # `none`: no date, as a scheduled run or a trigger with the form left empty.
            run = bag.get_dag(dag_id).test(run_conf={} if day == "none" else {"date": day})
            states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
            print(json.dumps({"day": day, "dag": dag_id, "state": str(run.state), "tasks": states}), flush=True)
            if str(run.state) != "success":
                break  # a failed data day: nothing downstream runs for it (no Asset event)


if __name__ == "__main__":
    args = sys.argv[1:]
    only = args.pop(args.index("--dag") + 1) if "--dag" in args else None
    main([a for a in args if a != "--dag"], only)
