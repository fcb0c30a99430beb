"""The `precise` command: help on every verb, readable errors without tracebacks."""

import json

import pytest

from tests.conftest import run_cli, write_params

VERBS = [
    [], ["data"], ["data", "synth"], ["data", "import"], ["data", "import", "csv"],
    ["data", "import", "movielens"], ["data", "import", "food-kitchen"], ["ingest"], ["validate"],
    ["validate", "release"], ["sequences"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "precise")
def test_help_everywhere(verb, tmp_path):
    proc = run_cli(*verb, "--help", cwd=tmp_path)
    assert "usage: precise" in proc.stdout


def test_user_mistakes_end_in_one_line_errors(tmp_path):
    write_params(tmp_path)
    for args, message in [
        (["ingest", "--date", "2026-01-05"], "no drop for 2026-01-05"),
        (["ingest", "--all"], "no drops in"),
        (["sequences"], "no ingested days"),
        (["data", "import", "movielens", str(tmp_path)], "missing ratings.csv"),
    ]:
        proc = run_cli(*args, cwd=tmp_path, check=False)
        assert proc.returncode == 2, args
        assert proc.stderr.strip().startswith("error:") and message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_no_params_anywhere(tmp_path):
    proc = run_cli("sequences", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no params.yaml" in proc.stderr


def test_csv_import_ingest_sequences_from_the_command_line(tmp_path):
    write_params(tmp_path)
    log = tmp_path / "log.csv"
    log.write_text("uid,iid,t\nu1,a,2026-03-01T10:00:00Z\nu1,b,2026-03-01T11:00:00Z\nu2,a,bad\n")
    items = tmp_path / "items.csv"
    items.write_text("iid,headline\na,First\nb,Second\n")
    proc = run_cli("data", "import", "csv", "--events", str(log), "--map", "user_id=uid,item_id=iid,ts=t",
                   "--scene", "article", "--action", "click",
                   "--catalog", str(items), "--catalog-map", "item_id=iid,title=headline", cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert report["rejected"] == {"log.csv": 1, "items.csv": 0} and report["n_days"] == 1
    assert "rejected rows and reasons" in proc.stderr
    run_cli("ingest", "--all", cwd=tmp_path)
    run_cli("validate", "--all", cwd=tmp_path)
    out = json.loads(run_cli("sequences", cwd=tmp_path).stdout)
    assert out["sequences"]["task=click_article"]["events"] == 2
