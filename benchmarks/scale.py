"""How the daily cycle's cost grows with the data: wall time and peak memory per stage.

    python -m benchmarks.scale [--scales 1 10 50] [--days 14] [--stages ingest validate sequences sequences-spark]

For each scale s, a temporary project on the synthetic world with s x the default users (events
grow with them; the catalog x10 at 50x), then the stages of a first build of every day, one at a
time, each as its own `precise` process: ingest, validate, sequences (then again on the Spark
engine, `local[2]`), encode (an empty text cache: every item is encoded), one universal epoch,
export, publish (Feast, SQLite). Generating
the world (`precise data synth`) is not a stage and is not timed. Each stage's wall
time and peak RSS (the process's own from `os.wait4`, or its process tree's where larger) are recorded; every scale's rows are
written as soon as the scale ends (`benchmarks/out/scale.json`), then `docs/scale.md` (a table and
each stage's growth exponent, the slope of log time against log events between the smallest and
largest scale measured) and `docs/scale.png` (log-log plot).

Tasks are left out (`tasks: []`): targeted training grows like universal training on a subset.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds
import yaml

REPO = Path(__file__).resolve().parents[1]

from benchmarks.common import project  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "scale.json"
# Stage processes run in a temporary project: this checkout's code first (a worktree measures itself).
STAGE_ENV = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
STAGES = [
    ("ingest", ["ingest", "--all"]),
    ("validate", ["validate", "--all"]),
    ("sequences", ["sequences"]),
    ("sequences-spark (local[2])", ["--params", "params-spark.yaml", "sequences"]),
    ("encode", ["encode"]),
    ("train_universal (1 epoch)", ["train", "universal"]),
    ("export", ["export"]),
    ("publish", ["publish"]),
]


def run_stage(args: list[str], cwd: Path, log: Path) -> dict:
    """One `precise` process: wall seconds and peak resident memory (MiB): the process's own peak
    (`os.wait4`), or the process tree's summed RSS sampled every 0.2 s where that is larger (the
    Spark engine's JVM is a child process)."""
    import psutil

    with open(log, "a") as out:
        out.write(f"\n$ precise {' '.join(args)}\n")
        out.flush()
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "precise.cli", *args], cwd=cwd, stdout=out, stderr=out,
                                env=STAGE_ENV)
        tree_peak, parent = 0, psutil.Process(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                tree_peak = max(tree_peak, sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]))
            except psutil.Error:  # a process ended between listing and reading
                pass
            time.sleep(0.2)
        seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"error: precise {' '.join(args)} failed at this scale (exit {proc.returncode}); see {log}")
    peak = max(usage.ru_maxrss * 1024, tree_peak)  # Linux: ru_maxrss in KiB
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(peak / 2**20, 1)}


def one_scale(scale: float, days: int, root: Path, stages: list[str]) -> dict:
    from core.settings import Settings

    base = Settings.load(REPO / "params.yaml").synth
    folder = root / f"x{scale:g}"
    items = base.items_per_scene * (10 if scale >= 50 else 1)
    project(folder, features=True, tasks=[],
            synth={"users": int(base.users * scale), "days": days, "items_per_scene": items},
            train_universal={"train": {**_universal_train(), "epochs": 1, "min_steps": 0}})
    on_spark = yaml.safe_load((folder / "params.yaml").read_text())
    on_spark["sequences"]["engine"] = "spark"
    (folder / "params-spark.yaml").write_text(yaml.safe_dump(on_spark, sort_keys=False))
    log = folder / "stages.log"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "precise.cli", "data", "synth"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=STAGE_ENV)
    generated = time.perf_counter() - t
    rows = {}
    for name, args in STAGES:
        if name.split(" ")[0] not in stages:  # a stage left out, and every stage after it
            break
        rows[name] = run_stage(args, folder, log)
        print(f"x{scale:g} {name}: {rows[name]}", flush=True)
    events = ds.dataset(folder / "data" / "events", format="parquet", partitioning="hive").count_rows()
    catalog = ds.dataset(folder / "data" / "catalog", format="parquet", partitioning="hive").count_rows()
    return {"scale": scale, "users": int(base.users * scale), "items_per_scene": items, "days": days,
            "events": events, "catalog_rows": catalog, "generate_s": round(generated, 1), "stages": rows}


