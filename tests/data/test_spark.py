"""The Spark engine of the sequences stage (`sequences.engine: spark`, training/prep/spark.py) gives the
local engine's tables: on the default world's first days through the stage's run(), and on a
hand-made log with the cases the synthetic world lacks (equal timestamps, within a day and across
days). Real Spark (`local[2]`), which needs Java."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import schema
from core.errors import PreciseError
from core.settings import Settings, SparkConfig
from tests.conftest import need
from training.prep import sequences, spark

pytestmark = pytest.mark.slow(seconds=40)


def _need_spark() -> None:
    need(shutil.which("java") is not None, "no Java runtime (the Spark engine needs one; .ci/run installs it)")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        need(False, "PySpark is not installed")


def _tables(folder: Path) -> dict[str, pa.Table]:
    return {p.name: pq.read_table(p) for p in sorted(folder.glob("*.parquet"))}


def test_spark_engine_gives_the_local_tables_on_the_default_world(tmp_path: Path):
    _need_spark()
    from benchmarks import common
    from ingest import ingest, synth

    # The default world (params.yaml's synth section) for its first three days, ingested; max_len
    # cut to 5 so that truncation happens for most users. The stage's run() on each engine.
    settings = Settings.load(common.write_params(tmp_path, synth={"days": 3}, ingest={"dvc": False}))
    synth.run(settings.synth, settings.paths.landing)
    ingest.run(settings)
    days = schema.list_days(settings.paths.events)
    summaries = {}
    for engine in ("local", "spark"):
        cfg = dataclasses.replace(settings.sequences, engine=engine, max_len=5)
        summaries[engine] = sequences.run(cfg, settings.tasks, days, settings.paths.data, tmp_path / engine,
                                          tmp_path / f"{engine}.json", spark_cfg=settings.spark)
        assert json.loads((tmp_path / f"{engine}.json").read_text())["engine"] == engine
    expected, got = _tables(tmp_path / "local"), _tables(tmp_path / "spark")
    assert set(got) == set(expected) == {"all_scene.parquet", "task=click_article.parquet", "task=share_all.parquet"}
    for name, table in expected.items():
        assert got[name].equals(table), name
    assert summaries["spark"]["sequences"] == summaries["local"]["sequences"]
    assert summaries["local"]["sequences"]["all_scene"]["truncated_users_share"] > 0.5


def test_spark_engine_keeps_ties_in_day_and_file_order(tmp_path: Path):
    _need_spark()
    root = tmp_path / "events"
    t = "2026-01-02T10:00Z"
    days = {
        "2026-01-01": [("a", "1", "s", "click", "2026-01-01T09:00Z"), ("b", "x", "s", "click", t)],
        # Same time as the day before's b/x, and three equal times within the day (file order).
        "2026-01-02": [("a", "2", "s", "click", t), ("a", "3", "t", "share", t), ("a", "4", "s", "click", t),
                       ("b", "y", "s", "click", t), ("c", "z", "t", "click", "2026-01-02T08:00Z")],
    }
    for day, rows in days.items():
        frame = pd.DataFrame(rows, columns=["user_id", "item_id", "scene", "action", "ts"])
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
        folder = schema.partition_dir(root, day)
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, schema=schema.EVENTS_SCHEMA, preserve_index=False),
                       folder / schema.PART_FILE)
    selections = {"all": (("click", "share"), None), "clicks_in_s": (("click",), ("s",))}
    local = sequences.build_local(root, list(days), selections, max_len=3, batch_events=3)  # in user buckets too
    on_spark = sequences.build_spark(root, list(days), selections, 3, SparkConfig())
    for name in selections:
        assert on_spark[name].equals(local[name]), name
    a = on_spark["all"].to_pandas().set_index("user_id")
    assert list(a.loc["a", "item_ids"]) == ["2", "3", "4"] and a.loc["a", "n_total"] == 4
    assert list(a.loc["b", "item_ids"]) == ["x", "y"] and a.loc["b", "last_day"] == "2026-01-02"
    assert list(on_spark["clicks_in_s"].to_pandas().set_index("user_id").loc["a", "item_ids"]) == ["1", "2", "4"]


def test_spark_engine_without_java_is_a_clear_error(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on it
    with pytest.raises(PreciseError, match="needs a Java runtime"):
        with spark.session(SparkConfig()):
            pass
