"""The Airflow DAGs: they import, follow the house policies, and run a tiny world end to end
with real Airflow (2 good days, then a day the gate quarantines). The targeted cadence over more
days (warm-up, incremental, warm-up again) is tests/pipeline/test_targeted.py's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, TINY_MODEL, TINY_TRAIN, free_port, git_dvc_repo, tiny_qwen2, write_params

DAG_IDS = {p.stem for p in (REPO / "dags").glob("*.py")}  # one DAG per file, named as its file


def airflow_env(root: Path) -> dict:
    return os.environ | {
        "AIRFLOW_HOME": str(root / "var" / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "PRECISE_PARAMS": str(root / "params.yaml"),
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone spawns `airflow`
    }


def python(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_dagbag_imports_with_tags_retries_and_docs(tmp_path):
    proc = python("""
import json
from airflow.dag_processing.dagbag import DagBag
import os
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
print(json.dumps({"errors": {k: v[-300:] for k, v in bag.import_errors.items()},
                  "dags": {d.dag_id: {"tags": sorted(d.tags), "retries": d.default_args.get("retries"),
                                      "doc": bool(d.doc_md), "max_active_runs": d.max_active_runs,
                                      "callback": d.default_args.get("on_failure_callback") is not None}
                           for d in bag.dags.values()}}))