def _universal_train() -> dict:
    return dict(yaml.safe_load((REPO / "params.yaml").read_text())["train_universal"]["train"])


def exponent(points: list[tuple[float, float]]) -> float | None:
    """Slope of log y against log x between the first and the last point."""
    (x0, y0), (x1, y1) = points[0], points[-1]
    if x1 <= x0 or y0 <= 0 or y1 <= 0:
        return None
    return math.log(y1 / y0) / math.log(x1 / x0)


def report(results: list[dict]) -> None:
    results = sorted(results, key=lambda r: r["scale"])
    lines = ["# How the daily cycle grows with the data", "",
             "Generated by `python -m benchmarks.scale` on this workplace's 2-core, 24 GiB CPU box: the "
             "synthetic world at each scale of the default users (items x10 at 50x), every stage as its own "
             "`precise` process, one universal epoch. Exponent = slope of log(seconds) and log(peak RSS) "
             "against log(events) between the smallest and the largest scale measured (1 = linear).", "",
             "| scale | users | events | catalog rows |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['scale']:g}x | {r['users']:,} | {r['events']:,} | {r['catalog_rows']:,} |" for r in results]
    lines += ["", "| stage | " + " | ".join(f"{r['scale']:g}x s (MiB)" for r in results) + " | time exponent | memory exponent |",
              "| --- | " + " | ".join("---" for _ in results) + " | --- | --- |"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for name, _ in STAGES:
        cells = [f"{r['stages'][name]['seconds']:.1f} ({r['stages'][name]['peak_rss_mib']:.0f})" if name in r["stages"]
                 else "not run" for r in results]
        ran = [r for r in results if name in r["stages"]]
        t_exp = exponent([(r["events"], r["stages"][name]["seconds"]) for r in ran]) if len(ran) > 1 else None
        m_exp = exponent([(r["events"], r["stages"][name]["peak_rss_mib"]) for r in ran]) if len(ran) > 1 else None
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(t_exp)} | {fmt(m_exp)} |")
    (REPO / "docs" / "scale.md").write_text("\n".join(lines) + "\n")
    _plot(results)


def _plot(results: list[dict]) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, _ in STAGES:
        ran = [r for r in results if name in r["stages"]]
        ax_t.plot([r["events"] for r in ran], [r["stages"][name]["seconds"] for r in ran], marker="o", label=name)
        ax_m.plot([r["events"] for r in ran], [r["stages"][name]["peak_rss_mib"] for r in ran], marker="o", label=name)
    for ax, label in ((ax_t, "wall seconds"), (ax_m, "peak RSS, MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([r["events"] for r in results], [f"{r['events'] / 1e6:.2g}M" for r in results])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("events")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    fig.suptitle("Daily cycle per stage against data size (benchmarks/scale.py)")
    fig.tight_layout()
    fig.savefig(REPO / "docs" / "scale.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10, 50])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument("--stages", nargs="+", default=[n.split(" ")[0] for n, _ in STAGES],
                        help="the first stages to run (the cycle stops at the first one left out)")
    args = parser.parse_args()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    done = {r["scale"]: r for r in json.loads(OUT.read_text())} if OUT.is_file() else {}
    root = Path(tempfile.mkdtemp(prefix="precise-scale-"))
    try:
        for scale in args.scales:
            result = one_scale(scale, args.days, root, args.stages)
            if scale in done:  # a rerun of some stages replaces those stages' rows only
                result["stages"] = done[scale]["stages"] | result["stages"]
            done[scale] = result
            OUT.write_text(json.dumps(list(done.values()), indent=1))
            report(list(done.values()))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print((REPO / "docs" / "scale.md").read_text())


if __name__ == "__main__":
    main()
