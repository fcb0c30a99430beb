"""The Airflow task bodies (precise/flows.py) on an empty project: nothing to do is not a crash."""

from __future__ import annotations

from precise import flows
from tests.conftest import write_params


def test_hourly_new_items_with_nothing_ingested_yet(tmp_path, monkeypatch):
    monkeypatch.setenv(flows.PARAMS_ENV, str(write_params(tmp_path)))
    out = flows.new_items_now()  # raised IndexError before
    assert out["items"] == 0 and "no ingested day" in out["skipped"]


def test_hourly_new_items_before_the_first_publish(tmp_path, monkeypatch):
    """A day ingested, nothing encoded or published yet (found by the soak: it raised "no encoded items")."""
    from core import schema

    monkeypatch.setenv(flows.PARAMS_ENV, str(write_params(tmp_path)))
    part = schema.partition_dir(flows.settings().paths.events, "2026-01-01")
    part.mkdir(parents=True)
    (part / "part-0.parquet").write_bytes(b"")
    out = flows.new_items_now()
    assert out["items"] == 0 and "nothing published yet" in out["skipped"]


def test_next_drop_is_none_when_everything_is_ingested(tmp_path, monkeypatch):
    monkeypatch.setenv(flows.PARAMS_ENV, str(write_params(tmp_path)))
    assert flows.next_drop(flows.settings()) is None


def test_parsing_a_dag_file_does_not_import_pandas_or_pyarrow():
    """The scheduler parses DAG files often: precise.flows stays light at import."""
    import subprocess
    import sys

    code = "import sys, precise.flows; print(sorted(m for m in ('pandas', 'pyarrow', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
