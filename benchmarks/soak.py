"""A month of the daily chain with faults injected (issue 33).

    python -m benchmarks.soak [--days 30] [--render]       # writes docs/reliability.md

A deployment that starts with a week of history (the first day receives 7 drops at once), then
lives `--days` days of the synthetic world, through the calls the Airflow DAGs make (`precise/flows.py`):
the data DAG (next drop, ingest, validate, version), the hourly new-item path, the universal DAG
(sequences, encode, gate, train, evaluate), the targeted DAG (per task: gate, train, evaluate) and
the publish DAG (export, publish), with the online store on a real Redis server (append-only
file on, as a production Redis would run). Drops arrive in `landing/` one day at a time, as an
upstream system delivers them. A failed task is retried once, as `DEFAULT_ARGS` says, after the
fault is cleared. On chosen days one fault is injected (`FAULTS`, `schedule`).

After every day the invariants are checked and recorded (`check`):

* **events**: every row of every arrived drop is in its day's partition or in the rejects, once:
  drop rows = partition rows + rejected rows, per day and in total (no event lost or doubled);
  the landing files are unchanged (SHA-256 before and after).
* **served version**: for every model, the version in the published state is the registry's
  champion, and the champion passed the gate (tag `first` or `champion`), never a rejected one.
* **Feast and FAISS agree**: an online read of a served user returns that version's label, and
  the FAISS index `precise recall` opens is that version's.
* **quality**: next-day R@10 on day D of the version that served during D, beside counting and
  popularity on the same users (recorded; small tiny-model worlds can fall below counting).

The short version (8 days, tiny models) runs in the test suite
(`tests/pipeline/test_soak.py`); the full one writes `docs/reliability.md` and
`benchmarks/out/soak.json`.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import RedisServer, project  # noqa: E402
from core import schema  # noqa: E402

log = logging.getLogger("precise.soak")

FAULTS = {
    "malformed_drop": "a drop with a third of its events in a scene the contract does not know: ingested, "
                      "quarantined by the gate, never trained on",
    "late_drop": "the day's drop is missing (the data DAG finds nothing); it arrives with the next day's, "
                 "and both days run, in date order",
    "killed_worker": "universal training killed (SIGKILL) after its first checkpoint; the retry resumes from it",
    "store_down": "Redis stopped before the publish; the publish fails, the previous version stays in the "
                  "published state; Redis restarts, the previous version is read, the retry publishes",
    "corrupt_checkpoint": "one byte of the day's new universal checkpoint flipped on disk; the next gate rejects "
                          "that version by name, training continues from the newest intact checkpoint",
    "export_disk_full": "the export's third file write fails half way (ENOSPC); no export folder appears for "
                        "the day, the publish refuses it, the retry succeeds",
}


def schedule(days: int) -> dict[int, str]:
    """Day number (1-based) -> fault. Every kind at least once; the 30-day run repeats some."""
    if days < 8:
        raise ValueError("the soak needs at least 8 days to inject every kind of fault")
    if days < 20:  # the short run: every kind once, as early as each can happen
        return {2: "malformed_drop", 3: "late_drop", 4: "killed_worker", 5: "store_down", 6: "corrupt_checkpoint",
                7: "export_disk_full"}
    return {4: "malformed_drop", 7: "late_drop", 10: "killed_worker", 13: "store_down", 16: "corrupt_checkpoint",
            19: "export_disk_full", 22: "store_down", 25: "killed_worker", 27: "late_drop", 29: "corrupt_checkpoint"}


# --- the world ------------------------------------------------------------------------------------


def soak_settings(folder: Path, days: int, sizes: dict | None = None):
    """The soak's project: a smaller synthetic world than the default, with `days` days, and
    training sized so that a day takes under a minute here; `sizes` (params sections, merged
    into these) shrinks it further (the test suite's tiny models)."""
    sections = {
        "synth": {"users": 600, "items_per_scene": 300, "new_items_per_scene_per_day": 10,
                  "impressions_per_click": 0},
        "train_universal": {"model": {"id_dim": 32, "sem_dim": 32, "max_len": 30, "experts": 2, "top_k": 1},
                            "train": {"epochs": 3, "min_steps": 0, "checkpoint_every": 5, "warmup_steps": 10},
                            "valid_users": 100, "replay_days": 7, "continue_min_steps": 0},
        "train_targeted": {"train": {"epochs": 2, "min_steps": 0, "checkpoint_every": 5}, "valid_users": 50,
                           "head_hidden": 64},
        "recall": {"top_k": 10},
    }
    for name, values in (sizes or {}).items():
        sections[name] = sections.get(name, {}) | values
    sections["synth"] = sections["synth"] | {"days": days}  # sizes never change the number of days
    return project(folder, features=True, **sections)


# --- faults ---------------------------------------------------------------------------------------


def malform(drop: Path) -> None:
    """A third of the drop's events in an unknown scene (the contract lets any scene through;
    the gate's `events_scene_in_set` quarantines the day)."""
    import pandas as pd

    path = drop / "events.parquet"
    events = pd.read_parquet(path)
    events.loc[events.index % 3 == 0, "scene"] = "unknown_scene"
    events.to_parquet(path, index=False)


def train_killed_then_resumed(s, day: str, params: Path) -> dict:
    """The universal task as a worker process, killed once its first checkpoint is on disk; then
    the retry, in this process, resumes from that checkpoint (returns what it logged)."""
    from training import universal

    run_dir = schema.partition_dir(universal.checkpoint_root(s), day) / "run"
    env = os.environ | {"PRECISE_PARAMS": str(params)}
    code = f"from precise import flows; flows.train_universal_day({day!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (run_dir / "state.json").is_file():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the worker ended (or hung) before its first checkpoint (exit {proc.poll()})")
        time.sleep(0.2)
    step = json.loads((run_dir / "state.json").read_text())["state"]["step"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with captured("training.trainer") as lines:
        from precise import flows

        flows.train_universal_day(day)
    resumed = [line for line in lines if line.startswith("resumed at step")]
    return {"killed_after_step": step, "resumed": resumed[0] if resumed else None}


def flip_a_byte(folder: Path) -> None:
    path = folder / "model.safetensors"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


@contextmanager
def disk_full_on_write(n: int):
    """The n-th `pyarrow.parquet.write_table` of the export writes half its bytes, then fails with
    ENOSPC, as a full disk does."""
    import pyarrow.parquet as pq

    from serving import export

    real, calls = pq.write_table, {"n": 0}

    def failing(table, where, *args, **kwargs):
        calls["n"] += 1
        real(table, where, *args, **kwargs)
        if calls["n"] == n:
            data = Path(where).read_bytes()
            Path(where).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(where))

    export.pq.write_table = failing
    try:
        yield calls
    finally:
        export.pq.write_table = real