""", airflow_env(tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}
    assert set(out["dags"]) == DAG_IDS
    for dag_id, d in out["dags"].items():
        assert d["tags"] and "precise" in d["tags"], dag_id
        assert d["retries"] >= 1 and d["doc"] and d["max_active_runs"] == 1 and d["callback"], dag_id


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("airflow-project")
    write_params(root, ingest={"dvc": True, "push": True},
                 encode={"model": str(tiny_qwen2(root / "tiny-qwen2")), "max_tokens": 8, "batch_size": 128},
                 train_universal={"model": TINY_MODEL, "train": TINY_TRAIN, "valid_users": 30, "replay_days": 2,
                                  "new_item_neighbours": 3},
                 train_targeted={"train": TINY_TRAIN, "valid_users": 20, "head_hidden": 32, "warmup_every_days": 2},
                 registry={"tolerance": 1.0, "warmup_tolerance": 1.0})
    shutil.copytree(REPO / "features", root / "features")
    git_dvc_repo(root, root / "dvc-remote")
    env = airflow_env(root)
    subprocess.run([sys.executable, "-m", "precise.cli", "data", "synth", "--days", "3"], cwd=root, env=env,
                   check=True, capture_output=True)
    # Day 3 breaks the contract's spirit: most events point at items no catalog knows.
    last = sorted((root / "landing").glob("date=*"))[-1] / "events.parquet"
    events = pd.read_parquet(last)
    events.loc[events.index[: int(len(events) * 0.6)], "item_id"] = "ghost-item"
    events.to_parquet(last)
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, cwd=root, check=True,
                   capture_output=True, timeout=300)
    return root


def run_dags(project: Path, *args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "dags" / "airflow_runner.py"), *args],
                          env=airflow_env(project), cwd=project, capture_output=True, text=True, timeout=900)
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert runs, f"no run reported:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return runs


@pytest.mark.slow(seconds=70)
def test_two_days_end_to_end_then_a_quarantined_day(project):
    from core.settings import Settings
    from recall.index import Recall
    from serving import publish
    from training.lifecycle import registry, tracking

    days = sorted(p.name.split("=")[1] for p in (project / "landing").glob("date=*"))
    runs = run_dags(project, *days)
    states = {(r["day"], r["dag"]): r["state"] for r in runs}
    good, quarantined = days[:2], days[2]
    for day in good:
        for dag_id in ("precise_data_daily", "precise_universal_daily", "precise_targeted_daily", "precise_publish"):
            assert states[(day, dag_id)] == "success", (day, dag_id, runs)
    bad = [r for r in runs if r["day"] == quarantined]
    assert [r["dag"] for r in bad] == ["precise_data_daily"] and bad[0]["state"] == "failed"
    assert bad[0]["tasks"]["validate"] == "failed" and bad[0]["tasks"]["announce"] != "success"

    s = Settings.load(project / "params.yaml")
    # DVC: every good partition is in the remote, its md5 recorded in the MLflow runs.
    remote = {p.name for p in (project / "dvc-remote").rglob("*") if p.is_file()}
    md5s = tracking.data_md5s(s.paths.data, good)
    assert all(m and m.endswith(".dir") and m[2:] in remote for m in md5s.values()), md5s
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri(s.paths.var))
    runs_u = mlflow.search_runs(experiment_names=["precise-universal"], filter_string="tags.stage = 'train_universal'")
    # One meaning of data_version: a day's DVC md5, the same in MLflow, the manifest and the registry.
    assert set(runs_u["tags.data_version"]) == set(md5s.values())
    entries = json.loads(s.paths.manifest.read_text())["days"]
    assert {d: entries[d]["data_version"] for d in good} == md5s
    assert {r["data_version"] for r in registry.listing(s) if r["model"] == "precise-universal"} <= set(md5s.values())
    # Models registered; the first day warms up, the second continues incrementally.
    rows = registry.listing(s)
    assert {r["model"] for r in rows} == {"precise-universal", "precise-click_article", "precise-share_all"}
    state = json.loads((s.paths.var / "targeted" / "click_article" / "state.json").read_text())
    assert [state["days"][d]["mode"] for d in good] == ["warmup", "incremental"]
    # Feast serves embeddings of active users; the FAISS index answers.
    published = publish.read_state(s)
    assert published["date"] == good[-1]
    users = pd.read_parquet(published["versions"]["click_article"][published["serving"]["click_article"]]["user"])
    user = users["user_id"].iloc[0]
    got = publish.read_online(s, [{"user_id": user, "item_id": "none"}])
    assert got["click_article_user_embedding"][0] is not None and got["universal_user_embedding"][0] is not None
    assert len(Recall(s, "click_article").u2i(user, 5)) == 5

    # The quarantined day: training refuses it and the published version stays served.
    [again, idle] = run_dags(project, quarantined, "--dag", "precise_universal_daily", "--idle-data")
    # It fails at its first task, at once (no retry: waiting does not release a day).
    assert again["state"] == "failed" and again["tasks"]["pick_day"] == "failed", again
    assert again["tasks"]["sequences"] == "upstream_failed", again
    assert publish.read_state(s)["date"] == good[-1]
    assert publish.read_online(s, [{"user_id": user, "item_id": "none"}]) == got

    # Every drop is ingested: a run without a date has nothing to do and is skipped, not failed.
    assert idle["state"] == "success" and set(idle["tasks"].values()) == {"skipped"}, idle


def test_a_dag_triggered_through_the_rest_api_succeeds(project):
    """What the UI does: an authenticated POST to the API server's dagRuns endpoint, scheduled and
    run by a real `airflow standalone` (scheduler, DAG processor, API server)."""
    import time
    import urllib.request

    port = free_port()
    env = airflow_env(project) | {"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
                                  "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                                  "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                                  "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                                  "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "pools", "set", "precise_serial", "1", "one writer at a time"], env=env, cwd=project,
                   check=True, capture_output=True)
    log = open(project / "standalone.log", "w")
    # Its own process group: standalone's children (scheduler, API server...) go down with it.
    proc = subprocess.Popen([airflow, "standalone"], env=env, cwd=project, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
        req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(req, timeout=30) as reply:
            return json.loads(reply.read() or b"{}")

    try:
        deadline = time.time() + 240
        token = None
        while time.time() < deadline and token is None:
            try:
                password = json.loads((project / "var" / "airflow" / "simple_auth_manager_passwords.json.generated")
                                      .read_text())["admin"]
                token = call("POST", "/auth/token", {"username": "admin", "password": password})["access_token"]
            except Exception:
                time.sleep(2)
        assert token, (project / "standalone.log").read_text()[-3000:]
        dag = "precise_items_hourly"
        while time.time() < deadline:
            try:
                call("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False}, token)
                break
            except Exception:
                time.sleep(2)  # the DAG processor has not parsed it yet
        run = call("POST", f"/api/v2/dags/{dag}/dagRuns", {"logical_date": None}, token)
        state = run["state"]
        while time.time() < deadline and state not in ("success", "failed"):
            time.sleep(2)
            state = call("GET", f"/api/v2/dags/{dag}/dagRuns/{run['dag_run_id']}", token=token)["state"]
        assert state == "success", (project / "standalone.log").read_text()[-4000:]
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
