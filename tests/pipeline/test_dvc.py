"""Real DVC: ingest versions each partition (dvc add + push to a local remote), and `dvc repro`
of the data stages in a temporary copy of this repository runs once, then does nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import versioning
from tests.conftest import TINY_SYNTH, need, run_cli, tiny_qwen2

pytestmark = pytest.mark.slow(seconds=230)


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The tracked files of this repository, in a fresh git repo, with its own DVC remote."""
    need(shutil.which("git") is not None, "git is not installed")
    from benchmarks.common import repo_copy as copy_repo

    def edit(params: dict) -> None:
        params["synth"].update(TINY_SYNTH)
        # Small and quick model stages: the pipeline's wiring is under test here, not the model.
        params["encode"]["model"] = str(tiny_qwen2(tmp_path / "tiny-qwen2"))
        params["train_universal"]["train"]["epochs"] = 1
        params["train_universal"]["train"]["min_steps"] = 0  # plumbing, not quality (tests/model/test_quality.py)
        params["train_universal"]["valid_users"] = 50
        params["train_targeted"]["train"]["epochs"] = 1
        params["train_targeted"]["valid_users"] = 30

    return copy_repo(tmp_path / "repo", tmp_path / "remote", edit)


def test_ingest_versions_partitions_and_repro_is_idempotent(repo_copy: Path, tmp_path: Path):
    run_cli("data", "synth", "--days", "3", cwd=repo_copy)
    run_cli("ingest", "--all", cwd=repo_copy)
    dvc_files = sorted((repo_copy / "data" / "events").glob("date=*.dvc"))
    assert len(dvc_files) == 3
    md5 = versioning.data_version(dvc_files[0])
    assert md5.endswith(".dir")
    # Pushed: the remote holds the partition's directory listing under its md5.
    remote_files = [p.name for p in (tmp_path / "remote").rglob("*") if p.is_file()]
    assert md5[2:] in remote_files
    assert "up to date" in _run([sys.executable, "-m", "dvc", "status", "--cloud"], repo_copy).lower()

    first = _run([sys.executable, "-m", "dvc", "repro"], repo_copy)
    for stage in ("validate", "sequences", "encode", "train_universal", "evaluate_universal",
                  "gate", "train_targeted@0", "train_targeted@1", "evaluate_targeted@0", "evaluate_targeted@1",
                  "export", "publish"):
        assert f"Running stage '{stage}'" in first
    for task in ("click_article", "share_all"):
        trained = json.loads((repo_copy / "data" / "metrics" / "train_targeted" / f"{task}.json").read_text())
        assert trained["mode"] == "warmup" and trained["task"] == task
    published = json.loads((repo_copy / "data" / "metrics" / "publish.json").read_text())
    assert published["serving"] == {"universal": "1", "click_article": "1", "share_all": "1"}
    evaluation = json.loads((repo_copy / "data" / "metrics" / "evaluate_universal.json").read_text())
    assert evaluation["skipped"].startswith("no universal model trained before"), "first day: nothing to compare"
    metrics = json.loads((repo_copy / "data" / "metrics" / "sequences.json").read_text())
    assert len(metrics["days"]) == 3
    second = _run([sys.executable, "-m", "dvc", "repro"], repo_copy)
    assert "Running stage" not in second and "up to date" in second

    # A pinned deployment: push the stage outputs, commit the pins, clone elsewhere: `dvc pull`
    # restores every partition and output, and `dvc status` has nothing to do.
    _run([sys.executable, "-m", "dvc", "push", "-q"], repo_copy)
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    _run(git + ["add", "-A"], repo_copy)
    _run(git + ["commit", "-q", "-m", "pinned"], repo_copy)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo_copy), str(clone)], tmp_path)
    _run([sys.executable, "-m", "dvc", "remote", "add", "--local", "-d", "-f", "local", str(tmp_path / "remote")], clone)
    _run([sys.executable, "-m", "dvc", "pull"], clone)  # exit 0 is asserted by _run
    assert (clone / "data" / "validation" / "manifest.json").is_file() and (clone / "data" / "sequences").is_dir()
    status = _run([sys.executable, "-m", "dvc", "status"], clone)
    assert "up to date" in status.lower() and "changed" not in status, status

    # A new day changes data/events: the stage runs again, and only then.
    run_cli("data", "synth", "--days", "4", cwd=repo_copy)
    again = run_cli("ingest", "--all", cwd=repo_copy)
    assert json.loads(again.stdout)["unchanged"] == 3
    third = _run([sys.executable, "-m", "dvc", "repro"], repo_copy)
    assert "Running stage 'sequences'" in third
    assert len(json.loads((repo_copy / "data" / "metrics" / "sequences.json").read_text())["days"]) == 4
    assert json.loads((repo_copy / "data" / "metrics" / "validate.json").read_text())["validated_now"] == 1
    # The second day built: `precise status` shows next-day quality of every model beside the baselines.
    status = json.loads(run_cli("status", "--json", cwd=repo_copy).stdout)
    assert set(status["next_day"]) == {"universal", "click_article", "share_all"}
    for model, row in status["next_day"].items():
        assert row and row["R@10"] is not None and row["counting R@10"] is not None, (model, row)
        assert row["popularity R@10"] is not None and row["users"] > 0, (model, row)
        assert "fresh R@10" in row and "popularity fresh R@10" in row, (model, row)
    universal = status["next_day"]["universal"]  # and as the hourly path serves it (training.audience)
    assert universal["fresh n"] and universal["early fresh R@10"] is not None, universal
    assert status["gate"]["passed"]["days"] == 4 and status["served"]["serving"]["click_article"]
    from core.settings import Settings
    from precise.status import render
    from recall.index import Recall

    screen = render(status)
    user = status["examples"]["click_article"]["user_id"]
    assert f"precise recall u2i --task click_article --user {user}" in screen and "counting" in screen
    assert "fresh (n)" in screen and "+clicks" in screen
    items = Recall(Settings.load(repo_copy / "params.yaml"), "click_article").u2i(user)
    assert items and not any(x.get("fallback") for x in items), "the printed hint works"

    # An operator's release changes the manifest: the gate keeps it, sequences rebuild.
    manifest_path = repo_copy / "data" / "validation" / "manifest.json"
    entries = json.loads(manifest_path.read_text())
    day = max(entries["days"])
    entries["days"][day]["status"] = "quarantined"  # as if the gate had stopped the newest day
    manifest_path.write_text(json.dumps(entries))
    run_cli("validate", "release", "--date", day, "--reason", "checked by hand", cwd=repo_copy)
    # Only the stage under test and what it depends on: the models downstream were checked above.
    fourth = _run([sys.executable, "-m", "dvc", "repro", "sequences"], repo_copy)
    assert "Running stage 'sequences'" in fourth and "Running stage 'train_universal'" not in fourth
    assert json.loads(manifest_path.read_text())["days"][day]["status"] == "released"


def test_ingest_outside_a_dvc_repo_says_so(tmp_path: Path):
    from tests.conftest import write_params

    params = write_params(tmp_path, ingest={"dvc": True})
    run_cli("--params", str(params), "data", "synth", "--days", "1", cwd=tmp_path)
    proc = run_cli("--params", str(params), "ingest", "--all", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "is not a DVC repository" in proc.stderr and "Traceback" not in proc.stderr
