"""Validation throughput on one day of ~1M events, against merely reading the same Parquet.

    python -m benchmarks.validation_throughput [--users 250000] [--repeat 3]

Builds, in a temporary project, one synthetic day of about a million events (the default world's
generator with more users), its catalog, and seven earlier readable days (copies, so that the
volume check runs). Then measures, best of --repeat:

  * read:       pd.read_parquet of the day's partition (the reference; goal: validation <= 5x it);
  * validate:   one day through the gate (statistics + Great Expectations suites + manifest +
                result JSON), in a warm process (what each day of `validate --all` costs);
  * cold:       the same, including GX import and project set-up (a fresh `precise validate`);
  * naive:      for comparison, a single row-wise GX expectation (item_id in the catalog set)
                handed the whole million-row frame, as a naive suite would.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]

from benchmarks.common import project  # noqa: E402

from ingest import synth  # noqa: E402
from core import schema  # noqa: E402
from core.settings import Settings  # noqa: E402
from validation import manifest  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def build(root: Path, users: int) -> tuple[Settings, str, int]:
    s = project(root)
    cfg = dataclasses.replace(s.synth, users=users, days=2)
    world = synth.build_world(cfg)
    day = world.day(1)
    events = synth.simulate_day(world, 1)
    for d in (0, 1):
        folder = schema.partition_dir(s.paths.catalog, world.day(d))
        folder.mkdir(parents=True)
        schema.write_partition(synth.catalog_delta(world, d), schema.CATALOG_SCHEMA, folder)
    folder = schema.partition_dir(s.paths.events, day)
    folder.mkdir(parents=True)
    schema.write_partition(events, schema.EVENTS_SCHEMA, folder)
    entries = {}
    for k in range(1, 8):  # seven earlier readable days of the same volume
        prev = (dt.date.fromisoformat(day) - dt.timedelta(days=k)).isoformat()
        target = schema.partition_dir(s.paths.events, prev)
        target.mkdir(parents=True)
        shutil.copy(folder / schema.PART_FILE, target / schema.PART_FILE)
        entries[prev] = {"status": "passed", "data_version": {}}
    manifest.write(s.paths.manifest, entries)
    return s, day, len(events)


def naive(s: Settings, day: str) -> None:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    events = pd.read_parquet(schema.partition_dir(s.paths.events, day) / schema.PART_FILE)
    catalog = schema.read_catalog(s.paths.data, day)
    ctx = gx.get_context(mode="ephemeral")
    batch = ctx.data_sources.add_pandas("naive").add_dataframe_asset("events").add_batch_definition_whole_dataframe("all")
    result = batch.get_batch(batch_parameters={"dataframe": events}).validate(
        gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=catalog["item_id"].tolist())
    )
    assert result.success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="precise-vbench-"))
    try:
        t0 = time.perf_counter()
        s, day, n = build(tmp, args.users)
        print(f"built one day of {n:,d} events in {time.perf_counter() - t0:.0f} s", flush=True)
        part = schema.partition_dir(s.paths.events, day) / schema.PART_FILE

        t_read = best(lambda: pd.read_parquet(part), args.repeat)
        cold_t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "precise.cli", "validate", "--date", day],
                              cwd=tmp, capture_output=True, text=True)
        t_cold = time.perf_counter() - cold_t0
        status = proc.stdout.splitlines()[0] if proc.stdout else proc.stderr[-500:]

        from validation.validate import Validator

        v = Validator(s)
        t_val = best(lambda: v.validate(day), args.repeat)
        t_naive = best(lambda: naive(s, day), 1)

        def line(label, t):
            print(f"{label:<52} {t:7.2f} s {n / t:>12,.0f} events/s  {t / t_read:6.1f}x the read")

        print(f"gate says: {status}")
        line("read: pd.read_parquet(partition)", t_read)
        line("validate one day (warm process)", t_val)
        line("validate one day (cold: `precise validate --date`)", t_cold)
        line("naive: one row-wise GX in-set expectation", t_naive)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
