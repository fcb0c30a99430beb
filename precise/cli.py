"""The `precise` command: one verb per stage; each verb runs its stage through the stage table
(`precise/stages.py` `call`), as `dvc.yaml`, `precise pipeline run` and the Airflow DAGs do. User mistakes (bad input, bad settings)
end with a one-line `error:` message and exit code 2, never a traceback; `-v` shows debug logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

from core.atomic import write_json
from core.errors import PreciseError
from core.settings import Settings, parse_date
from precise import stages

log = logging.getLogger("precise")
OWN_PACKAGES = ("precise", "ingest", "training", "validation", "serving", "recall")


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


# --- verbs -------------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from ingest import synth

    sizes = {k: getattr(args, k) for k in ("seed", "users", "items_per_scene") if getattr(args, k) is not None}
    before = synth.recorded(settings.paths.landing)
    if before is not None:  # more days of the world landing/ already holds (a size given must match it)
        sizes = {k: before[k] for k in ("seed", "users", "items_per_scene")} | sizes
    report = synth.run(replace(settings.synth, **sizes), settings.paths.landing, days=args.days)
    _print({k: v for k, v in report.items() if k != "kept"} | {"kept": len(report["kept"]),
           "landing": str(settings.paths.landing)})
    return 0


def cmd_import_csv(args: argparse.Namespace, settings: Settings) -> int:
    from ingest import importers

    report = importers.import_csv(
        settings.paths.landing,
        args.events,
        importers.parse_mapping(args.map),
        scene=args.scene,
        action=args.action,
        catalog_path=args.catalog,
        catalog_mapping=importers.parse_mapping(args.catalog_map),
        replace=args.replace,
        since=args.since,
        until=args.until,
        cfg=settings.ingest,
    )
    return _import_report(report, settings)


def cmd_import_movielens(args: argparse.Namespace, settings: Settings) -> int:
    from ingest import importers

    report = importers.import_movielens(
        settings.paths.landing, args.folder, since=args.since, until=args.until,
        rating_action=args.rating_action, tag_action=args.tag_action, scene=args.scene, replace=args.replace,
        cfg=settings.ingest,
    )
    return _import_report(report, settings)


def cmd_import_food_kitchen(args: argparse.Namespace, settings: Settings) -> int:
    from ingest import importers

    report = importers.import_food_kitchen(
        settings.paths.landing, args.folder, days=args.days, end_date=args.end_date, replace=args.replace
    )
    return _import_report(report, settings)


def _import_report(report: dict, settings: Settings) -> int:
    days = report.pop("days")
    report["first_day"], report["last_day"], report["n_days"] = days[0], days[-1], len(days)
    report["written"], report["kept"] = len(report["written"]), len(report["kept"])
    report["landing"] = str(settings.paths.landing)
    _print(report)
    if any(report["rejected"].values()):
        print(f"rejected rows and reasons: {settings.paths.landing / '_rejects'}", file=sys.stderr)
    _suggest(report, settings)
    return 0


def _suggest(report: dict, settings: Settings) -> None:
    """Print (to stderr, stdout stays JSON) the params.yaml sections that fit the imported data."""
    import re

    import yaml

    from ingest import importers

    seen, profile = report["seen"], settings.validate.profile
    if set(seen["scenes"]) <= set(profile.scenes or ()) and set(seen["actions"]) <= set(profile.actions or ()):
        return  # the active profile (e.g. a shipped movielens or food_kitchen one) already fits
    name = re.sub(r"[^a-z0-9_]+", "_", report["source"].lower()).strip("_") or "imported"
    text = yaml.safe_dump(importers.suggested_params(name, seen), sort_keys=False, default_flow_style=None)
    print(f"\nThe data's scenes {sorted(seen['scenes'])} and actions {sorted(seen['actions'])} do not fit the active "
          f"validation profile {settings.validate.profile_name!r}. Add this to {settings.params_path} (the profile "
          f"under validate.profiles, `tasks:` replacing the current ones), then ingest and validate:\n\n{text}",
          file=sys.stderr)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest import ingest

    days = None if args.all else [args.date]
    if args.until:
        if not args.all:
            raise PreciseError("--until goes with --all")
        parse_date(args.until)
        days = [d for d in ingest.landing_days(settings.paths.landing) if d <= args.until]
        if not days:
            raise PreciseError(f"no drop in {settings.paths.landing} on or before {args.until}")
    reports = ingest.run(settings, days=days, force=args.force)
    rows = [r.__dict__ for r in reports]
    _print(
        {
            "ingested": sum(r["status"] == "ingested" for r in rows),
            "unchanged": sum(r["status"] == "unchanged" for r in rows),
            "events": sum(r["events"] for r in rows),
            "rejected_events": sum(r["rejected_events"] for r in rows),
            "rejected_catalog": sum(r["rejected_catalog"] for r in rows),
            "days": rows if len(rows) <= 3 else f"{rows[0]['day']} .. {rows[-1]['day']}",
            "rejects": str(settings.paths.rejects),
        }
    )
    return 0


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from validation import validate

    if args.action == "release":
        entry = validate.release(settings, args.date, args.reason, by=args.by)
        _print({"day": args.date, **entry})
        return 0
    if args.all:
        results, metrics, docs = validate.run_all(settings)
        for r in results:
            if r.status != "passed":
                print(validate.summary(r), file=sys.stderr)
        _print(metrics | {"data_docs": str(docs), "manifest": str(settings.paths.manifest)})
        return 0
    if not args.date:
        raise PreciseError("say which day: --date D, or --all")
    result, docs = validate.run_date(settings, args.date)
    print(validate.summary(result))
    print(f"Data Docs: {docs}")
    if result.status == "quarantined":
        print(f"{args.date} is quarantined: later stages skip it. After review: "
              f"precise validate release --date {args.date} --reason '...'", file=sys.stderr)
        return 1
    return 0


def cmd_encode(args: argparse.Namespace, settings: Settings) -> int:
    _print(stages.call("encode", settings, args.date) | {"out": str(settings.paths.text)})
    return 0


def cmd_train_universal(args: argparse.Namespace, settings: Settings) -> int:
    from training import distributed

    nproc = args.nproc or settings.universal.nproc
    if (nproc > 1 or args.nnodes > 1) and not distributed.in_worker():  # start the workers, each runs this verb
        argv = [*(["--params", args.params] if args.params else []), "train", "universal",
                *(["--date", args.date] if args.date else []), *(["--force"] if args.force else [])]
        distributed.launch(argv, nproc, args.nnodes, args.node_rank, args.rdzv_endpoint)
        return 0
    with distributed.process_group():
        metrics = stages.call("train_universal", settings, args.date, force=args.force)
        if distributed.rank() == 0:
            _print(metrics)
    return 0


def cmd_train_targeted(args: argparse.Namespace, settings: Settings) -> int:
    for task in args.task or [t.name for t in settings.tasks]:
        _print(stages.call("train_targeted", settings, args.date, task, force_warmup=args.force_warmup, force=args.force))
    return 0


def cmd_evaluate_targeted(args: argparse.Namespace, settings: Settings) -> int:
    for task in args.task or [t.name for t in settings.tasks]:
        _print(stages.call("evaluate_targeted", settings, args.date, task, if_model=args.if_model))
    return 0


def cmd_registry_list(args: argparse.Namespace, settings: Settings) -> int:
    from training.lifecycle import registry

    rows = registry.listing(settings)
    if not rows:
        print("no registered model yet")
    for r in rows:
        aliases = ",".join(r["aliases"]) or "-"
        print(f"{r['model']:<28} v{r['version']:<4} {aliases:<20} {r['kind'] or '-':<12} trained through {r['trained_through']}"
              f"  gate: {r['gate']}" + (f" on {r['gate_day']} ({r['gate_metric']} {r['gate_value']})" if r.get("gate_day") else ""))
    return 0


def cmd_registry_promote(args: argparse.Namespace, settings: Settings) -> int:
    from training.lifecycle import registry

    _print(registry.promote(settings, args.task, args.version))
    return 0


def cmd_registry_gate(args: argparse.Namespace, settings: Settings) -> int:
    _print(stages.call("gate", settings, args.date))
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from serving import export

    if args.what == "item-init":
        if not args.task:
            raise PreciseError("export item-init needs --task T (a task of params.yaml) or --task universal")
        _print(export.item_init(settings, args.task, args.date))
    elif args.task:
        raise PreciseError("--task goes with `precise export item-init`; the daily export covers every model")
    else:
        _print(export.new_items(settings, args.date) if args.new_items
               else stages.call("export", settings, args.date, force=args.force))
    return 0


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    _print(stages.call("publish", settings, args.date))
    return 0


def cmd_features_historical(args: argparse.Namespace, settings: Settings) -> int:
    from serving import historical

    frame = historical.historical(settings, historical.read_entities(args.entities), args.models)
    historical.write(frame, args.out)
    scores = [c for c in frame.columns if c.endswith("_score")]
    _print({"rows": len(frame), "out": str(args.out), "features": [c for c in frame.columns if c not in
                                                                    historical.ENTITY_COLUMNS],
            "non_null": {c: int(frame[c].notna().sum()) for c in scores}})
    return 0


def cmd_recall(args: argparse.Namespace, settings: Settings) -> int:
    from recall.index import Recall

    from core.ids import normalize_id

    r = Recall(settings, args.task)
    args.user = normalize_id(args.user)  # as ingest wrote it (core/ids.py)
    found = r.u2i(args.user, args.k, exclude_consumed=not args.keep_consumed) if args.mode == "u2i" else r.u2i2i(args.user, args.k)
    _print({"task": args.task, "model_version": r.meta["model_version"], "user": args.user, "mode": args.mode, "items": found})
    return 0


def cmd_evaluate_universal(args: argparse.Namespace, settings: Settings) -> int:
    _print(stages.call("evaluate_universal", settings, args.date, if_model=args.if_model))
    return 0


def cmd_sequences(args: argparse.Namespace, settings: Settings) -> int:
    summary = stages.call("sequences", settings, args.date)
    _print({"date": summary["date"], "days": len(summary["days"]), "sequences": summary["sequences"],
            "out": str(settings.paths.sequences)})
    return 0


def cmd_pipeline_list(args: argparse.Namespace, settings: Settings) -> int:
    _print([{"stage": s.name, "command": s.cmd, "per_task": s.per_task,
             "reads": [d for d in s.deps if d.startswith("data/")],  # the other deps are code
             "writes": [next(iter(o)) if isinstance(o, dict) else o for o in s.outs] + list(s.metrics)}
            for s in stages.STAGES])
    return 0


def cmd_pipeline_run(args: argparse.Namespace, settings: Settings) -> int:
    from validation import manifest

    day = manifest.resolve_day(settings, args.date)
    _print({"date": day, "stages": stages.run(settings, day, args.stages or [s.name for s in stages.STAGES])})
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from precise import status

    summary = status.collect(settings)
    if args.json:
        _print(summary)
    else:
        print(status.render(summary))
    return 0


# --- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="precise", description=__doc__.splitlines()[0])
    p.add_argument("--params", help="settings file (default: ./params.yaml or $PRECISE_PARAMS)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    _data_verbs(verbs)
    _stage_verbs(verbs)
    _serving_verbs(verbs)
    _operator_verbs(verbs)
    return p


def _data_verbs(verbs) -> None:
    """`precise data`: synthetic drops and importers."""
    data = verbs.add_parser("data", help="create daily drops in landing/: synthetic or imported")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="{synth,import}")
    synth = data_verbs.add_parser("synth", help="write daily drops of the synthetic multi-scene world")
    synth.add_argument("--days", type=int, help="number of days (default: synth.days in params.yaml)")
    synth.add_argument("--seed", type=int, help="random seed (default: synth.seed)")
    synth.add_argument("--users", type=int, help="users (default: synth.users; `make run`'s first look uses fewer)")
    synth.add_argument("--items-per-scene", type=int, dest="items_per_scene",
                       help="catalog size per scene on the first day (default: synth.items_per_scene)")
    synth.set_defaults(func=cmd_synth)

    imp = data_verbs.add_parser("import", help="convert public or your own data into daily drops")
    sources = imp.add_subparsers(dest="source", required=True, metavar="{csv,movielens,food-kitchen}")
    csv_p = sources.add_parser("csv", help="a CSV or Parquet event log with a column mapping",
                               description="Map your columns onto the contract: --map user_id=uid,item_id=iid,ts=time")
    csv_p.add_argument("--events", required=True, help="event log (.csv, .csv.gz or .parquet)")
    csv_p.add_argument("--map", action="append", help="CONTRACT=SOURCE pairs, comma-separated (repeatable)")
    csv_p.add_argument("--scene", help="scene of every row when no scene column is mapped")
    csv_p.add_argument("--action", help="action of every row when no action column is mapped")
    csv_p.add_argument("--catalog", help="item file (.csv or .parquet), optional")
    csv_p.add_argument("--catalog-map", action="append", help="CONTRACT=SOURCE pairs for the item file")
    csv_p.add_argument("--since", help="first day to import (YYYY-MM-DD), for long histories")
    csv_p.add_argument("--until", help="last day to import (YYYY-MM-DD)")
    csv_p.add_argument("--replace", action="store_true", help="replace drops that already exist")
    csv_p.set_defaults(func=cmd_import_csv)

    ml = sources.add_parser("movielens", help="MovieLens ratings/tags/movies")
    ml.add_argument("folder", help="folder with ratings.csv, movies.csv (and tags.csv)")
    ml.add_argument("--since", help="first day to import (YYYY-MM-DD)")
    ml.add_argument("--until", help="last day to import (YYYY-MM-DD)")
    ml.add_argument("--rating-action", default="click", help="action name of a rating (default: click)")
    ml.add_argument("--tag-action", default="share", help="action name of a tag (default: share)")
    ml.add_argument("--scene", default="movie", help="scene name (default: movie)")
    ml.add_argument("--replace", action="store_true", help="replace drops that already exist")
    ml.set_defaults(func=cmd_import_movielens)

    fk = sources.add_parser("food-kitchen", help="the two-scene Amazon food/kitchen set")
    fk.add_argument("folder", help="folder with items.csv and sequences.csv")
    fk.add_argument("--days", type=int, default=30, help="days the sequences are spread over (default: 30)")
    fk.add_argument("--end-date", default="2026-01-30", help="last day (default: 2026-01-30)")
    fk.add_argument("--replace", action="store_true", help="replace drops that already exist")
    fk.set_defaults(func=cmd_import_food_kitchen)


def _stage_verbs(verbs) -> None:
    """The daily stages: ingest, validate, encode, train, evaluate."""
    ing = verbs.add_parser("ingest", help="landing drops -> contract partitions, rejects, dvc add + push")
    which = ing.add_mutually_exclusive_group(required=True)
    which.add_argument("--date", help="the data day to ingest (YYYY-MM-DD)")
    which.add_argument("--all", action="store_true", help="every drop in landing/ (unchanged ones are skipped)")
    ing.add_argument("--until", help="with --all: only drops on or before this day (YYYY-MM-DD)")
    ing.add_argument("--force", action="store_true", help="re-ingest even if the drop is unchanged")
    ing.set_defaults(func=cmd_ingest)

    val = verbs.add_parser(
        "validate",
        help="the daily gate: Great Expectations checks, quarantine, release",
        description="Validate ingested days. A day failing an `error` check is quarantined (later "
        "stages skip it); `release` accepts it after review. Exit code 1 when --date finds a bad day.",
    )
    val.add_argument("--date", help="validate this day (again); exit code 1 if it is quarantined")
    val.add_argument("--all", action="store_true", help="validate every day not yet validated; exit 0")
    val.set_defaults(func=cmd_validate, action=None)
    val_actions = val.add_subparsers(dest="action", metavar="{release}")
    rel = val_actions.add_parser("release", help="accept a quarantined day after review")
    rel.add_argument("--date", required=True, help="the quarantined day")
    rel.add_argument("--reason", required=True, help="why it is acceptable (recorded in the manifest)")
    rel.add_argument("--by", help="who releases it (default: the current user)")

    enc = verbs.add_parser("encode", help="LLM forward pass over new or changed item text (cached)")
    enc.add_argument("--date", help="data day (default: run.date)")
    enc.set_defaults(func=cmd_encode)

    train = verbs.add_parser("train", help="train models")
    train_kinds = train.add_subparsers(dest="kind", required=True, metavar="{universal,targeted}")
    tu = train_kinds.add_parser("universal", help="daily universal training (continues from the previous day)")
    tu.add_argument("--date", help="data day (default: run.date)")
    tu.add_argument("--force", action="store_true", help="retrain even if the day's model exists")
    tu.add_argument("--nproc", type=int, help="data-parallel worker processes on this node (default: train_universal.nproc)")
    tu.add_argument("--nnodes", type=int, default=1, help="machines taking part (multi-node: the same command on each)")
    tu.add_argument("--node-rank", type=int, default=0, help="this machine's rank, 0..nnodes-1")
    tu.add_argument("--rdzv-endpoint", help="HOST:PORT of the rendezvous (multi-node)")
    tu.set_defaults(func=cmd_train_universal)
    tt = train_kinds.add_parser("targeted", help="daily targeted training per task (warm-up or incremental)")
    tt.add_argument("--task", action="append", help="task name from params.yaml (repeatable; default: every task)")
    tt.add_argument("--date", help="data day (default: run.date)")
    tt.add_argument("--force-warmup", action="store_true",
                    help="re-initialise from the universal champion now, whatever the cadence")
    tt.add_argument("--force", action="store_true", help="retrain even if the day's model exists")
    tt.set_defaults(func=cmd_train_targeted)

    ev = verbs.add_parser("evaluate", help="metrics and reports")
    ev_kinds = ev.add_subparsers(dest="kind", required=True, metavar="{universal,targeted}")
    for kind, what, func in (("universal", "next-day metrics of the universal model trained before D", cmd_evaluate_universal),
                             ("targeted", "next-day metrics of each task's model, and the coverage curve", cmd_evaluate_targeted)):
        e = ev_kinds.add_parser(kind, help=what)
        if kind == "targeted":
            e.add_argument("--task", action="append", help="task name (repeatable; default: every task)")
        e.add_argument("--date", help="the day to predict (default: run.date)")
        e.add_argument("--if-model", action="store_true",
                       help="record a skip instead of failing when no model was trained before the day")
        e.set_defaults(func=func)


def _serving_verbs(verbs) -> None:
    """What ranking and recall read: export, publish, features, recall."""
    exp = verbs.add_parser("export", help="embeddings of the champion models, per model version")
    exp.add_argument("what", nargs="?", choices=["item-init"],
                     help="item-init: one model's exported item vectors as init files for an ID-based model")
    exp.add_argument("--task", help="with item-init: a task of params.yaml, or universal")
    exp.add_argument("--date", help="data day (default: run.date)")
    exp.add_argument("--new-items", action="store_true", help="the hourly path: only items published since the last export")
    exp.add_argument("--force", action="store_true", help="re-export even if the day's export has the same versions")
    exp.set_defaults(func=cmd_export)
    pub = verbs.add_parser("publish", help="exported embeddings into Feast (offline + online store) and FAISS")
    pub.add_argument("--date", help="data day (default: run.date)")
    pub.set_defaults(func=cmd_publish)
    fe = verbs.add_parser("features", help="the feature store's offline side: point-in-time training sets")
    fe_kinds = fe.add_subparsers(dest="kind", required=True)
    hist = fe_kinds.add_parser("historical", help="each logged event's features as served when it happened")
    hist.add_argument("--entities", required=True, type=Path,
                      help="Parquet or CSV with user_id, item_id, event_timestamp (other columns kept, e.g. labels)")
    hist.add_argument("--out", required=True, type=Path, help="the training set (Parquet)")
    hist.add_argument("--models", nargs="+", help="universal and/or task names (default: every published model)")
    hist.set_defaults(func=cmd_features_historical)
    rec = verbs.add_parser("recall", help="recall candidates from the FAISS index of the serving version")
    rec.add_argument("mode", choices=["u2i", "u2i2i"])
    rec.add_argument("--task", required=True, help="task name (or `universal`)")
    rec.add_argument("--user", required=True)
    rec.add_argument("--k", type=int, help="candidates (default: recall.top_k)")
    rec.add_argument("--keep-consumed", action="store_true", help="U2I: keep items the user already has")
    rec.set_defaults(func=cmd_recall)


def _operator_verbs(verbs) -> None:
    """The operator's verbs: registry, status, sequences."""
    reg = verbs.add_parser("registry", help="the model registry gate (MLflow aliases champion / challenger)")
    reg_actions = reg.add_subparsers(dest="action", required=True, metavar="{list,promote,gate}")
    reg_actions.add_parser("list", help="every version with its aliases and gate decision").set_defaults(func=cmd_registry_list)
    pro = reg_actions.add_parser("promote", help="make a version champion by hand (rollback or roll forward)")
    pro.add_argument("--task", default="universal", help="task name, or `universal` (default)")
    pro.add_argument("--version", required=True)
    pro.set_defaults(func=cmd_registry_promote)
    gt = reg_actions.add_parser("gate", help="judge pending versions on the day (progressive validation)")
    gt.add_argument("--date", help="the validated day to judge on (default: run.date)")
    gt.set_defaults(func=cmd_registry_gate)

    pipe = verbs.add_parser("pipeline", help="the stage table (precise/stages.py): list it, or run stages for a day here")
    pipe_actions = pipe.add_subparsers(dest="action", required=True, metavar="{list,run}")
    pipe_actions.add_parser("list", help="every stage in order: its command, the data it reads and writes"
                            ).set_defaults(func=cmd_pipeline_list)
    pr = pipe_actions.add_parser("run", help="run stages for a day in this process, in the table's order "
                                 "(one process: train_universal.nproc is not applied; `dvc repro` skips what is done)")
    pr.add_argument("--date", help="the data day (default: run.date)")
    pr.add_argument("--stages", nargs="+", choices=[s.name for s in stages.STAGES], metavar="STAGE",
                    help=f"stages to run (default: all): {', '.join(s.name for s in stages.STAGES)}")
    pr.set_defaults(func=cmd_pipeline_run)

    st = verbs.add_parser("status", help="where the pipeline stands: days, gate, champions, next-day quality, what is served")
    st.add_argument("--json", action="store_true", help="machine-readable")
    st.set_defaults(func=cmd_status)

    seq = verbs.add_parser("sequences", help="build all-scene and per-task sequences as of a day")
    seq.add_argument("--date", help="data day (default: run.date in params.yaml; `latest` = last ingested)")
    seq.set_defaults(func=cmd_sequences)

def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own stages log at INFO (DEBUG with -v); libraries only say something when it matters.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for name in OWN_PACKAGES:
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    func: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        return func(args, Settings.load(args.params))
    except PreciseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
