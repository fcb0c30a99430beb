"""Throughput of the data front door, in events per second, in one run on this machine.

    python -m benchmarks.data_throughput [--food-kitchen ../shared/datasets/food-kitchen]

Measures, each in a fresh temporary project:
  * generation:  `precise data synth` of the embedded default world (params.yaml `synth`);
  * import:      `precise data import food-kitchen` of the real food-kitchen set (436k events);
  * ingest:      `precise ingest --all` of those imported drops (contract check + atomic Parquet
                 partitions), without DVC and with DVC (`dvc add` + `dvc push` to a local remote);
and, as the reference each is compared with, a plain pandas read of the same input
(`pd.read_csv` of sequences.csv; `pd.read_parquet` of every drop).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]

from ingest import importers, ingest, synth  # noqa: E402
from benchmarks.common import project  # noqa: E402


def timed(label: str, fn, n_events: int | None = None, reference: float | None = None) -> float:
    """Run fn once; n_events is given, or fn returns it."""
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    n = n_events if n_events is not None else int(result)
    ratio = f"  ({dt / reference:.1f}x the plain pandas read)" if reference else ""
    print(f"{label:<42} {n:>9,d} events {dt:7.2f} s {n / dt:>11,.0f} events/s{ratio}", flush=True)
    return dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--food-kitchen", default=str(REPO.parent / "shared" / "datasets" / "food-kitchen"))
    args = parser.parse_args()
    fk = Path(args.food_kitchen)
    tmp = Path(tempfile.mkdtemp(prefix="precise-bench-"))
    try:
        (tmp / "synth").mkdir()
        s = project(tmp / "synth", dvc=False)
        timed("generation: data synth (default world)", lambda: synth.run(s.synth, s.paths.landing)["events"])

        (tmp / "fk").mkdir()
        f = project(tmp / "fk", dvc=False)
        n = int(pd.read_csv(fk / "sequences.csv")["items"].str.split().str.len().sum())
        read_csv = timed("reference: pd.read_csv(sequences.csv)", lambda: pd.read_csv(fk / "sequences.csv"), n)
        out = {}
        timed("import: data import food-kitchen",
              lambda: out.update(importers.import_food_kitchen(f.paths.landing, fk)), n, read_csv)
        m = out["events"]
        drops = sorted(f.paths.landing.glob("date=*/events.parquet"))
        read_pq = timed("reference: pd.read_parquet(every drop)", lambda: [pd.read_parquet(p) for p in drops], m)
        timed("ingest --all (no DVC)", lambda: ingest.run(f), m, read_pq)

        (tmp / "fkdvc").mkdir()
        g = project(tmp / "fkdvc", dvc=True)
        shutil.copytree(f.paths.landing, g.paths.landing)
        timed("ingest --all (dvc add + dvc push)", lambda: ingest.run(g), m, read_pq)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
