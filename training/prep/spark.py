"""The sequences stage on Spark (`sequences.engine: spark`): the same tables as the local engine
(training/sequences.build), computed by a Spark cluster or by `local[N]` on one machine.

    params.yaml   sequences.engine: spark
                  spark.master: local[2]          # or spark://host:7077, yarn, k8s://https://...

The events of the readable days are read by Spark itself (one `data/events/date=D/part-0.parquet`
per day, so the paths must be readable from the executors: shared storage on a cluster). Per user,
Spark sorts the behaviours by (ts, date, row in the day's file), the local engine's order with its
ties, and keeps the `max_len` most recent. Only the per-user sequences, at most users x max_len
behaviours, come back to the driver (Arrow) to be written as the same single Parquet file per
selection; the events never do.

Needs PySpark (in the lock file) and a Java runtime, 17 or newer; the local engine needs neither.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from core.errors import PreciseError
from core.settings import SparkConfig

log = logging.getLogger(__name__)


@contextmanager
def session(cfg: SparkConfig) -> Iterator:
    """A SparkSession for one stage, stopped afterwards; clear errors when Java or PySpark is missing."""
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise PreciseError("sequences.engine spark needs a Java runtime (17 or newer), none found: "
                           "install one (Debian: apt-get install default-jre-headless) or set "
                           "sequences.engine: local in params.yaml")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise PreciseError("sequences.engine spark needs PySpark: pip install -c constraints.txt pyspark") from None
    builder = (SparkSession.builder.master(cfg.master).appName("precise-sequences")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
               .config("spark.driver.memory", cfg.driver_memory)
               .config("spark.ui.enabled", "false"))
    for key, value in cfg.conf.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


def build_all(spark, files: list[Path], selections: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]],
              max_len: int) -> dict[str, pa.Table]:
    """Events files (one per day, `.../date=D/part-0.parquet`) -> {name: sequence table} for each
    selection (actions, scenes or None for every scene); columns as training/sequences.build's,
    rows in no particular order (the caller sorts)."""
    from pyspark.sql import functions as F

    events = (spark.read.parquet(*[str(p) for p in files])
              .select("user_id", "item_id", "scene", "action", "ts",
                      F.regexp_extract(F.col("_metadata.file_path"), r"date=(\d{4}-\d{2}-\d{2})", 1).alias("date"),
                      F.col("_metadata.row_index").alias("row")))
    events = events.persist()  # every selection reads it: one scan of the files
    tables = {}
    for name, (actions, scenes) in selections.items():
        chosen = events.filter(F.col("action").isin(list(actions)))
        if scenes is not None:
            chosen = chosen.filter(F.col("scene").isin(list(scenes)))
        # Structs sort field by field: time, then day, then row in the day's file (the local order).
        per_user = chosen.groupBy("user_id").agg(
            F.sort_array(F.collect_list(F.struct("ts", "date", "row", "item_id", "scene", "action"))).alias("e"))
        kept = per_user.select(
            "user_id", F.size("e").cast("long").alias("n_total"),
            F.expr(f"slice(e, greatest(size(e) - {int(max_len)} + 1, 1), {int(max_len)})").alias("e"))
        out = kept.select(
            "user_id", F.col("e.item_id").alias("item_ids"), F.col("e.scene").alias("scenes"),
            F.col("e.action").alias("actions"), F.col("e.ts").alias("ts"), "n_total",
            F.element_at("e", -1).getField("date").alias("last_day"))
        tables[name] = out.toArrow()
        log.info("spark: %s, %d users", name, tables[name].num_rows)
    events.unpersist()
    return tables