@contextmanager
def captured(logger: str):
    """The messages logged by `logger` (INFO and up) while the block runs."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler, target = Keep(logging.INFO), logging.getLogger(logger)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


# --- one day --------------------------------------------------------------------------------------


def retried(what: str, call, notes: list[str], on_failure=None):
    """Airflow's one retry: `call()`; if it raises, note it, run `on_failure()` (clear the fault),
    then `call()` again."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - any failure of a task is retried once, as Airflow does
        notes.append(f"{what} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        if on_failure is not None:
            on_failure()
        out = call()
        notes.append(f"{what} retried: ok")
        return out


def chain(s, day: str, fault: str | None, params: Path, redis: RedisServer, notes: list[str]) -> None:
    """The universal, targeted and publish DAGs for one readable day, with the day's fault."""
    from precise import flows
    from serving.state import read_state
    from serving import export
    from training import universal

    flows.sequences_day(day)
    flows.encode_day(day)
    hourly = flows.new_items_now()  # the hourly DAG: the day's new items, encoded, into the serving versions
    if hourly.get("items") or hourly.get("moved"):
        notes.append(f"hourly path: {hourly['items']} new items, {hourly.get('moved', 0)} moved by their first clicks, "
                     f"into {', '.join(sorted(hourly.get('published', {})))}")
    for d in flows.gate_day(day):
        if d["decision"] == "rejected":
            notes.append(f"gate: {d['model']} v{d['version']} rejected ({d['reason'].split(';')[0]})")
    if fault == "killed_worker":
        out = train_killed_then_resumed(s, day, params)
        notes.append(f"worker killed after step {out['killed_after_step']}; retry: {out['resumed'] or 'did not resume'}")
    else:
        flows.train_universal_day(day)
    flows.evaluate_universal_day(day)
    for task in flows.task_names(None):  # the targeted DAG's mapped gate -> train -> evaluate
        flows.gate_targeted_day(day, task)
        flows.train_targeted_day(day, task)
        flows.evaluate_targeted_day(day, task)
    if fault == "corrupt_checkpoint":
        flip_a_byte(schema.partition_dir(universal.checkpoint_root(s), day) / "final")
        notes.append(f"universal checkpoint of {day} damaged on disk")
    if fault == "export_disk_full":
        def check_nothing_half_written():
            folder = schema.partition_dir(export.export_root(s), day)  # may hold the hourly path's new_items-* folders
            if (folder / "manifest.json").exists() or list(folder.glob("*.parquet")):
                raise AssertionError(f"a half export is visible at {folder}")
            try:
                flows.publish_day(day)
            except Exception as exc:  # noqa: BLE001
                notes.append(f"publish refused the day: {str(exc).splitlines()[0][:80]}")
            else:
                raise AssertionError("publish ran without an export")

        try:
            with disk_full_on_write(3):
                flows.export_day(day)
        except OSError as exc:
            notes.append(f"export failed ({exc.strerror})")
            check_nothing_half_written()
        flows.export_day(day)
        notes.append("export retried: ok")
    else:
        flows.export_day(day)
    if fault == "store_down":
        before = read_state(s)
        redis.stop()

        def back_up():
            if read_state(s) != before:
                raise AssertionError("the published state changed during a failed publish")
            redis.start()
            served = served_labels(s)
            notes.append("after restart, before the retry: " + ", ".join(f"{m} {v}" for m, v in served.items()))

        retried("publish (Redis down)", lambda: flows.publish_day(day), notes, back_up)
    else:
        flows.publish_day(day)


def served_labels(s) -> dict[str, str]:
    """model -> the model_version an online read of one served user returns (Feast)."""
    import pyarrow.parquet as pq

    from serving import publish
    from serving.state import read_state

    state, out = read_state(s), {}
    for model, version in state["serving"].items():
        files = state["versions"][model][str(version)]
        users = pq.read_table(files["user"], columns=["user_id", "model_version"]).to_pydict()
        user = next(u for u, v in zip(users["user_id"], users["model_version"]) if v == files["model_version"])
        row = publish.read_online(s, [{"user_id": user}], [f"{model}_user_v{version}:{model}_user_model_version"])
        out[model] = row[f"{model}_user_model_version"][0]
    return out


# --- invariants -----------------------------------------------------------------------------------


def events_reconcile(s, arrived: dict[str, str]) -> dict:
    """Per arrived drop: rows in the drop = partition rows + rejected rows; the drop's bytes as
    they arrived (`arrived`: day -> SHA-256 of events.parquet)."""
    import pyarrow.parquet as pq

    from core.hashing import sha256_file

    drop_rows = part_rows = rejected = 0
    bad = []
    for day, sha in arrived.items():
        drop = schema.partition_dir(s.paths.landing, day) / "events.parquet"
        if sha256_file(drop) != sha:
            bad.append(f"{day}: landing file changed")
        n_drop = pq.read_metadata(drop).num_rows
        part = schema.partition_dir(s.paths.events, day) / "part-0.parquet"
        n_part = pq.read_metadata(part).num_rows if part.is_file() else 0
        rej = schema.partition_dir(s.paths.rejects, day) / "events.parquet"
        n_rej = pq.read_metadata(rej).num_rows if rej.is_file() else 0
        if n_drop != n_part + n_rej:
            bad.append(f"{day}: {n_drop} rows arrived, {n_part} in the partition, {n_rej} rejected")
        drop_rows, part_rows, rejected = drop_rows + n_drop, part_rows + n_part, rejected + n_rej
    return {"arrived": drop_rows, "in_partitions": part_rows, "rejected": rejected,
            "lost": drop_rows - part_rows - rejected, "problems": bad}


def versions_agree(s) -> dict:
    """The served versions against the registry's champions, Feast's answer and FAISS's index."""
    from recall.index import Recall
    from serving.state import read_state
    from training.lifecycle import registry

    state, problems = read_state(s), []
    online = served_labels(s) if state["serving"] else {}
    for model, version in state["serving"].items():
        champ = registry.champion(s, None if model == "universal" else model)
        if champ is None or str(champ.version) != str(version):
            problems.append(f"{model}: serving v{version}, champion v{getattr(champ, 'version', None)}")
        elif champ.tags.get("gate") not in ("first", "champion"):
            problems.append(f"{model}: champion v{version} has gate tag {champ.tags.get('gate')!r}")
        label = state["versions"][model][str(version)]["model_version"]
        if online.get(model) != label:
            problems.append(f"{model}: Feast answers {online.get(model)}, state says {label}")
        if Recall(s, model).version != str(version):
            problems.append(f"{model}: FAISS serves another version")
    return {"serving": {m: str(v) for m, v in state["serving"].items()}, "problems": problems}


def served_quality(s, day: str, served: dict[str, str]) -> dict:
    """Next-day R@10 on `day` of the versions that served during it, with counting and popularity."""
    from training import evaluate
    from training.lifecycle import registry

    out = {}
    for model, version in served.items():
        task = None if model == "universal" else model
        v = next((v for v in registry.versions(s, task) if str(v.version) == version), None)
        if v is None:
            continue
        ckpt = Path(v.tags["checkpoint"])
        try:
            m = (evaluate.score_universal(s, ckpt, day) if task is None
                 else evaluate.score_targeted(s, s.task(task), ckpt, day))
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal: e.g. no user of the task that day
            out[model] = {"error": str(exc).splitlines()[0][:80]}
            continue
        out[model] = {"version": version, "R@10": m["all"]["R@10"], "users": m["users"],
                      "counting": m["baselines"]["counting"]["R@10"], "popularity": m["baselines"]["popularity"]["R@10"]}
    return out


# --- the month ------------------------------------------------------------------------------------


def run(folder: Path, days: int, sizes: dict | None = None, backlog: int = 7) -> dict:
    """Runs the soak in `folder`; returns the day-by-day record. The deployment starts with a
    history: its first day receives the world's first `backlog` drops at once (run in date order,
    as the data DAG does), then one drop arrives per day for the other `days - 1` days."""
    from core.hashing import sha256_file
    from ingest import synth
    from precise import flows
    from serving.state import read_state

    folder = Path(folder)
    s = soak_settings(folder, days + backlog - 1, sizes)
    params = s.params_path
    redis = RedisServer(folder / "redis", durable=True).start()
    os.environ["PRECISE_PARAMS"] = str(params)
    os.environ["PRECISE_ONLINE_STORE"] = redis.url
    source = folder / "upstream"
    synth.run(s.synth, source)
    world_days = sorted(p.name.split("=", 1)[1] for p in source.glob("date=*"))
    plan = schedule(days)
    held: list[str] = world_days[: backlog - 1]  # arrive with the first soak day
    arrived: dict[str, str] = {}
    rows = []
    try:
        for n, today in enumerate(world_days[backlog - 1 :], start=1):
            fault, notes, t0 = plan.get(n), [], time.time()
            served_during = dict(read_state(s)["serving"])  # the versions that serve while today happens
            arriving = held + [today]
            held = []
            if fault == "late_drop":
                held, arriving = [today], arriving[:-1]
                notes.append(f"drop {today} late")
            for day in arriving:
                drop = schema.partition_dir(s.paths.landing, day)
                shutil.copytree(schema.partition_dir(source, day), drop)
                if fault == "malformed_drop":
                    malform(drop)
                arrived[day] = sha256_file(drop / "events.parquet")
            ran = []
            while (day := flows.next_drop(s)) is not None:  # the data DAG, once per drop
                flows.ingest_day(day)
                try:
                    flows.validate_day(day)
                except flows.Quarantined:
                    notes.append(f"{day} quarantined")
                    continue
                flows.version_day(day)
                chain(s, day, fault, params, redis, notes)
                ran.append(day)
            if not ran and not notes:
                notes.append("no drop")
            quality = served_quality(s, today, served_during) if today in ran else {}
            rows.append({"n": n, "day": today, "fault": fault, "ran": ran, "notes": notes,
                         "events": events_reconcile(s, arrived), "versions": versions_agree(s),
                         "quality": quality, "seconds": round(time.time() - t0, 1)})
            log.warning("day %d %s: %s", n, today, rows[-1] | {"quality": quality})
    finally:
        redis.stop()
    return {"days": days, "backlog": backlog, "sizes": sizes or {}, "schedule": {str(k): v for k, v in plan.items()}, "rows": rows,
            "summary": summarize(rows)}


def summarize(rows: list[dict]) -> dict:
    last = rows[-1]["events"]
    below = [(r["day"], m) for r in rows for m, q in r["quality"].items()
             if "R@10" in q and q["R@10"] < q["counting"]]
    return {"days_run": len(rows), "faults": sorted({r["fault"] for r in rows if r["fault"]}),
            "events_lost": last["lost"], "event_problems": sum(len(r["events"]["problems"]) for r in rows),
            "version_problems": sum(len(r["versions"]["problems"]) for r in rows),
            "below_counting": [f"{d} {m}" for d, m in below]}


# --- the document ---------------------------------------------------------------------------------


def render(record: dict) -> str:
    s, seconds = record["summary"], record.get("seconds")
    lines = [
        "# Reliability: a month of days with faults",
        "",
        "Generated by `python -m benchmarks.soak` (`--render` rewrites this page from "
        "`benchmarks/out/soak.json`). How the soak runs and what it checks: the module's docstring.",
        "",
        f"The deployment starts with a history: day 1 receives the world's first {record.get('backlog', 1)} drops at "
        "once and runs them in date order; then one drop arrives per day. Online store: a real Redis server "
        "(append-only file on). Sizes: " + (", ".join(f"`{k}` {v}" for k, v in record.get("sizes", {}).items())
                                            or "the soak's own (`soak_settings`)") + ".",
        "",
        f"**{s['days_run']} days, {len(s['faults'])} kinds of fault, {s['events_lost']} events lost, "
        f"{s['version_problems']} wrong-version findings, {s['event_problems']} event findings.** "
        + (f"Next-day R@10 of the served model below counting on: {', '.join(s['below_counting'])}."
           if s["below_counting"] else "The served models' next-day R@10 never fell below counting.")
        + (f" The run took {seconds:.0f} s on this 2-core machine." if seconds else ""),
        "",
        "| fault | what is injected, and what must happen |",
        "| --- | --- |",
        *[f"| `{k}` | {v} |" for k, v in FAULTS.items()],
        "",
        "| # | day | fault | ran | events arrived / in partitions / rejected / lost | serving (universal, tasks) | "
        "findings | served R@10 vs counting | s | what happened |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in record["rows"]:
        e, v = r["events"], r["versions"]
        quality = "; ".join(f"{m} {q['R@10']:.3f} / {q['counting']:.3f}" if "R@10" in q else f"{m} -"
                            for m, q in r["quality"].items()) or "-"
        lines.append(f"| {r['n']} | {r['day']} | {r['fault'] or '-'} | {', '.join(r['ran']) or '-'} | "
                     f"{e['arrived']:,} / {e['in_partitions']:,} / {e['rejected']:,} / {e['lost']} | "
                     f"{', '.join(f'{m} v{x}' for m, x in v['serving'].items()) or '-'} | "
                     f"{'; '.join(e['problems'] + v['problems']) or 'none'} | {quality} | {r['seconds']} | "
                     f"{'; '.join(r['notes']) or '-'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--render", action="store_true", help="only rewrite docs/reliability.md from the JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    out = REPO / "benchmarks" / "out" / "soak.json"
    if not args.render:
        t0 = time.time()
        folder = Path(tempfile.mkdtemp(prefix="precise-soak-"))
        try:
            record = run(folder, args.days) | {"seconds": round(time.time() - t0)}
        finally:
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1))
    record = json.loads(out.read_text())
    (REPO / "docs" / "reliability.md").write_text(render(record))
    print(json.dumps(record["summary"], indent=1))


if __name__ == "__main__":
    main()
