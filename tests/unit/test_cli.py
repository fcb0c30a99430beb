"""The `precise` command: help on every verb, readable errors without tracebacks."""

import json

import pytest

from tests.conftest import run_cli, write_params

def all_verbs(parser=None, prefix=()) -> list[list[str]]:
    """Every command path of the parser: [], ['data'], ['data', 'synth'], ... (walked, not listed by hand)."""
    import argparse

    from precise.cli import build_parser

    parser = parser or build_parser()
    out = [list(prefix)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += all_verbs(sub, (*prefix, name))
    return out


VERBS = all_verbs()


def test_the_walk_finds_every_verb():
    assert len(VERBS) >= 25 and ["status"] in VERBS and ["registry", "promote"] in VERBS


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "precise")
def test_help_everywhere(verb, capsys):
    from precise.cli import main

    with pytest.raises(SystemExit) as done:
        main([*verb, "--help"])
    assert done.value.code == 0 and "usage: precise" in capsys.readouterr().out


def test_help_from_the_installed_command(tmp_path):
    assert "usage: precise" in run_cli("--help", cwd=tmp_path).stdout


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


def test_pipeline_list_shows_the_stage_table_and_run_refuses_unknown_stages(tmp_path):
    from precise.stages import STAGES

    params = write_params(tmp_path)
    listed = json.loads(run_cli("--params", str(params), "pipeline", "list", cwd=tmp_path).stdout)
    assert [row["stage"] for row in listed] == [s.name for s in STAGES]
    assert next(r for r in listed if r["stage"] == "export")["writes"] == ["data/export"]
    bad = run_cli("--params", str(params), "pipeline", "run", "--stages", "train_everything", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "invalid choice: 'train_everything'" in bad.stderr and "Traceback" not in bad.stderr
