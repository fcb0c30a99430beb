"""The Airflow task bodies (precise/flows.py) on an empty project: nothing to do is not a crash."""

from __future__ import annotations

from precise import flows
from tests.conftest import write_params


def test_hourly_new_items_with_nothing_ingested_yet(tmp_path, monkeypatch):
    monkeypatch.setenv(flows.PARAMS_ENV, str(write_params(tmp_path)))
    out = flows.new_items_now()  # raised IndexError before
    assert out["items"] == 0 and "no ingested day" in out["skipped"]


def test_next_drop_is_none_when_everything_is_ingested(tmp_path, monkeypatch):
    monkeypatch.setenv(flows.PARAMS_ENV, str(write_params(tmp_path)))
    assert flows.next_drop(flows.settings()) is None
