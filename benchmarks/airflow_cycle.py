"""One daily cycle through Airflow against the same stages run by `dvc repro`.

    python -m benchmarks.airflow_cycle [--users 600] [--days 4]

A synthetic world (`--users`, `--days`; the rest as params.yaml, model sizes as params.yaml with
2 universal and 2 targeted epochs) in a git + DVC project; days 1..N-1 are processed once by
`dvc repro`, then the project is copied and day N runs:

* in copy A: `precise ingest --date N` + `dvc repro` (validate ... publish), timed;
* in copy B: the four daily DAGs chained as the Asset events would chain them (data, universal,
  targeted, publish), each a real Airflow run (`DAG.test`: Airflow's task runner and metadata
  DB, no scheduler loop), timed as a whole and per task (task instance start/end).

Ratio = Airflow / DVC wall time (orchestration overhead; goal at most 1.3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]

from benchmarks.common import repo_copy  # noqa: E402

RUNNER = r"""
import json, os, sys, time
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
assert not bag.import_errors, bag.import_errors
out = {"dags": {}, "tasks": {}}
t0 = time.perf_counter()
for dag_id in ("precise_data_daily", "precise_universal_daily", "precise_targeted_daily", "precise_publish"):
    t = time.perf_counter()
    run = bag.get_dag(dag_id).test(run_conf={"date": sys.argv[1]})
    out["dags"][dag_id] = {"state": str(run.state), "seconds": round(time.perf_counter() - t, 1)}
    for ti in run.get_task_instances():
        key = f"{dag_id}.{ti.task_id}" + (f"[{ti.map_index}]" if ti.map_index >= 0 else "")
        out["tasks"][key] = round((ti.end_date - ti.start_date).total_seconds(), 1) if ti.end_date and ti.start_date else None
out["total_seconds"] = round(time.perf_counter() - t0, 1)
print("RESULT " + json.dumps(out))
"""


def run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--days", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="precise-cycle-"))

    def edit(params: dict) -> None:
        params["synth"].update(users=args.users, days=args.days)
        params["train_universal"]["train"]["epochs"] = 2
        params["train_targeted"]["train"]["epochs"] = 2

    a = repo_copy(tmp / "a", tmp / "remote", edit)
    py = sys.executable
    env = os.environ | {"PATH": f"{Path(py).parent}{os.pathsep}{os.environ['PATH']}", "GIT_AUTHOR_NAME": "b",
                        "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    run([py, "-m", "precise.cli", "data", "synth"], a, env)
    days = sorted(p.name.split("=")[1] for p in (a / "landing").glob("date=*"))
    for day in days[:-1]:
        run([py, "-m", "precise.cli", "ingest", "--date", day], a, env)
    (a / "params.yaml").write_text((a / "params.yaml").read_text().replace("date: latest", f"date: '{days[-2]}'", 1))
    t = time.perf_counter()
    run([py, "-m", "dvc", "repro"], a, env)
    print(f"days 1..{len(days) - 1} by dvc repro: {time.perf_counter() - t:.0f} s", flush=True)
    b = tmp / "b"
    shutil.copytree(a, b, symlinks=True)
    run([py, "-m", "dvc", "remote", "add", "--local", "-d", "-f", "local", str(tmp / "remote")], b, env)
    day = days[-1]

    # A: dvc repro of day N
    (a / "params.yaml").write_text((a / "params.yaml").read_text().replace(f"date: '{days[-2]}'", f"date: '{day}'", 1))
    t = time.perf_counter()
    run([py, "-m", "precise.cli", "ingest", "--date", day], a, env)
    out = run([py, "-m", "dvc", "repro"], a, env)
    dvc_seconds = time.perf_counter() - t
    stages = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]

    # B: the DAGs for day N
    benv = env | {"AIRFLOW_HOME": str(b / "var" / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                  "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__PARALLELISM": "4",
                  "PRECISE_PARAMS": str(b / "params.yaml"), "PYTHONPATH": str(REPO)}
    run([str(Path(py).with_name("airflow")), "db", "migrate"], b, benv)
    t = time.perf_counter()
    reply = run([py, "-c", RUNNER, day], b, benv)
    airflow_seconds = time.perf_counter() - t
    result = json.loads(next(line for line in reply.splitlines() if line.startswith("RESULT "))[7:])
    summary = {"day": day, "users": args.users, "dvc_repro_seconds": round(dvc_seconds, 1), "dvc_stages": stages,
               "airflow_seconds": round(airflow_seconds, 1), "airflow": result,
               "ratio_airflow_to_dvc": round(airflow_seconds / dvc_seconds, 3)}
    print(json.dumps(summary, indent=1))
    (REPO / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (REPO / "benchmarks" / "out" / "airflow_cycle.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
